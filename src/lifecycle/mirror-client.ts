// The commands that fill or read the cache (warm, export) talk to a Longshore over its v2
// API, either one that is running (--url) or one they start in-process on a free loopback
// port from a config (--config), so both go through exactly the serving code path.
import path from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../config/load.js';
import type { Config, V2UpstreamConfig } from '../config/schema.js';
import { startServer } from '../server.js';
import { DataDirectoryLocked, lockHolder } from './server-lock.js';
import type { UpstreamRegistry } from '../upstream/upstream.js';
import { V2RegistryClient } from '../upstream/v2-client.js';

export function clientFor(url: string, credentials?: { username: string; password: string }): UpstreamRegistry {
  // Generous timeout: a cold layer behind a slow upstream is still one request.
  const [settings] = parseConfig({ upstreams: [{ name: 'longshore', url, timeout: '10m', ...credentials }] }).upstreams;
  return new V2RegistryClient(settings as V2UpstreamConfig);
}

/** Runs `work` against a Longshore: the one at `url`, or one started here from `config`. */
export interface MirrorTarget {
  url?: string;
  config?: Config;
  /** Sent to the Longshore (Basic, then its token flow); default: none. */
  credentials?: (url: string) => Promise<{ username: string; password: string } | undefined>;
}

export async function withMirror<T>(target: MirrorTarget, work: (client: UpstreamRegistry) => Promise<T>): Promise<T> {
  if (target.url) {
    const client = clientFor(target.url, await target.credentials?.(target.url));
    try {
      return await work(client);
    } finally {
      await client.close();
    }
  }
  if (!target.config) throw new Error('give --url of a running Longshore, or --config to work on a data directory directly');
  // A server already serving this directory owns its temp files and its cache figures: go
  // through it rather than start a second one beside it.
  const running = await lockHolder(path.resolve(target.config.storage.path));
  if (running) {
    if (!running.address) throw new DataDirectoryLocked(path.resolve(target.config.storage.path), running);
    process.stderr.write(`longshore: ${path.resolve(target.config.storage.path)} is served by process ${running.pid}; going through it at ${running.address}\n`);
    return withMirror({ url: running.address, credentials: target.credentials }, work);
  }
  const server = await startServer({ ...target.config, listen: '127.0.0.1:0' }, pino({ level: 'warn' }));
  // Interrupted (Ctrl-C, a CI timeout): stop the server here, which aborts its fetches and
  // removes their temp files, instead of dying with them left in the data directory.
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`longshore: ${signal}: stopping; partial downloads are removed\n`);
    void server.stop().finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const client = clientFor(server.address, await target.credentials?.(server.address));
  try {
    return await work(client);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await client.close();
    await server.stop();
  }
}
