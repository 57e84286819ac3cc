// Starts the server: services, app, listeners, and an orderly stop on SIGTERM/SIGINT:
// stop accepting, let responses in flight finish within the grace period, cut the rest,
// and leave no temp files behind.
import http from 'node:http';
import type { Logger } from 'pino';
import { buildApp, type App } from './app.js';
import type { Config } from './config/schema.js';
import { createServices, type Services } from './services.js';

export interface RunningServer {
  app: App;
  services: Services;
  address: string;
  /** The separate metrics listener's address, when `metrics.listen` is set. */
  metricsAddress: string | undefined;
  stop(): Promise<void>;
}

export function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(at + 1)) };
}

function urlOf(bound: ReturnType<http.Server['address']>, fallback: string): string {
  return typeof bound === 'object' && bound ? `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : fallback;
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
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const services = await createServices(config, log);
  const app = buildApp(services, log);
  const { host, port } = splitListen(config.listen);
  await app.listen({ host, port });
  const metricsServer = config.metrics.listen ? await startMetricsListener(services, config.metrics.listen, log) : undefined;
  const address = urlOf(app.server.address(), config.listen);
  const metricsAddress = metricsServer ? urlOf(metricsServer.address(), config.metrics.listen ?? '') : undefined;
  // The one start-up line operators and scripts wait for: printed at any level but silent.
  const startup = config.logLevel === 'silent' ? log : log.child({}, { level: 'info' });
  startup.info({ address, metricsAddress, upstreams: config.upstreams.map((u) => u.name), storage: config.storage.path }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // Past the grace period, responses still in flight are cut (clients see a broken body).
      const timer = setTimeout(() => {
        log.warn({ graceMs: config.shutdownGracePeriod }, 'grace period over; closing remaining connections');
        app.server.closeAllConnections();
      }, config.shutdownGracePeriod);
      timer.unref();
      await app.close();
      clearTimeout(timer);
      metricsServer?.closeAllConnections();
      await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
      // Also removes what fetches still running staged: it will never be committed now.
      await services.close();
    })());
  return { app, services, address, metricsAddress, stop };
}
