// Starts the server: services, the Fastify instance and its options, the app plugin,
// listeners (HTTP or HTTPS), certificate reloads, and an orderly stop on SIGTERM/SIGINT:
// keep accepting but answer 503 (so load balancers and clients see "draining", not
// "refused"), let responses in flight finish within the grace period, cut the rest, abort
// upstream fetches nobody reads any more, and leave no temp files behind.
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import Fastify, { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { longshoreApp, type RequestLifecycle } from './app.js';
import { connectionOptions, enforceHeadersTimeoutOverTls } from './api/connection-limits.js';
import { sendRegistryError } from './api/errors.js';
import type { Config } from './config/schema.js';
import { RegistryError } from './protocol/errors.js';
import { acquireDataDirectoryLock, DataDirectoryLocked } from './lifecycle/server-lock.js';
import { createServices, type Services } from './services.js';
import { S3BucketUnusable } from './storage/s3-errors.js';

/** A start-up failure an operator fixes (port taken, unwritable directory, bad TLS files): one line, no stack. */
export class StartupError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'StartupError';
  }
}

export interface RunningServer {
  app: LongshoreFastify;
  services: Services;
  address: string;
  /** The separate metrics listener's address, when `metrics.listen` is set. */
  metricsAddress: string | undefined;
  /** Re-reads tls.cert and tls.key for new connections; false (and the old pair kept) when they are bad. */
  reloadTls(): Promise<boolean>;
  stop(): Promise<void>;
}

interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** Reads and checks a certificate and key; throws a StartupError naming the file at fault. */
async function readTlsPair(files: { cert: string; key: string }): Promise<TlsPair> {
  const read = async (key: 'cert' | 'key') => {
    try {
      return await readFile(files[key]);
    } catch (error) {
      throw new StartupError('TLS_FILE_UNREADABLE', `tls.${key} ${files[key]} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check the path and its permissions`);
    }
  };
  const pair = { cert: await read('cert'), key: await read('key') };
  try {
    tls.createSecureContext(pair); // fails on bad PEM and on a key that does not match the certificate
  } catch (error) {
    throw new StartupError('TLS_PAIR_INVALID', `tls.cert ${files.cert} and tls.key ${files.key} are not a usable certificate and key: ${(error as Error).message}`);
  }
  return pair;
}

/**
 * The Fastify instance the app plugin is written for (tests build theirs with this too);
 * HTTPS when given a certificate and key.
 */
export function createFastify(log: Logger, httpLimits: Config['http'], tlsPair?: TlsPair) {
  const options = {
    loggerInstance: log,
    // The app writes one line per request itself, with the cache outcome.
    logController: new LogController({ disableRequestLogging: true }),
    exposeHeadRoutes: false, // an implicit HEAD would run the GET handler and fetch whole blobs
    routerOptions: { maxParamLength: 2048 }, // names run to 255 characters plus the rest of the path
    return503OnClosing: true,
    ...connectionOptions(httpLimits),
  };
  if (!tlsPair) return Fastify(options);
  // Typed as the plain-HTTP instance so callers and the plugin see one type: an https.Server
  // is an http.Server with TLS on its sockets (setSecureContext is reached by a cast where used).
  // The node:http options go with the TLS pair (fastify passes only `https` on); a handshake
  // gets as long as the headers would.
  const app = Fastify({ ...options, https: { ...options.http, handshakeTimeout: httpLimits.headersTimeout, ...tlsPair } } as unknown as typeof options);
  enforceHeadersTimeoutOverTls(app.server, httpLimits.headersTimeout);
  return app;
}

export type LongshoreFastify = ReturnType<typeof createFastify>;

export function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(at + 1)) };
}

function urlOf(scheme: string, bound: ReturnType<http.Server['address']>, fallback: string): string {
  return typeof bound === 'object' && bound ? `${scheme}://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : fallback;
}

/** `metrics.listen`: /metrics alone on another port, e.g. reachable only from the monitoring network. */
async function startMetricsListener(services: Services, listen: string, log: Logger): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    if (request.url !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404).end();
      return;
    }
    services.metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': services.metrics.registry.contentType }).end(text),
      (error: unknown) => {
        log.error({ err: error }, 'metrics collection failed');
        response.writeHead(500).end();
      },
    );
  });
  await listenOn(server, listen, 'metrics.listen');
  return server;
}

async function listenOn(server: http.Server, listen: string, key: string): Promise<void> {
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  }).catch((error: unknown) => {
    throw listenError(error, listen, key);
  });
}

function listenError(error: unknown, listen: string, key: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new StartupError(code, `${key} ${listen}: the address is already in use; stop the other process or choose another ${key}`);
  if (code === 'EACCES') return new StartupError(code, `${key} ${listen}: not allowed to listen there (ports below 1024 need privileges); choose a port above 1024`);
  if (code === 'EADDRNOTAVAIL') return new StartupError(code, `${key} ${listen}: no such local address on this machine; use 0.0.0.0 or one of its addresses`);
  return error;
}

/**
 * Every directory directly under storage.path takes a file (root passes permission checks, so
 * only a real create tells; a read-only mount over blobs/ would otherwise fail on the first
 * write). A full disk is not a start-up failure: cached content can still be served.
 */
async function assertSubdirectoriesWritable(root: string): Promise<void> {
  const entries = await readdir(root, { withFileTypes: true });
  // lost+found (a filesystem's root) and hidden directories are not ours.
  const ours = entries.filter((e) => e.isDirectory() && e.name !== 'lost+found' && !e.name.startsWith('.'));
  for (const dir of [root, ...ours.map((e) => path.join(root, e.name))]) {
    const probe = path.join(dir, `.longshore-start-${process.pid}`);
    try {
      await (await open(probe, 'wx')).close();
      await rm(probe, { force: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EEXIST') continue;
      throw new StartupError('STORAGE_UNWRITABLE', `storage.path ${root}: ${dir} does not take new files (${code}${code === 'EROFS' ? ': read-only filesystem' : ''}); fix the mount or its permissions`);
    }
  }
}

/** The checks whose failures operators fix themselves, made before anything is created. */
async function preflight(config: Config): Promise<TlsPair | undefined> {
  const root = path.resolve(config.storage.path);
  try {
    const info = await stat(root);
    if (!info.isDirectory()) throw new StartupError('STORAGE_NOT_A_DIRECTORY', `storage.path ${root} is not a directory; point storage.path at a directory`);
  } catch (error) {
    if (error instanceof StartupError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new StartupError('STORAGE_UNUSABLE', `storage.path ${root} cannot be used: ${(error as Error).message}`);
    await mkdir(root, { recursive: true }).catch((mkdirError: unknown) => {
      throw new StartupError('STORAGE_UNWRITABLE', `storage.path ${root} cannot be created (${(mkdirError as NodeJS.ErrnoException).code ?? 'error'}); create it or fix the permissions of its parent`);
    });
  }
  await access(root, fsConstants.W_OK | fsConstants.X_OK).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EROFS') throw new StartupError('STORAGE_UNWRITABLE', `storage.path ${root} is on a read-only filesystem; mount it read-write or choose another storage.path`);
    throw new StartupError('STORAGE_UNWRITABLE', `storage.path ${root} is not writable by this user (uid ${process.getuid?.() ?? '?'}); fix its owner or permissions`);
  });
  await assertSubdirectoriesWritable(root);
  if (config.auth.htpasswd) {
    const file = path.resolve(config.auth.htpasswd);
    await access(file, fsConstants.R_OK).catch((error: unknown) => {
      throw new StartupError('HTPASSWD_UNREADABLE', `auth.htpasswd ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); create it with "htpasswd -B -c ${file} USER" or fix the path`);
    });
  }
  return config.tls ? readTlsPair(config.tls) : undefined;
}

/** In-flight requests, for the drain: what we wait for, and when nothing is left. */
class RequestsInFlight {
  private readonly active = new Map<FastifyRequest, FastifyReply>();
  private emptied: (() => void) | undefined;

  add(request: FastifyRequest, reply: FastifyReply): void {
    this.active.set(request, reply);
  }

  delete(request: FastifyRequest): void {
    this.active.delete(request);
    if (this.active.size === 0) this.emptied?.();
  }

  get size(): number {
    return this.active.size;
  }

  describe(): string[] {
    return [...this.active].slice(0, 20).map(([request, reply]) => `${request.method} ${request.url} (${Math.round(reply.elapsedTime / 1000)}s)`);
  }

  /** Resolves once no request is in flight. */
  empty(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.emptied = resolve));
  }
}

function sendDraining(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // Persistent connections are closed after this answer, so clients reconnect elsewhere.
  reply.header('connection', 'close').header('retry-after', '5');
  const url = request.url;
  if (url === '/readyz') return reply.code(503).send({ status: 'draining' });
  if (url.startsWith('/v1/') || url.startsWith('/_ping')) return reply.code(503).send({ error: 'server is shutting down' });
  return sendRegistryError(reply, new RegistryError('UNAVAILABLE', 'server is shutting down; retry on another replica or in a moment', { status: 503 }));
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const tlsPair = await preflight(config);
  const root = path.resolve(config.storage.path);
  const lock = await acquireDataDirectoryLock(root).catch((error: unknown) => {
    throw error instanceof DataDirectoryLocked ? new StartupError(error.code, `${error.message}; stop it, or give this server another storage.path`) : error;
  });
  let services: Services;
  try {
    services = await createServices(config, log);
  } catch (error) {
    await lock.release();
    throw error instanceof S3BucketUnusable ? new StartupError(error.code, error.message, { cause: error }) : error;
  }
  for (const upstream of config.upstreams.filter((u) => u.insecure)) {
    log.warn({ upstream: upstream.name }, 'upstream certificate verification is off (insecure: true); its answers could come from anyone on the path');
  }
  const app = createFastify(log, config.http, tlsPair);
  const inFlight = new RequestsInFlight();
  let draining = false;
  // Run by the app's own request hook, before its routes and its 404 handler.
  const lifecycle: RequestLifecycle = {
    admit: (request, reply) => {
      if (draining) {
        sendDraining(request, reply);
        return false;
      }
      inFlight.add(request, reply);
      return true;
    },
    ended: (request) => inFlight.delete(request),
  };
  await app.register(longshoreApp, { services, lifecycle });
  await app.ready();
  // app.listen, not server.listen: fastify closes only a server it started itself.
  let metricsServer: http.Server | undefined;
  try {
    await app.listen(splitListen(config.listen)).catch((error: unknown) => {
      throw listenError(error, config.listen, 'listen');
    });
    metricsServer = config.metrics.listen ? await startMetricsListener(services, config.metrics.listen, log) : undefined;
  } catch (error) {
    // Leave nothing behind for an in-process caller that goes on (tests, warm --config).
    await app.close();
    await services.close();
    await lock.release();
    throw error;
  }
  const address = urlOf(tlsPair ? 'https' : 'http', app.server.address(), config.listen);
  await lock.setAddress(address);
  const metricsAddress = metricsServer ? urlOf('http', metricsServer.address(), config.metrics.listen ?? '') : undefined;
  // The one start-up line operators and scripts wait for: printed at any level but silent.
  const startup = config.logLevel === 'silent' ? log : log.child({}, { level: 'info' });
  startup.info({ address, metricsAddress, upstreams: config.upstreams.map((u) => u.name), storage: config.storage.path, tls: tlsPair !== undefined }, 'listening');

  const reloadTls = async (): Promise<boolean> => {
    if (!config.tls) {
      log.info('reload: no tls section configured; nothing to reload');
      return false;
    }
    try {
      const pair = await readTlsPair(config.tls);
      // New handshakes use the new pair; connections already open keep theirs.
      (app.server as unknown as https.Server).setSecureContext(pair);
      log.info({ cert: config.tls.cert }, 'TLS certificate reloaded');
      return true;
    } catch (error) {
      log.error({ err: (error as Error).message }, 'TLS certificate reload refused; still serving the previous certificate');
      return false;
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      draining = true;
      if (inFlight.size > 0) {
        log.info({ inFlight: inFlight.size, requests: inFlight.describe(), graceMs: config.shutdownGracePeriod }, 'draining: waiting for responses in flight');
      }
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), config.shutdownGracePeriod);
      });
      if (await Promise.race([inFlight.empty().then(() => false), graceOver])) {
        // Past the grace period, responses still in flight are cut (clients see a broken body).
        log.warn({ graceMs: config.shutdownGracePeriod, requests: inFlight.describe() }, 'grace period over; closing remaining connections');
        app.server.closeAllConnections();
      }
      clearTimeout(timer);
      app.server.closeIdleConnections();
      await app.close();
      metricsServer?.closeAllConnections();
      await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
      // Also removes what fetches still running staged: it will never be committed now.
      await services.close();
      await lock.release();
    })());
  return { app, services, address, metricsAddress, reloadTls, stop };
}
