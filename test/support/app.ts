// The app plugin on a Fastify instance of the test's own, driven with inject() (no sockets):
// the same instance options and services `longshore serve` uses, a fresh data directory and a
// log sink per test, all closed when the test ends.
import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { longshoreApp } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { createFastify, type LongshoreFastify } from '../../src/server.js';
import { createServices, type Services } from '../../src/services.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from './cleanup.js';

export interface TestApp {
  app: LongshoreFastify;
  services: Services;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
}

export function logSink(logs: Array<Record<string, unknown>>): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
}

export async function buildTestApp(t: TestContext, config: Record<string, unknown> = {}, level = 'debug'): Promise<TestApp> {
  const dir = await makeTempDir('app');
  onCleanup(t, () => dir.remove());
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level }, logSink(logs));
  const parsed = parseConfig({ ...config, storage: { path: dir.path, ...(config.storage as Record<string, unknown> | undefined) } });
  const services = await createServices(parsed, log);
  onCleanup(t, () => services.close());
  const app = createFastify(log, parsed.http);
  await app.register(longshoreApp, { services });
  onCleanup(t, () => app.close());
  return { app, services, logs };
}
