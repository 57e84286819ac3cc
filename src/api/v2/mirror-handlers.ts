// v2 reads of mirrored repositories: routed to an upstream, answered by the pull-through
// mirror. Mirrored repositories are read-only.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { PullThroughMirror } from '../../mirror/pull-through.js';
import type { MirrorTarget, UpstreamRouter } from '../../mirror/router.js';
import { RegistryError } from '../../protocol/errors.js';
import { parseAccept } from '../../protocol/media-types.js';
import { assertRepositoryName, parseManifestReference } from '../../protocol/reference.js';
import { paginate } from '../../protocol/pagination.js';
import { CACHE_STATUS_HEADER, formatCacheStatus } from '../../protocol/cache-status.js';
import { blobHeaders, sendBlob } from '../blob-response.js';
import { sendManifest, sendTagPage } from './responses.js';

export class MirrorHandlers {
  constructor(
    private readonly mirror: PullThroughMirror,
    private readonly router: UpstreamRouter,
  ) {}

  target(request: FastifyRequest, name: string): MirrorTarget {
    const ns = (request.query as { ns?: string }).ns;
    const target = this.router.resolve(name, ns);
    if (!target) {
      assertRepositoryName(name);
      throw new RegistryError('NAME_UNKNOWN', `no upstream serves "${name}"${ns ? ` for registry ${ns}` : ''}`, { detail: { name } });
    }
    assertRepositoryName(target.repository);
    request.upstreamName = target.upstream.name;
    return target;
  }

  async manifest(request: FastifyRequest, reply: FastifyReply, name: string, reference: string): Promise<FastifyReply> {
    const target = this.target(request, name);
    const ref = parseManifestReference(reference);
    const accept = parseAccept(request.headers.accept);
    const manifest =
      ref.kind === 'tag' ? await this.mirror.getManifestByTag(target, ref.tag, accept) : await this.mirror.getManifestByDigest(target, ref.digest.text, accept);
    request.cacheOutcome = manifest.outcome;
    request.cacheKind = ref.kind === 'tag' ? 'tag' : 'manifest';
    return sendManifest(request, reply, manifest);
  }

  async blob(request: FastifyRequest, reply: FastifyReply, name: string, digest: string): Promise<FastifyReply> {
    const target = this.target(request, name);
    request.cacheKind = 'blob';
    if (request.method === 'HEAD') {
      const { size, outcome } = await this.mirror.statBlob(target, digest);
      request.cacheOutcome = outcome;
      return blobHeaders(reply.header(CACHE_STATUS_HEADER, formatCacheStatus(outcome)), digest, size).send();
    }
    const blob = await this.mirror.getBlob(target, digest);
    request.cacheOutcome = blob.outcome;
    reply.header(CACHE_STATUS_HEADER, formatCacheStatus(blob.outcome));
    return sendBlob(request, reply, digest, blob);
  }

  async tags(request: FastifyRequest, reply: FastifyReply, name: string): Promise<FastifyReply> {
    const target = this.target(request, name);
    const { tags, outcome } = await this.mirror.listTags(target);
    request.cacheOutcome = outcome;
    return sendTagPage(request, reply, name, (n, last) => paginate([...tags].sort(), n, last));
  }
}
