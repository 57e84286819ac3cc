// Blob upload sessions across replicas (cluster.redis). A session's bytes are in the scratch
// directory of the replica that opened it, and a round-robin load balancer sends the next
// chunk anywhere. So the replica that opens a session records itself as its holder before the
// client learns the session's URL, and a replica that gets a request for a session held
// elsewhere passes the request on, body streamed, to the holder's advertiseUrl, and streams
// the answer back. The holder authorizes it like any request: the client's own credentials
// travel with it (tokens are signed with the shared auth.secret).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { request as httpRequest } from 'undici';
import type { UploadOwners } from '../coordination/ports.js';
import { RegistryError } from '../protocol/errors.js';
import { sendRegistryError } from './errors.js';

/** Marks a request passed on by another replica: never passed on again (no loops). */
export const FORWARDED_HEADER = 'x-longshore-upload-forwarded';

/** /v2/<name>/blobs/uploads/<id>: the session id, or undefined (a POST opening one has none). */
const SESSION_PATH = /^\/v2\/.+\/blobs\/uploads\/([^/?]+)/;
/** A Location naming a session, as the upload handlers answer it. */
const SESSION_LOCATION = /\/blobs\/uploads\/([^/?]+)/;
/**
 * Connection-level headers, which are not the request's to pass on. Host is: the holder then
 * answers (token realms, absolute URLs) for the address the client used.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);
const WITH_BODY = new Set(['PATCH', 'PUT', 'POST']);

function passedOn(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) kept[name] = value;
  return kept;
}

export function addUploadForwarding(app: FastifyInstance, owners: UploadOwners, log: Logger): void {
  /** Requests answered by passing them on: their answers name sessions held elsewhere. */
  const forwarded = new WeakSet<FastifyRequest>();
  app.addHook('onRequest', async (request, reply) => {
    const id = SESSION_PATH.exec(request.url)?.[1];
    if (id === undefined || request.headers[FORWARDED_HEADER] !== undefined) return;
    const holder = await owners.ownerElsewhere(id);
    if (holder === undefined) return; // ours, or unknown: the upload handlers answer
    forwarded.add(request);
    await forward(request, reply, holder, id, log);
    return reply;
  });
  // Recorded before the answer leaves: the client's next chunk may reach another replica at once.
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode >= 300 || forwarded.has(request) || !request.url.startsWith('/v2/')) return payload;
    const location = reply.getHeader('location');
    const id = typeof location === 'string' ? SESSION_LOCATION.exec(location)?.[1] : undefined;
    if (id !== undefined) await owners.claim(id); // opened, or a chunk taken: renews the claim
    return payload;
  });
}

async function forward(request: FastifyRequest, reply: FastifyReply, holder: string, id: string, log: Logger): Promise<void> {
  const target = new URL(request.url, holder);
  let answer: Awaited<ReturnType<typeof httpRequest>>;
  try {
    answer = await httpRequest(target, {
      method: request.method as 'GET',
      headers: { ...passedOn(request.headers), [FORWARDED_HEADER]: '1' },
      body: WITH_BODY.has(request.method) ? request.raw : undefined,
    });
  } catch (error) {
    // The holder is gone (its scratch file with it): the client starts the upload again.
    log.warn({ upload: id, holder, err: (error as Error).message }, 'the replica holding an upload session did not answer');
    sendRegistryError(reply, new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} was held by a replica that is gone; start the upload again`, { detail: { id } }));
    return;
  }
  reply.code(answer.statusCode);
  for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) reply.header(name, value);
  await reply.send(answer.body);
}
