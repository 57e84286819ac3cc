// Liveness and readiness for orchestrators (Docker HEALTHCHECK, Kubernetes probes).
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyPluginCallback } from 'fastify';

/** Readiness: the storage takes a write (a full or read-only disk makes a mirror useless). */
export async function storageWritable(root: string): Promise<string | undefined> {
  const probe = path.join(root, 'tmp', `ready-${randomUUID()}`);
  try {
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
    return undefined;
  } catch (error) {
    return `storage ${root} is not writable: ${(error as Error).message}`;
  }
}

/**
 * `/healthz`: the process answers. `/readyz`: the config was loaded (there is no app without
 * it) and the storage under `storageRoot` is writable.
 */
export function healthRoutes(storageRoot: string): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
    app.get('/readyz', async (_request, reply) => {
      const problem = await storageWritable(storageRoot);
      if (problem) return reply.code(503).send({ status: 'unavailable', problem });
      return reply.send({ status: 'ready' });
    });
    done();
  };
}
