// Query parameters arrive as a string, or as an array when repeated (`?ns=a&ns=b`). Handlers
// read them as strings; rather than have each one guard against arrays, a repeated parameter
// is refused here, in the API's own error format, unless the protocol lets it repeat.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../protocol/errors.js';
import { V1Error } from '../protocol/v1.js';

// GET /token?scope=a&scope=b: Docker's token protocol repeats scope.
const MAY_REPEAT = new Set(['scope']);

export function rejectRepeatedQueryParams(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  const query = request.query as Record<string, unknown> | undefined;
  const repeated = Object.entries(query ?? {}).find(([name, value]) => Array.isArray(value) && !MAY_REPEAT.has(name))?.[0];
  if (repeated === undefined) return done();
  const message = `query parameter "${repeated}" is given more than once`;
  const isV1 = request.url.startsWith('/v1/') || request.url.startsWith('/_ping');
  done(isV1 ? new V1Error(400, message) : new RegistryError('UNSUPPORTED', message, { status: 400, detail: { parameter: repeated } }));
}
