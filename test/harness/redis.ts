// Debian's redis-server as a real Redis for tests: a free loopback port, no persistence (the
// tests want a Redis that can be flushed or replaced, never one that remembers an earlier run),
// working directory in a temp dir, stopped through its handle.
import { join } from 'node:path';
import { freePort } from './ports.js';
import { spawnProcess } from './processes.js';
import type { ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';

export interface RedisHandle {
  /** "redis://127.0.0.1:<port>" */
  readonly url: string;
  readonly port: number;
  /** The running server (undefined while stopped). */
  readonly process: ProcessHandle | undefined;
  /** Stops the server; with no persistence, what it held is gone. */
  stop(): Promise<void>;
  /** Starts it again, empty, on the same port ("Redis lost and replaced"). */
  start(): Promise<void>;
  /** stop(), then removes its temp dir. Idempotent. */
  dispose(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

export async function startRedis(): Promise<RedisHandle> {
  const binary = requireTool('redis-server', 'redis-server');
  const workDir = await makeTempDir('redis');
  const port = await freePort();
  let current: ProcessHandle | undefined;

  const start = async (): Promise<void> => {
    if (current !== undefined && current.exitStatus() === undefined) throw new Error(`redis at port ${port} is already running`);
    const child = spawnProcess(
      binary,
      // Arguments instead of a config file: redis-server accepts every directive as "--name value".
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workDir.path, '--daemonize', 'no', '--loglevel', 'notice'],
      { logFile: join(workDir.path, 'redis.log') },
    );
    current = child;
    try {
      // Logged at notice (the default level) once the port is bound and commands are served.
      await child.waitForLine((line) => line.includes('Ready to accept connections'), READY_TIMEOUT_MS);
    } catch (error) {
      await child.stop();
      throw error;
    }
  };

  const stop = async (): Promise<void> => {
    await current?.stop();
  };

  let disposed = false;
  try {
    await start();
  } catch (error) {
    await workDir.remove();
    throw error;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get process() {
      return current?.exitStatus() === undefined ? current : undefined;
    },
    stop,
    start,
    dispose: async () => {
      if (disposed) return;
      disposed = true;
      await stop();
      await workDir.remove();
    },
  };
}
