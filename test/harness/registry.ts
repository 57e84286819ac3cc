// The Go reference registry (Debian package docker-registry) as a real upstream for tests.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { freePort } from './ports.js';
import { spawnProcess } from './processes.js';
import type { ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';
import { pollUntil } from './wait.js';

export interface RegistryHandle {
  /** "http://127.0.0.1:<port>" */
  readonly url: string;
  readonly port: number;
  readonly storageDir: string;
  /** The running registry process (undefined while stopped). */
  readonly process: ProcessHandle | undefined;
  /** Stops the registry process (storage is kept, so start() brings the same content back). */
  stop(): Promise<void>;
  /** Starts it again on the same port and storage ("upstream gone, then back"). */
  start(): Promise<void>;
  /** stop(), then removes the temp dirs this handle created (not a caller-provided storageDir). */
  dispose(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

/**
 * The registry also reads REGISTRY_* variables as config overrides; keep the caller's out. And
 * AWS_CA_BUNDLE: its s3 driver (aws-sdk-go v1, with a transport of its own) panics at start
 * when that is set, and the tests' S3 server is plain HTTP on loopback anyway.
 */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('REGISTRY_') && key !== 'AWS_CA_BUNDLE') env[key] = value;
  }
  return env;
}

export interface RegistryOptions {
  storageDir?: string;
  /** Run as a pull-through cache of this registry (the reference mirror in bench/run.ts). */
  proxyRemoteUrl?: string;
  /** A storage driver section instead of the filesystem one, e.g. `{ s3: {...} }` (bench/parts/s3.ts). */
  storageDriver?: Record<string, unknown>;
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const binary = requireTool('docker-registry', 'docker-registry');
  const workDir = await makeTempDir('registry');
  const storageDir = opts.storageDir ?? join(workDir.path, 'storage');
  await mkdir(storageDir, { recursive: true });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const configPath = join(workDir.path, 'config.yml');
  await writeFile(
    configPath,
    stringify({
      version: 0.1,
      log: { level: 'warn', formatter: 'text' },
      storage: {
        ...(opts.storageDriver ?? { filesystem: { rootdirectory: storageDir } }),
        delete: { enabled: true },
        // No background purge of upload dirs: nothing should change storage behind a test.
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: `127.0.0.1:${port}`,
        // A fixed secret (instead of a random one per start) keeps upload sessions valid
        // across stop()/start() and silences the "no HTTP secret" warning.
        secret: 'longshore-test-registry',
        // Relative upload Locations keep a client that came through the counting proxy on the
        // proxy (the proxy rewrites Host, so absolute ones would point past it).
        relativeurls: true,
      },
      ...(opts.proxyRemoteUrl === undefined ? {} : { proxy: { remoteurl: opts.proxyRemoteUrl } }),
    }),
  );

  let current: ProcessHandle | undefined;

  const start = async (): Promise<void> => {
    if (current !== undefined && current.exitStatus() === undefined) throw new Error(`registry at ${url} is already running`);
    const child = spawnProcess(binary, ['serve', configPath], { env: registryEnv(), logFile: join(workDir.path, 'registry.log') });
    current = child;
    await pollUntil(
      async () => {
        const response = await request(`${url}/v2/`, { reset: true });
        await response.body.dump();
        return response.statusCode === 200;
      },
      {
        timeoutMs: READY_TIMEOUT_MS,
        what: `docker-registry to answer 200 on ${url}/v2/`,
        abortReason: () => (child.exitStatus() === undefined ? undefined : child.describe()),
      },
    ).catch(async (error: unknown) => {
      await child.stop();
      throw error;
    });
  };

  const stop = async (): Promise<void> => {
    await current?.stop();
  };

  try {
    await start();
  } catch (error) {
    await workDir.remove();
    throw error;
  }
  return {
    url,
    port,
    storageDir,
    get process() {
      return current?.exitStatus() === undefined ? current : undefined;
    },
    stop,
    start,
    dispose: async () => {
      await stop();
      await workDir.remove();
    },
  };
}
