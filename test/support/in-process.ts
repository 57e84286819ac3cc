// Longshore in this process, for tests that need its internals or its log lines without a
// child process: the same services, app and listener that `longshore serve` starts.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { makeTempDir } from '../harness/tmp.js';

export interface InProcessLongshore {
  url: string;
  dataDir: string;
  server: RunningServer;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  /** The access-log lines ("msg":"request"). */
  requests(): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startInProcess(config: Record<string, unknown>, dataDir?: string): Promise<InProcessLongshore> {
  // Without a directory from the test, one that the harness removes when the process exits.
  const dir = dataDir ?? (await makeTempDir('data')).path;
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  // `storage` is merged, so a test setting storage.delete still gets its own data directory.
  const parsed = parseConfig({ listen: '127.0.0.1:0', ...config, storage: { path: dir, ...(config.storage as Record<string, unknown> | undefined) } });
  const server = await startServer(parsed, pino({ level: 'info' }, sink));
  return {
    url: server.address,
    dataDir: dir,
    server,
    logs,
    requests: () => logs.filter((l) => l.msg === 'request'),
    stop: () => server.stop(),
  };
}
