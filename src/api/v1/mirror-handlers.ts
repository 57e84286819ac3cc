// v1 reads of mirrored repositories and images (docs: v1-protocol.md §8, §10, §11). As an
// index, Longshore answers the repository's image list with its own read token and its own
// host in X-Docker-Endpoints, so the client's later calls come here; as a --registry-mirror
// for old Docker, it answers image-data calls that carry the upstream index's token, which is
// passed upstream unchanged.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { V1Access, V1Identity } from '../../auth/v1-access.js';
import type { UpstreamRouter } from '../../mirror/router.js';
import type { V1PullThrough, V1Target, V1Upstream } from '../../mirror/v1-pull-through.js';
import { V1Error, type ImageResource } from '../../protocol/v1.js';
import type { V1UpstreamAuth } from '../../upstream/v1-client.js';
import { sendIndexHeaders, sendJson, wantsToken } from './http.js';
import { sendImage, type MirroredImages } from './image-handlers.js';
import type { RepositoryHandlers } from './routes.js';
import type { SearchResult, SearchSource } from './search.js';

export class V1MirrorHandlers implements RepositoryHandlers, MirroredImages, SearchSource {
  constructor(
    private readonly access: V1Access,
    private readonly mirror: V1PullThrough,
    private readonly router: UpstreamRouter<V1Upstream>,
    private readonly publicUrl: string | undefined,
  ) {}

  private target(request: FastifyRequest, repository: string): V1Target {
    const target = this.router.resolve(repository, undefined);
    if (!target) throw new V1Error(404, `Repository not found: no upstream serves ${repository}`);
    request.upstreamName = target.upstream.name;
    return target;
  }

  async repositoryImages(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply> {
    const target = this.target(request, repository);
    const { ids, outcome } = await this.mirror.repositoryImages(target);
    request.cacheOutcome = outcome;
    // Our token and our host: the client's registry calls for this repository come to us.
    sendIndexHeaders(request, reply, this.publicUrl, wantsToken(request) ? this.access.issueToken(identity, repository, 'read') : undefined);
    return sendJson(
      reply,
      200,
      ids.map((id) => ({ id })),
    );
  }

  async tags(request: FastifyRequest, reply: FastifyReply, repository: string): Promise<FastifyReply> {
    const { tags, outcome } = await this.mirror.tags(this.target(request, repository));
    request.cacheOutcome = outcome;
    request.cacheKind = 'tag';
    return sendJson(reply, 200, tags);
  }

  async tag(request: FastifyRequest, reply: FastifyReply, repository: string, tag: string): Promise<FastifyReply> {
    const { id, outcome } = await this.mirror.tag(this.target(request, repository), tag);
    request.cacheOutcome = outcome;
    request.cacheKind = 'tag';
    return sendJson(reply, 200, id);
  }

  async image(request: FastifyRequest, reply: FastifyReply, id: string, resource: Exclude<ImageResource, 'checksum'>, identity: V1Identity): Promise<FastifyReply> {
    const { target, auth } = this.imageContext(request, identity);
    // A token we did not issue never opens the cache on its own: unless the policy lets
    // anyone read mirrored content, its holder reads only what the upstream shows them.
    if (identity.kind === 'foreign' && !this.access.readsMirrored(identity)) await this.mirror.confirmImage(id, target, auth);
    const { record, outcome } = await this.mirror.image(id, target, auth);
    request.cacheKind = resource === 'layer' ? 'v1_layer' : 'v1_json';
    if (resource === 'ancestry') this.mirror.learnAncestry(record.ancestry);
    request.cacheOutcome = outcome;
    return sendImage(request, reply, record, resource, async () => {
      const blob = await this.mirror.layer(record, target, auth);
      request.cacheOutcome = blob.outcome;
      return blob;
    });
  }

  /** GET /v1/search's upstream half: the default upstream's index. */
  async search(query: string): Promise<SearchResult[]> {
    return this.mirror.search(this.router.defaultUpstream, query, 100);
  }

  /**
   * Which upstream an image call goes to and with what credentials: our own token names the
   * repository (we hold a session for it); a token from the upstream index is passed on as it
   * came (old-Docker mirror mode); without either, the default upstream, anonymously.
   */
  private imageContext(request: FastifyRequest, identity: V1Identity): { target: V1Target | undefined; auth: V1UpstreamAuth } {
    if (identity.kind === 'token') {
      const target = this.target(request, identity.repository);
      return { target, auth: { kind: 'repository', repository: target.repository } };
    }
    if (identity.kind === 'foreign') {
      const named = identity.claimedRepository ? this.router.resolve(identity.claimedRepository, undefined) : undefined;
      const upstream = named?.upstream ?? this.router.defaultUpstream;
      if (upstream) request.upstreamName = upstream.name;
      return { target: upstream ? (named ?? { upstream, repository: '' }) : undefined, auth: { kind: 'passthrough', authorization: identity.authorization } };
    }
    const upstream = this.router.defaultUpstream;
    if (upstream) request.upstreamName = upstream.name;
    return { target: upstream ? { upstream, repository: '' } : undefined, auth: { kind: 'none' } };
  }
}
