// The container HEALTHCHECK: asks /healthz on the address the config says the server listens
// on (so a mounted config with another port or TLS is followed), exit 0 when healthy.
// Usage: node dist/cli/healthcheck.js CONFIG_FILE
import { pathToFileURL } from 'node:url';
import { Agent, request } from 'undici';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { splitListen } from '../server.js';

/** The URL of /healthz on this machine for a server started with `config`. */
export function healthUrl(config: Pick<Config, 'listen' | 'tls'>): string {
  const { host, port } = splitListen(config.listen);
  // A wildcard address is reached over loopback.
  const local = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `${config.tls ? 'https' : 'http'}://${local}:${port}/healthz`;
}

export async function checkHealth(configFile: string): Promise<boolean> {
  const config = await loadConfig(configFile, process.env, () => undefined);
  // The certificate names the public host, not 127.0.0.1; liveness is all that is asked here.
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false }, headersTimeout: 4_000 });
  try {
    const response = await request(healthUrl(config), { dispatcher });
    await response.body.dump();
    return response.statusCode === 200;
  } catch {
    return false;
  } finally {
    await dispatcher.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2] ?? '/etc/longshore/config.yaml';
  checkHealth(file).then(
    (healthy) => process.exit(healthy ? 0 : 1),
    (error: unknown) => {
      console.error(`healthcheck: ${(error as Error).message}`);
      process.exit(1);
    },
  );
}
