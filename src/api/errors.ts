// The v2 edge of the one error hierarchy: RegistryError (V1Error included; an UpstreamError
// is coded first by registryErrorOf) → OCI envelope with its status;
// fastify's own client errors (bad JSON, body too large) keep their status; anything else is
// a 500 that is logged with its stack and answered without internals.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ociErrorBody, RegistryError } from '../protocol/errors.js';
import { storageError } from '../storage/refusal.js';
import { registryErrorOf } from '../upstream/errors.js';
import { isClientGone, logClientGone } from './connection-limits.js';

export function sendRegistryError(reply: FastifyReply, error: RegistryError): FastifyReply {
  reply.code(error.status).headers(error.headers).header('content-type', 'application/json; charset=utf-8');
  if (reply.request.method === 'HEAD') return reply.send();
  return reply.send(ociErrorBody(error));
}

export function handleError(raised: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // A full or read-only disk is a 507 wherever it surfaces (a push, a manifest PUT), never a 500.
  const error = registryErrorOf(storageError(raised, 'request not stored')) as FastifyError | Error;
  if (error instanceof RegistryError) {
    if (error.status >= 500) request.log.warn({ err: error.message, code: error.code }, 'request failed');
    return sendRegistryError(reply, error);
  }
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = status === 413 ? 'SIZE_INVALID' : status === 415 ? 'UNSUPPORTED' : 'UNKNOWN';
    return sendRegistryError(reply, new RegistryError(code, error.message, { status }));
  }
  if (isClientGone(error, request)) {
    logClientGone(request, error);
    return reply.code(400).send(); // nobody reads it; fastify needs an answer to finish the request
  }
  request.log.error({ err: error }, 'unhandled error');
  return sendRegistryError(reply, new RegistryError('UNKNOWN', 'internal error; see the server log', { status: 500 }));
}
