// Endpoints for operators: Prometheus metrics, liveness and readiness.
import type { FastifyPluginCallback } from 'fastify';
import type { Services } from '../services.js';
import { healthRoutes } from './health.js';

export function operationsRoutes(services: Services): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', services.metrics.registry.contentType);
      return reply.send(await services.metrics.registry.metrics());
    });
    const warnings = services.config.upstreams
      .filter((upstream) => upstream.insecure)
      .map((upstream) => `upstream ${upstream.name}: certificate verification is off (insecure: true)`);
    void app.register(healthRoutes(services.blobs, warnings));
    done();
  };
}
