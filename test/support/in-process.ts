// Longshore in this process, for tests that need its internals or its log lines without a
// child process: the same services, app and listener that `longshore serve` starts.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/server.js';

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
  const dir = dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'ls-data-')));
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const parsed = parseConfig({ listen: '127.0.0.1:0', storage: { path: dir }, ...config });
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
