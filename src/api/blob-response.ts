// Blob answers for both APIs (v2 blobs, v1 layers): headers, Range (206/416), and the fast
// path that writes stored blobs straight into the socket.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OutgoingHttpHeaders } from 'node:http';
import { RegistryError } from '../protocol/errors.js';
import { parseRange } from '../protocol/range.js';
import type { ByteRange, SendableBlob } from '../storage/blob-store.js';
import { redirectToStoredBlob } from './blob-redirect.js';

const BLOB_HEADERS = {
  'content-type': 'application/octet-stream',
  'accept-ranges': 'bytes',
  // Content-addressed: the bytes behind a digest never change.
  'cache-control': 'max-age=31536000, immutable',
};

/**
 * The headers of a blob answer (GET or HEAD). `digest` is undefined only for a v1 layer
 * fetched by image id, whose digest comes out at the end.
 */
export function blobHeaders(reply: FastifyReply, digest: string | undefined, size?: number): FastifyReply {
  reply.headers(BLOB_HEADERS);
  if (digest !== undefined) reply.headers({ 'docker-content-digest': digest, etag: `"${digest}"` });
  if (size !== undefined) reply.header('content-length', String(size));
  return reply;
}

export async function sendBlob(request: FastifyRequest, reply: FastifyReply, digest: string | undefined, blob: SendableBlob): Promise<FastifyReply> {
  if (await redirectToStoredBlob(request, reply, digest, blob)) return reply;
  blobHeaders(reply, digest);
  if (blob.size === undefined) return reply.send(blob.open()); // chunked
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
    return send(request, reply, blob, { start: range.start, end: range.end });
  }
  reply.header('content-length', String(blob.size));
  return send(request, reply, blob, undefined);
}

/**
 * Blobs are written straight into the socket (SendableBlob.writeTo). Stored on fs: pooled buffers
 * (measured: ~0.85x -> above nginx for 16 concurrent 200 MiB hits, and about a third less
 * memory, against a stream that allocates a buffer per chunk); S3, and fetches in progress:
 * the chunks batched into fewer socket writes (writeBody). Headers go out as fastify would have
 * sent them; the access log and metrics listen on the raw response, so they see these replies too.
 */
async function send(request: FastifyRequest, reply: FastifyReply, blob: SendableBlob, range: ByteRange | undefined): Promise<FastifyReply> {
  if (!blob.writeTo || request.method !== 'GET') return reply.send(blob.open(range));
  reply.hijack();
  reply.raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
  await blob.writeTo(reply.raw, range);
  return reply;
}
