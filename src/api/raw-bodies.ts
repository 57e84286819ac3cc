// Both registry APIs read request bodies themselves, as streams: layers go to disk as they
// arrive and JSON is read with a bound. This sets that up for one encapsulated plugin.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export function keepBodiesRaw(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, next) => next(null, payload));
  app.addHook('onRequest', ignoreEmptyContentType);
}

/**
 * Docker up to 19.03 sends `Content-Type:` with nothing after it on body-less requests such
 * as the POST that starts a blob upload; fastify would answer 415 and the push would fail
 * (and, v2 being confirmed, not fall back to v1). The reference registry never looks at the
 * header there, so an empty type counts as none.
 */
function ignoreEmptyContentType(request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  if (request.headers['content-type']?.trim() === '') delete request.headers['content-type'];
  done();
}
