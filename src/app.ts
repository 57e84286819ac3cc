// The fastify application as a plugin: routes, error format and the access log. It receives
// its dependencies and never creates the Fastify instance or listens; server.ts owns the
// instance's options, the listener, TLS and shutdown, and tests register it on an instance of
// their own and drive it with inject().
import type { Logger } from 'pino';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import './api/http-types.js';
import { handleError, sendRegistryError } from './api/errors.js';
import { rejectRepeatedQueryParams } from './api/query-params.js';
import { requestBodyMemory } from './util/read-bounded.js';
import { operationsRoutes } from './api/operations.js';
import { tokenRoutes } from './api/token-routes.js';
import { addUploadForwarding } from './api/upload-forwarding.js';
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
import { PEER_PATH_PREFIX } from './cluster/peer-protocol.js';
import { peerRoutes } from './cluster/peer-route.js';
import type { Api } from './metrics/metrics.js';
import './auth/request-identity.js';
import type { Services } from './services.js';

/** Endpoints for orchestrators and monitoring, not clients. */
const OPERATIONS_PATHS = new Set(['/metrics', '/healthz', '/readyz']);

/** Told of every response sent in full (its status), after it was sent. Must be cheap and synchronous. */
export type ResponseObserver = (request: FastifyRequest, status: number) => void;

/**
 * The server's part in every request (server.ts: drain and shutdown), run from the app's one
 * hook and one 'close' listener rather than a hook and a listener of its own per request.
 */
export interface RequestLifecycle {
  /** false: the request is refused and already answered (the server is draining). */
  admit(request: FastifyRequest, reply: FastifyReply): boolean;
  /** Its response is over: sent in full, or torn down. */
  ended(request: FastifyRequest): void;
}

export interface AppOptions {
  services: Services;
  lifecycle?: RequestLifecycle;
}

/**
 * Register on an instance built with `createFastify()` (server.ts): the routes rely on its
 * router settings (no implicit HEAD routes, long parameters) and on request logging being off.
 */
export const longshoreApp: FastifyPluginCallback<AppOptions> = (app, { services, lifecycle }, done) => {
  requestBodyMemory.limit = services.config.http.maxBufferedBodies;
  app.decorateRequest('cacheOutcome', undefined);
  app.decorateRequest('upstreamName', undefined);
  app.decorateRequest('cacheKind', undefined);
  app.decorateRequest('routeTemplate', undefined);
  app.decorateRequest('identity', undefined);

  // Whoever needs to see every finished response (the web page's pull counting) is called
  // from the one listener below: a fastify onResponse hook would add listeners and a hook
  // run to every request of the hot path.
  const observers: ResponseObserver[] = [];

  // One hook per request, not one per concern: each hook is a step fastify runs on every
  // request (manifest by tag is served at tens of thousands a second).
  // 'close' rather than fastify's onResponse: it also fires for responses torn down mid-body
  // (an upstream that broke off), which are the ones an operator most needs to see.
  app.addHook('onRequest', (request, reply, done) => {
    if (lifecycle && !lifecycle.admit(request, reply)) return;
    reply.raw.on('close', () => {
      lifecycle?.ended(request);
      const length = reply.getHeader('content-length');
      const finished = reply.raw.writableFinished;
      const route = request.routeTemplate ?? request.routeOptions.url ?? 'unmatched';
      services.metrics.httpRequest(apiOf(request.url), request.method, route, reply.statusCode, reply.elapsedTime / 1000);
      if (request.cacheKind && request.cacheOutcome) {
        const served = finished && request.method === 'GET' && length !== undefined ? Number(length) : undefined;
        services.metrics.cacheRequest(request.cacheKind, request.cacheOutcome, served);
      }
      if (finished) for (const observe of observers) observe(request, reply.statusCode);
      // Probes and scrapes arrive every few seconds from the orchestrator and would drown the
      // log: they are logged at debug. A server above info (warn: the default in production
      // and in the bench) writes neither, so it does not even look at the path.
      const log = request.log as Logger; // fastify's logger is pino's
      if (!log.isLevelEnabled('info')) return;
      // So are requests between replicas: the client's own request is logged by the replica it reached.
      const level = OPERATIONS_PATHS.has(request.url.split('?')[0] ?? '') || request.url.startsWith(PEER_PATH_PREFIX) ? 'debug' : 'info';
      if (!log.isLevelEnabled(level)) return;
      request.log[level](
        {
          method: request.method,
          path: request.url,
          client: request.ip,
          userAgent: request.headers['user-agent'],
          user: requestUser(request),
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
    rejectRepeatedQueryParams(request, reply, done);
  });

  if (services.coordinator.uploadOwners) addUploadForwarding(app, services.coordinator.uploadOwners, app.log as Logger);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) =>
    sendRegistryError(reply, new RegistryError('UNSUPPORTED', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`, { status: 404 })),
  );

  const cached = new CachedRepositories(services.metadata, services.blobs, services.router, services.policy);
  void app.register(operationsRoutes(services));
  if (services.peerToken) void app.register(peerRoutes(services.inflight, services.peerToken));
  if (services.config.ui.enabled) void app.register(uiPlugin(services, (observer) => observers.push(observer)));
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
  done();
};

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

/**
 * Who made a request, for the access log: the user the access edge decided on when it
 * checked the credentials (auth/request-identity.ts); none for anonymous callers, refused
 * credentials and requests no access check saw. Nothing is parsed or verified again here.
 */
function requestUser(request: FastifyRequest): string | undefined {
  return request.identity?.user;
}

function apiOf(url: string): Api {
  if (url.startsWith('/v2')) return 'v2';
  if (url.startsWith('/v1/') || url.startsWith('/_ping')) return 'v1';
  return 'other';
}
