// Longshore itself as a child process, started the way an operator would (serve --config),
// with its pino JSON log parsed so tests can assert on it.
//
// Contract with the server: on stdout, one JSON object per line (pino), and once it accepts
// connections a line with msg "listening" and field address, e.g. "http://127.0.0.1:40123".
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { spawnProcess } from './processes.js';
import { s3StorageConfig, sharedSwift } from './swift.js';
import type { ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';

export type LogRecord = Record<string, unknown>;

export interface LongshoreOptions {
  /** Storage directory (kept: the caller owns it). Default: a temp dir removed by dispose(). */
  dataDir?: string;
  /** Extra environment variables for the server. */
  env?: Record<string, string>;
  /** How long to wait for the "listening" log line (default 20 s). */
  startTimeoutMs?: number;
  /** Script to run instead of src/main.ts, relative to the repo root (for the harness's own tests). */
  entry?: string;
  /**
   * Node options before the entry script, after the shipped ones (shippedNodeFlags). Default:
   * ["--import", "tsx"]; the bench runs dist/ with none.
   */
  nodeArgs?: string[];
}

export interface LongshoreHandle {
  /** Base URL from the latest "listening" line, e.g. "http://127.0.0.1:40123". */
  readonly url: string;
  readonly dataDir: string;
  readonly configPath: string;
  /** Every JSON log line of every run of this handle, in order (restarts append). */
  readonly logs: LogRecord[];
  /** The running server process (undefined while stopped). */
  readonly process: ProcessHandle | undefined;
  /** First log record of the current run (past or future) matching `predicate`. */
  waitForLog(predicate: (record: LogRecord) => boolean, timeoutMs: number): Promise<LogRecord>;
  /** SIGTERM (graceful shutdown), SIGKILL after 5 s; resolves when exited. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, for recovery tests. */
  kill9(): Promise<void>;
  /** Starts again with the same config and data dir (the port may change; url is updated). */
  start(): Promise<void>;
  /** stop(), then removes the temp dirs this handle created (not a caller-provided dataDir). */
  dispose(): Promise<void>;
}

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The node flags Longshore ships with: those on the `#!/usr/bin/env -S node ...` line of
 * src/main.ts, which the `longshore` command, `npm start` and the container image run it with.
 * Every process started here gets them too, so tests and the bench run what operators run.
 */
export function shippedNodeFlags(): string[] {
  const shebang = readFileSync(join(REPO_ROOT, 'src/main.ts'), 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!\/usr\/bin\/env -S node((?: --[\w-]+(?:=\S+)?)*)$/.exec(shebang);
  if (!match) throw new Error(`src/main.ts does not start with "#!/usr/bin/env -S node [--flag...]": ${shebang}`);
  return (match[1] ?? '').split(' ').filter((flag) => flag !== '');
}
const DEFAULT_START_TIMEOUT_MS = 20_000;
const S3_START_TIMEOUT_MS = 90_000;

function parseLogLine(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as LogRecord) : undefined;
  } catch {
    return undefined;
  }
}

function listeningAddress(record: LogRecord | undefined): string | undefined {
  return record?.msg === 'listening' && typeof record.address === 'string' ? record.address : undefined;
}

/**
 * TEST_STORAGE_DRIVER=s3 runs a suite unchanged on the S3 driver: every Longshore it starts
 * (without a storage.driver of its own) gets a bucket of its own on one shared Swift, and the
 * data dir holds scratch files only. test/e2e/s3-*.test.ts set it for the suites that matter.
 * (Not LONGSHORE_*: the server would take that for a config override.)
 */
export const TEST_STORAGE_ENV = 'TEST_STORAGE_DRIVER';

async function testStorageDefaults(storage: Record<string, unknown>): Promise<Record<string, unknown>> {
  const wanted = process.env[TEST_STORAGE_ENV];
  if (wanted === undefined || wanted === '' || wanted === 'fs' || storage.driver !== undefined) return {};
  if (wanted !== 's3') throw new Error(`${TEST_STORAGE_ENV}=${wanted}: expected "fs" or "s3"`);
  return s3StorageConfig(await sharedSwift());
}

export async function startLongshore(config: Record<string, unknown>, opts: LongshoreOptions = {}): Promise<LongshoreHandle> {
  const workDir = await makeTempDir('longshore');
  const dataDir = opts.dataDir ?? join(workDir.path, 'data');
  await mkdir(dataDir, { recursive: true });
  const given = (config.storage ?? {}) as Record<string, unknown>;
  const storage = { ...(await testStorageDefaults(given)), ...given };
  const effectiveConfig = {
    ...config,
    listen: config.listen ?? '127.0.0.1:0',
    storage: { ...storage, path: storage.path ?? dataDir },
  };
  const configPath = join(workDir.path, 'config.yaml');
  await writeFile(configPath, stringify(effectiveConfig));
  const entry = opts.entry ?? 'src/main.ts';
  // On S3 a start loads the AWS SDK and asks the bucket (HEAD, sweeps, the cache index): on a
  // loaded box that is slower than a local directory.
  const onS3 = (storage as { driver?: unknown }).driver === 's3';
  const startTimeoutMs = opts.startTimeoutMs ?? (onS3 ? S3_START_TIMEOUT_MS : DEFAULT_START_TIMEOUT_MS);
  const nodeArgs = [...shippedNodeFlags(), ...(opts.nodeArgs ?? ['--import', 'tsx'])];

  const logs: LogRecord[] = [];
  let current: ProcessHandle | undefined;
  let url = '';

  const start = async (): Promise<void> => {
    if (current !== undefined && current.exitStatus() === undefined) throw new Error(`Longshore at ${url} is already running`);
    const child = spawnProcess(process.execPath, [...nodeArgs, entry, 'serve', '--config', configPath], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...opts.env },
      logFile: join(workDir.path, 'longshore.log'),
      onLine: (line, stream) => {
        const record = stream === 'stdout' ? parseLogLine(line) : undefined;
        if (record !== undefined) logs.push(record);
      },
    });
    current = child;
    try {
      const line = await child.waitForLine((candidate, stream) => stream === 'stdout' && listeningAddress(parseLogLine(candidate)) !== undefined, startTimeoutMs);
      url = (listeningAddress(parseLogLine(line)) as string).replace(/\/+$/, '');
    } catch (error) {
      await child.stop();
      const stdoutTail = child.stdoutLines.slice(-20).join('\n');
      throw new Error(
        `Longshore did not report "listening" (config ${configPath}): ${error instanceof Error ? error.message : String(error)}` +
          (stdoutTail === '' ? '' : `\n--- last stdout lines ---\n${stdoutTail}`),
      );
    }
  };

  try {
    await start();
  } catch (error) {
    await workDir.remove();
    throw error;
  }

  return {
    get url() {
      return url;
    },
    dataDir,
    configPath,
    logs,
    get process() {
      return current?.exitStatus() === undefined ? current : undefined;
    },
    waitForLog: async (predicate, timeoutMs) => {
      if (current === undefined) throw new Error('Longshore is not running');
      const line = await current.waitForLine((candidate, stream) => {
        const record = stream === 'stdout' ? parseLogLine(candidate) : undefined;
        return record !== undefined && predicate(record);
      }, timeoutMs);
      return parseLogLine(line) as LogRecord;
    },
    stop: async () => {
      await current?.stop();
    },
    kill9: async () => {
      await current?.kill9();
    },
    start,
    dispose: async () => {
      await current?.stop();
      await workDir.remove();
    },
  };
}
