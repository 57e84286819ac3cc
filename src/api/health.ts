// Liveness and readiness for orchestrators (Docker HEALTHCHECK, Kubernetes probes).
import type { FastifyPluginCallback } from 'fastify';

/** What readiness asks of the storage: can it take a write (the blob store's own probe)? */
export interface WritableCheck {
  checkWritable(): Promise<string | undefined>;
}

/**
 * `/healthz`: the process answers. `/readyz`: the config was loaded (there is no app without
 * it) and the storage takes a write (a full or read-only disk makes a mirror useless).
 * `warnings` are reported with a ready answer.
 */
export function healthRoutes(storage: WritableCheck, warnings: readonly string[] = []): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
    app.get('/readyz', async (_request, reply) => {
      const problem = await storage.checkWritable();
      if (problem) return reply.code(503).send({ status: 'unavailable', problem });
      // Ready, but set up in a way an operator should know about (e.g. unverified upstreams).
      return reply.send(warnings.length > 0 ? { status: 'ready', warnings } : { status: 'ready' });
    });
    done();
  };
}
