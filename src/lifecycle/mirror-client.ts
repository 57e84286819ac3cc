// The commands that fill or read the cache (warm, export) talk to a Longshore over its v2
// API, either one that is running (--url) or one they start in-process on a free loopback
// port from a config (--config), so both go through exactly the serving code path.
import { pino } from 'pino';
import { parseConfig } from '../config/load.js';
import type { Config, V2UpstreamConfig } from '../config/schema.js';
import { startServer } from '../server.js';
import type { UpstreamRegistry } from '../upstream/upstream.js';
import { V2RegistryClient } from '../upstream/v2-client.js';

export function clientFor(url: string): UpstreamRegistry {
  // Generous timeout: a cold layer behind a slow upstream is still one request.
  const [settings] = parseConfig({ upstreams: [{ name: 'longshore', url, timeout: '10m' }] }).upstreams;
  return new V2RegistryClient(settings as V2UpstreamConfig);
}

/** Runs `work` against a Longshore: the one at `url`, or one started here from `config`. */
export async function withMirror<T>(target: { url?: string; config?: Config }, work: (client: UpstreamRegistry) => Promise<T>): Promise<T> {
  if (target.url) {
    const client = clientFor(target.url);
    try {
      return await work(client);
    } finally {
      await client.close();
    }
  }
  if (!target.config) throw new Error('give --url of a running Longshore, or --config to work on a data directory directly');
  const server = await startServer({ ...target.config, listen: '127.0.0.1:0' }, pino({ level: 'warn' }));
  const client = clientFor(server.address);
  try {
    return await work(client);
  } finally {
    await client.close();
    await server.stop();
  }
}
