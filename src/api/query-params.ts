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
  // A loop, not Object.entries: this runs on every request, and almost all have no query.
  let repeated: string | undefined;
  for (const name in query) {
    if (Array.isArray(query[name]) && !MAY_REPEAT.has(name)) {
      repeated = name;
      break;
    }
  }
  if (repeated === undefined) return done();
  const message = `query parameter "${repeated}" is given more than once`;
  // By the matched route, not the path: a v1 path with a method v1 lacks is the root's 404.
  const route = request.routeOptions.url ?? '';
  const isV1 = route.startsWith('/v1/') || route === '/_ping';
  done(isV1 ? new V1Error(400, message) : new RegistryError('UNSUPPORTED', message, { status: 400, detail: { parameter: repeated } }));
}
