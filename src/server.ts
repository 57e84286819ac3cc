// Starts the server: services, app, listener, and an orderly stop on SIGTERM/SIGINT.
import type { Logger } from 'pino';
import { buildApp, type App } from './app.js';
import type { Config } from './config/schema.js';
import { createServices, type Services } from './services.js';

// In-flight responses get this long to finish on shutdown before their sockets are closed.
const SHUTDOWN_GRACE_MS = 10_000;

export interface RunningServer {
  app: App;
  services: Services;
  address: string;
  stop(): Promise<void>;
}

export function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(at + 1)) };
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const services = await createServices(config, log);
  const app = buildApp(services, log);
  const { host, port } = splitListen(config.listen);
  await app.listen({ host, port });
  const bound = app.server.address();
  const address = typeof bound === 'object' && bound ? `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : config.listen;
  // The one start-up line operators and scripts wait for: printed at any level but silent.
  const startup = config.logLevel === 'silent' ? log : log.child({}, { level: 'info' });
  startup.info({ address, upstreams: config.upstreams.map((u) => u.name), storage: config.storage.path }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const timer = setTimeout(() => app.server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      timer.unref();
      await app.close();
      clearTimeout(timer);
      await services.close();
    })());
  return { app, services, address, stop };
}
