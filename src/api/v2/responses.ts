// Response writing shared by the v2 mirror and local handlers: manifests and paginated
// lists with a Link header (blobs: ../blob-response.ts, shared with v1).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../protocol/errors.js';
import type { Page } from '../../protocol/pagination.js';

export function sendManifest(request: FastifyRequest, reply: FastifyReply, manifest: { mediaType: string; digest: string; bytes: Buffer }): FastifyReply {
  reply.headers({
    'content-type': manifest.mediaType,
    'docker-content-digest': manifest.digest,
    etag: `"${manifest.digest}"`,
    'content-length': String(manifest.bytes.byteLength),
  });
  return request.method === 'HEAD' ? reply.send() : reply.send(manifest.bytes);
}

export function pageParameters(request: FastifyRequest): { n: number | undefined; last: string | undefined } {
  const query = request.query as { n?: string; last?: string };
  if (query.n === undefined || query.n === '') return { n: undefined, last: query.last };
  const n = Number(query.n);
  if (!Number.isInteger(n) || n < 0) throw new RegistryError('UNSUPPORTED', `invalid page size n=${query.n}`, { status: 400 });
  return { n, last: query.last };
}

/** Sets the RFC 5988 Link header when more entries follow. */
export function linkNext(request: FastifyRequest, reply: FastifyReply, n: number | undefined, next: string | undefined): void {
  if (next === undefined || n === undefined) return;
  const path = request.url.split('?')[0] ?? '';
  reply.header('link', `<${path}?n=${n}&last=${encodeURIComponent(next)}>; rel="next"`);
}

export function sendTagPage(request: FastifyRequest, reply: FastifyReply, name: string, page: (n: number | undefined, last: string | undefined) => Page<string>): FastifyReply {
  const { n, last } = pageParameters(request);
  const { items, next } = page(n, last);
  linkNext(request, reply, n, next);
  return reply.send({ name, tags: items });
}
