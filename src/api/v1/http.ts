// Response conventions of the v1 API shared by its handlers (spec §2): the error format,
// bounded JSON bodies, the index headers that hand out tokens and endpoints.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../../protocol/errors.js';
import { V1Error, v1ErrorBody } from '../../protocol/v1.js';
import { registryErrorOf } from '../../upstream/errors.js';
import { readBounded, requestBodyMemory } from '../../util/read-bounded.js';
import { storageError } from '../../storage/refusal.js';
import { isClientGone, logClientGone } from '../connection-limits.js';

// Index and image JSON bodies are small; a layer is never read through here.
const MAX_V1_JSON_BYTES = 4 * 1024 * 1024;

/** The Python registry's default headers for everything but image content. */
const NO_CACHE_HEADERS = { 'cache-control': 'no-cache', pragma: 'no-cache', expires: '-1' };

function sendV1Error(reply: FastifyReply, status: number, message: string, headers: Record<string, string> = {}): FastifyReply {
  reply.code(status).headers(NO_CACHE_HEADERS).headers(headers).header('content-type', 'application/json');
  return reply.request.method === 'HEAD' ? reply.send() : reply.send(v1ErrorBody(message));
}

/**
 * The v1 edge of the one error hierarchy: every failure under /v1/ leaves as
 * `{"error": "..."}` with its status (and headers) whatever code raised it. A full or
 * read-only disk is a 507, never a 500.
 */
export function handleV1Error(raised: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const error = registryErrorOf(storageError(raised, 'request not stored')) as FastifyError | Error;
  if (error instanceof RegistryError) {
    if (error.status >= 500) request.log.warn({ err: error.message, code: error.code }, 'request failed');
    return sendV1Error(reply, error.status, error.message, error.headers);
  }
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) return sendV1Error(reply, status, error.message);
  if (isClientGone(error, request)) {
    logClientGone(request, error);
    return reply.code(400).send(); // nobody reads it; fastify needs an answer to finish the request
  }
  request.log.error({ err: error }, 'unhandled error');
  return sendV1Error(reply, 500, 'internal error; see the server log');
}

export async function readRawBody(request: FastifyRequest): Promise<Buffer> {
  return readBounded(request.raw as AsyncIterable<Buffer>, MAX_V1_JSON_BYTES, () => new V1Error(413, `request body over ${MAX_V1_JSON_BYTES} bytes`), {
    memory: requestBodyMemory,
    exhausted: () => new V1Error(503, 'too many request bodies are being received; retry shortly', { 'retry-after': '1' }),
  });
}

export async function readJsonBody(request: FastifyRequest): Promise<unknown> {
  const bytes = await readRawBody(request);
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new V1Error(400, `Error Decoding JSON: ${(error as Error).message}`);
  }
}

/** Whether the client asked for a token: only index calls do (§4). */
export function wantsToken(request: FastifyRequest): boolean {
  return String(request.headers['x-docker-token'] ?? '').toLowerCase() === 'true';
}

/**
 * X-Docker-Endpoints is a bare host[:port]: the client prefixes the index's own scheme, so
 * a scheme here would break every registry call (§5.3).
 */
function endpointHost(request: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ? new URL(publicUrl).host : request.host;
}

export function sendIndexHeaders(request: FastifyRequest, reply: FastifyReply, publicUrl: string | undefined, token: string | undefined): void {
  reply.header('x-docker-endpoints', endpointHost(request, publicUrl));
  if (token !== undefined) {
    reply.header('x-docker-token', token);
    reply.header('www-authenticate', `Token ${token}`);
  }
}

/** JSON answers, including the bare strings and `true` that v1 clients expect. */
export function sendJson(reply: FastifyReply, status: number, value: unknown): FastifyReply {
  return reply.code(status).headers(NO_CACHE_HEADERS).header('content-type', 'application/json').send(JSON.stringify(value));
}
