// tinyproxy (Debian package tinyproxy) as the corporate forward proxy between Longshore and
// its upstreams: it relays plain requests and CONNECT tunnels, and logs each one.
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { spawnProcess, type ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';
import { pollUntil } from './wait.js';

export interface ForwardProxy {
  /** "http://127.0.0.1:<port>" */
  readonly url: string;
  /** The proxy's log so far (one line per connection, with the target). */
  log(): Promise<string>;
  dispose(): Promise<void>;
}

export async function startForwardProxy(): Promise<ForwardProxy> {
  const tinyproxy = requireTool('tinyproxy', 'tinyproxy');
  const dir = await makeTempDir('proxy');
  const port = await freePort();
  const logFile = join(dir.path, 'tinyproxy.log');
  const configFile = join(dir.path, 'tinyproxy.conf');
  // No ConnectPort lines: CONNECT to any port (the test upstreams use high ports).
  await writeFile(configFile, [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 60', `LogFile "${logFile}"`, 'LogLevel Connect', 'MaxClients 20', 'Allow 127.0.0.1', ''].join('\n'));
  await writeFile(logFile, '');
  let handle: ProcessHandle | undefined;
  try {
    // -d: stay in the foreground, so the harness owns the process.
    handle = spawnProcess(tinyproxy, ['-d', '-c', configFile], { logFile: join(dir.path, 'stdout.log') });
    await pollUntil(() => portOpen(port), {
      timeoutMs: 10_000,
      what: 'tinyproxy to listen',
      abortReason: () => (handle?.exitStatus() === undefined ? undefined : handle.describe()),
    });
  } catch (error) {
    await handle?.stop();
    await dir.remove();
    throw error;
  }
  const running = handle;
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => readFile(logFile, 'utf8'),
    dispose: async () => {
      await running.stop();
      await dir.remove();
    },
  };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
