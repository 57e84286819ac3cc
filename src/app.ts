// The fastify application: routes, error format and the access log. It never listens;
// server.ts does, and tests build one per test with their own services.
import Fastify, { LogController } from 'fastify';
import type { Logger } from 'pino';
import './api/http-types.js';
import { handleError, sendRegistryError } from './api/errors.js';
import { serverTimeouts } from './api/connection-limits.js';
import { rejectRepeatedQueryParams } from './api/query-params.js';
import { runWithClientAddress } from './auth/client-address.js';
import { requestBodyMemory } from './util/read-bounded.js';
import { operationsRoutes } from './api/operations.js';
import { tokenRoutes } from './api/token-routes.js';
import { V1ImageHandlers } from './api/v1/image-handlers.js';
import { V1IndexHandlers } from './api/v1/index-handlers.js';
import { V1MirrorHandlers } from './api/v1/mirror-handlers.js';
import { v1Routes } from './api/v1/routes.js';
import { V1Search } from './api/v1/search.js';
import { Catalog } from './api/v2/catalog.js';
import { LocalHandlers } from './api/v2/local-handlers.js';
import { MirrorHandlers } from './api/v2/mirror-handlers.js';
import { v2DisabledRoutes } from './api/v2/disabled.js';
import { v2Routes } from './api/v2/routes.js';
import { CachedRepositories } from './mirror/cached-repositories.js';
import { RegistryError } from './protocol/errors.js';
import { uiPlugin } from './ui/plugin.js';
import type { Api } from './metrics/metrics.js';
import type { Services } from './services.js';

export type App = ReturnType<typeof buildApp>;

export function buildApp(services: Services, log: Logger) {
  requestBodyMemory.limit = services.config.http.maxBufferedBodies;
  const app = Fastify({
    loggerInstance: log,
    // We write one line per request ourselves, with the cache outcome.
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false, // an implicit HEAD would run the GET handler and fetch whole blobs
    routerOptions: { maxParamLength: 2048 }, // names run to 255 characters plus the rest of the path
    return503OnClosing: true,
    ...serverTimeouts(services.config.http),
  });

  app.decorateRequest('cacheOutcome', undefined);
  app.decorateRequest('upstreamName', undefined);
  app.decorateRequest('cacheKind', undefined);
  app.decorateRequest('routeTemplate', undefined);

  // 'close' rather than fastify's onResponse: it also fires for responses torn down mid-body
  // (an upstream that broke off), which are the ones an operator most needs to see.
  app.addHook('onRequest', (request, reply, done) => {
    reply.raw.once('close', () => {
      const length = reply.getHeader('content-length');
      const finished = reply.raw.writableFinished;
      const route = request.routeTemplate ?? request.routeOptions.url ?? 'unmatched';
      services.metrics.httpRequest(apiOf(request.url), request.method, route, reply.statusCode, reply.elapsedTime / 1000);
      if (request.cacheKind && request.cacheOutcome) {
        const served = finished && request.method === 'GET' && length !== undefined ? Number(length) : undefined;
        services.metrics.cacheRequest(request.cacheKind, request.cacheOutcome, served);
      }
      request.log.info(
        {
          method: request.method,
          path: request.url,
          status: reply.statusCode,
          bytes: length === undefined ? undefined : Number(length),
          durationMs: Math.round(reply.elapsedTime * 100) / 100,
          cache: request.cacheOutcome,
          upstream: request.upstreamName,
          aborted: finished ? undefined : true,
        },
        'request',
      );
    });
    runWithClientAddress(request.ip, done); // for the failed-login limits
  });

  app.addHook('onRequest', rejectRepeatedQueryParams);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) =>
    sendRegistryError(reply, new RegistryError('UNSUPPORTED', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`, { status: 404 })),
  );

  const cached = new CachedRepositories(services.metadata, services.blobs, services.router, services.policy);
  void app.register(operationsRoutes(services));
  if (services.config.ui.enabled) void app.register(uiPlugin(services));
  if (services.config.api.v1) void app.register(v1Routes(v1Dependencies(services, cached)));
  if (services.config.api.v2) {
    void app.register(
      v2Routes({
        mirrorHandlers: new MirrorHandlers(services.mirror, services.router),
        localHandlers: new LocalHandlers(services.local, services.uploads, { deleteEnabled: services.config.storage.delete }),
        catalog: new Catalog(services.access, { privateRepositories: () => services.local.catalog(), cachedRepositories: () => cached.list() }),
        policy: services.policy,
        access: services.access,
        publicUrl: services.config.publicUrl,
      }),
    );
    void app.register(tokenRoutes(services.access, services.config.publicUrl));
  } else {
    void app.register(v2DisabledRoutes());
  }
  return app;
}

function v1Dependencies(services: Services, cached: CachedRepositories) {
  const { v1Access: access, v1Local: registry, config } = services;
  const localRepositories = async () => [...new Set([...(await registry.list()), ...(await services.local.catalog())])].sort();
  const mirrored = services.v1Router.upstreams.length > 0 ? new V1MirrorHandlers(access, services.v1Mirror, services.v1Router, config.publicUrl) : undefined;
  return {
    access,
    index: new V1IndexHandlers(access, registry, services.users, {
      allowSignup: config.auth.allowSignup,
      deleteEnabled: config.storage.delete,
      publicUrl: config.publicUrl,
    }),
    images: new V1ImageHandlers(access, registry, mirrored),
    search: new V1Search(access, { privateRepositories: localRepositories, cachedRepositories: () => cached.list() }, mirrored),
    mirrored,
  };
}

function apiOf(url: string): Api {
  if (url.startsWith('/v2')) return 'v2';
  if (url.startsWith('/v1/') || url.startsWith('/_ping')) return 'v1';
  return 'other';
}
