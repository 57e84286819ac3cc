// Registry v2 / OCI Distribution routes: parse, route to an upstream, ask the mirror, write
// the response. Repository names contain slashes, so everything under /v2/ arrives at one
// wildcard route and is classified by protocol/reference.ts.
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../protocol/errors.js';
import { parseAccept } from '../../protocol/media-types.js';
import { parseRange } from '../../protocol/range.js';
import { assertRepositoryName, parseManifestReference, parseV2Path } from '../../protocol/reference.js';
import type { PullThroughMirror } from '../../mirror/pull-through.js';
import type { MirrorTarget, UpstreamRouter } from '../../mirror/router.js';

export interface V2Dependencies {
  mirror: PullThroughMirror;
  router: UpstreamRouter;
}

const API_VERSION_HEADER = { 'docker-distribution-api-version': 'registry/2.0' };

export function v2Routes(deps: V2Dependencies): FastifyPluginCallback {
  return (app, _options, done) => {
    const base = (_request: FastifyRequest, reply: FastifyReply) => reply.headers(API_VERSION_HEADER).send({});
    app.route({ method: ['GET', 'HEAD'], url: '/v2', handler: base });
    app.route({ method: ['GET', 'HEAD'], url: '/v2/', handler: base });
    app.route({
      method: ['GET', 'HEAD'],
      url: '/v2/*',
      handler: (request, reply) => handleRead(deps, request, reply),
    });
    app.route({
      method: ['POST', 'PUT', 'PATCH', 'DELETE'],
      url: '/v2/*',
      handler: () => {
        throw new RegistryError('UNSUPPORTED', 'this registry is a read-only mirror: pushes and deletes are not supported');
      },
    });
    done();
  };
}

async function handleRead(deps: V2Dependencies, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  reply.headers(API_VERSION_HEADER);
  const route = parseV2Path((request.params as { '*': string })['*']);
  if (!route) throw new RegistryError('UNSUPPORTED', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`, { status: 404 });
  switch (route.kind) {
    case 'base':
      return reply.send({});
    case 'manifest':
      return serveManifest(deps, request, reply, resolveTarget(deps, request, route.name), route.reference);
    case 'blob':
      return serveBlob(deps, request, reply, resolveTarget(deps, request, route.name), route.digest);
    case 'tags':
      return serveTags(deps, request, reply, resolveTarget(deps, request, route.name), route.name);
    case 'catalog':
    case 'referrers':
    case 'upload':
      throw new RegistryError('UNSUPPORTED', `${route.kind} is not supported by this mirror`, { status: 404 });
  }
}

function resolveTarget(deps: V2Dependencies, request: FastifyRequest, name: string): MirrorTarget {
  const ns = (request.query as { ns?: string }).ns;
  const target = deps.router.resolve(name, ns);
  if (!target) {
    assertRepositoryName(name);
    throw new RegistryError('NAME_UNKNOWN', `no upstream serves "${name}"${ns ? ` for registry ${ns}` : ''}`, { detail: { name } });
  }
  assertRepositoryName(target.repository);
  request.upstreamName = target.upstream.name;
  return target;
}

async function serveManifest(
  deps: V2Dependencies,
  request: FastifyRequest,
  reply: FastifyReply,
  target: MirrorTarget,
  reference: string,
): Promise<FastifyReply> {
  const ref = parseManifestReference(reference);
  const accept = parseAccept(request.headers.accept);
  const manifest =
    ref.kind === 'tag'
      ? await deps.mirror.getManifestByTag(target, ref.tag, accept)
      : await deps.mirror.getManifestByDigest(target, ref.digest.text, accept);
  request.cacheOutcome = manifest.outcome;
  reply.headers({
    'content-type': manifest.mediaType,
    'docker-content-digest': manifest.digest,
    etag: `"${manifest.digest}"`,
    'content-length': String(manifest.bytes.byteLength),
  });
  return request.method === 'HEAD' ? reply.send() : reply.send(manifest.bytes);
}

async function serveBlob(
  deps: V2Dependencies,
  request: FastifyRequest,
  reply: FastifyReply,
  target: MirrorTarget,
  digest: string,
): Promise<FastifyReply> {
  const blobHeaders = {
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    // Content-addressed: the bytes behind a digest never change.
    'cache-control': 'max-age=31536000, immutable',
  };
  if (request.method === 'HEAD') {
    const { size, outcome } = await deps.mirror.statBlob(target, digest);
    request.cacheOutcome = outcome;
    reply.headers(blobHeaders);
    if (size !== undefined) reply.header('content-length', String(size));
    return reply.send();
  }

  const blob = await deps.mirror.getBlob(target, digest);
  request.cacheOutcome = blob.outcome;
  reply.headers(blobHeaders);
  if (blob.size === undefined) return reply.send(blob.open()); // chunked: the upstream sent no length
  const range = parseRange(request.headers.range, blob.size);
  if (range.kind === 'unsatisfiable') {
    await blob.discard();
    throw new RegistryError('RANGE_INVALID', `range ${request.headers.range} not satisfiable for a ${blob.size}-byte blob`, {
      headers: { 'content-range': `bytes */${blob.size}` },
    });
  }
  if (range.kind === 'range') {
    reply.code(206).headers({
      'content-range': `bytes ${range.start}-${range.end}/${blob.size}`,
      'content-length': String(range.end - range.start + 1),
    });
    return reply.send(blob.open({ start: range.start, end: range.end }));
  }
  reply.header('content-length', String(blob.size));
  return reply.send(blob.open());
}

async function serveTags(
  deps: V2Dependencies,
  request: FastifyRequest,
  reply: FastifyReply,
  target: MirrorTarget,
  name: string,
): Promise<FastifyReply> {
  const { tags, outcome } = await deps.mirror.listTags(target);
  request.cacheOutcome = outcome;
  const query = request.query as { n?: string; last?: string };
  let page = [...tags].sort();
  if (query.last) page = page.filter((t) => t > (query.last as string));
  if (query.n !== undefined) {
    const n = Number(query.n);
    if (!Number.isInteger(n) || n < 0) throw new RegistryError('UNSUPPORTED', `invalid page size n=${query.n}`, { status: 400 });
    page = page.slice(0, n);
  }
  return reply.send({ name, tags: page });
}
