// Blob GETs answered with a redirect to the object store (storage.s3.redirect: true), the way
// the reference registry does it: a 307 to a short-lived presigned URL, so the bytes go from
// the bucket straight to the client. Only blobs whose handle offers a URL get one: committed
// blobs the request was already allowed to read (authentication, the namespace policy and the
// private-digest guard all ran before there was a handle). A miss is streamed (the tee), and
// HEAD requests are answered here.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SendableBlob } from '../storage/blob-store.js';

/** Answers a GET with a 307 to the blob in the store, when the store offers it; false otherwise. */
export async function redirectToStoredBlob(request: FastifyRequest, reply: FastifyReply, digest: string | undefined, blob: SendableBlob): Promise<boolean> {
  if (request.method !== 'GET' || blob.redirectUrl === undefined) return false;
  const location = await blob.redirectUrl();
  reply.code(307).headers({
    location,
    // The URL expires: no cache may keep this answer (the blob's own answer is immutable).
    'cache-control': 'no-store',
    'content-length': '0',
    ...(digest === undefined ? {} : { 'docker-content-digest': digest }),
  });
  await reply.send();
  return true;
}
