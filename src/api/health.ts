// Liveness and readiness for orchestrators (Docker HEALTHCHECK, Kubernetes probes).
import type { FastifyPluginCallback } from 'fastify';

/** What readiness asks of the storage: can it take a write (the blob store's own probe)? */
export interface WritableCheck {
  checkWritable(): Promise<string | undefined>;
}

/**
 * `/healthz`: the process answers. `/readyz`: the config was loaded (there is no app without
 * it) and the storage takes a write (a full or read-only disk makes a mirror useless).
 */
export function healthRoutes(storage: WritableCheck): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
    app.get('/readyz', async (_request, reply) => {
      const problem = await storage.checkWritable();
      if (problem) return reply.code(503).send({ status: 'unavailable', problem });
      return reply.send({ status: 'ready' });
    });
    done();
  };
}
