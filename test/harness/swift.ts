// OpenStack Swift with its s3api middleware (Debian packages swift-proxy, swift-account,
// swift-container, swift-object, plus memcached for tempauth's token cache) as a real
// S3-compatible server for tests: single node, one-replica rings, every process on a free
// loopback port, all state in a temp dir, stopped through the handles this module started.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { createS3Client } from '../../src/storage/s3-client.js';
import { freePort } from './ports.js';
import { spawnProcess } from './processes.js';
import type { ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';
import { pollUntil } from './wait.js';

export interface SwiftHandle {
  /** The S3 endpoint: "http://127.0.0.1:<port>" (path-style buckets). */
  readonly endpoint: string;
  readonly region: string;
  /** tempauth's "<account>:<user>", which s3api takes as the access key. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Milliseconds from the call to startSwift() until the S3 API answered. */
  readonly startMs: number;
  /** The running processes (memcached, account, container, object, proxy), for messages. */
  readonly processes: readonly ProcessHandle[];
  /** A new client configured like Longshore's own (src/storage/s3-client.ts). */
  client(): S3Client;
  /** Creates a bucket (a fresh unique name unless given) and returns its name. */
  createBucket(name?: string): Promise<string>;
  /**
   * How many segments of multipart uploads (completed, in progress or leaked) Swift keeps for
   * `bucket`, read through Swift's native API: s3api stores parts in a "<bucket>+segments"
   * container that S3 cannot list.
   */
  segmentCount(bucket: string): Promise<number>;
  /** Stops every process this handle started and removes its temp dir. Idempotent. */
  dispose(): Promise<void>;
}

const REGION = 'us-east-1';
const ACCOUNT = 'longshore';
const USER = 's3';
const READY_TIMEOUT_MS = 60_000;
const SWIFT_CONF = '/etc/swift/swift.conf';

type ServerType = 'account' | 'container' | 'object';
const SERVER_TYPES: readonly ServerType[] = ['account', 'container', 'object'];

/** Tool on PATH -> Debian package, checked up front so a missing one names its install command. */
const TOOLS: ReadonlyArray<readonly [string, string]> = [
  ['swift-proxy-server', 'swift-proxy'],
  ['swift-account-server', 'swift-account'],
  ['swift-container-server', 'swift-container'],
  ['swift-object-server', 'swift-object'],
  ['memcached', 'memcached'],
];

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Every Swift server reads the cluster's hash path salt from /etc/swift/swift.conf (not from
 * swift_dir). Debian's swift package installs one; write a minimal one if it is missing.
 */
async function ensureSwiftConf(): Promise<void> {
  if (existsSync(SWIFT_CONF)) return;
  if (!isRoot) {
    throw new Error(`${SWIFT_CONF} is missing (it comes with Debian's swift package): apt-get install -y --no-install-recommends swift`);
  }
  await mkdir('/etc/swift', { recursive: true });
  await writeFile(SWIFT_CONF, '[swift-hash]\nswift_hash_path_suffix = longshore-tests\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n');
}

/** `[section]` blocks of `key = value` lines, in order. */
function iniFile(sections: Record<string, Record<string, string | number | boolean>>): string {
  return Object.entries(sections)
    .map(([section, entries]) => `[${section}]\n${Object.entries(entries).map(([key, value]) => `${key} = ${String(value)}`).join('\n')}\n`)
    .join('\n');
}

interface Layout {
  dir: string;
  devicesDir: string;
  ports: Record<ServerType | 'proxy' | 'memcached', number>;
  secret: string;
}

function commonDefaults(layout: Layout, port: number): Record<string, string | number | boolean> {
  return {
    bind_ip: '127.0.0.1',
    bind_port: port,
    // One process per server, so its handle's pid is the whole server and stop() stops it.
    workers: 0,
    // Swift drops privileges to this user; there is no "swift" user in a test run.
    user: userInfo().username,
    swift_dir: layout.dir,
    devices: layout.devicesDir,
    mount_check: false,
    disable_fallocate: true,
    // Warnings and errors only: with -v they go to stderr, where describe() shows them.
    log_level: 'WARNING',
  };
}

function backendConf(layout: Layout, type: ServerType): string {
  return iniFile({
    DEFAULT: commonDefaults(layout, layout.ports[type]),
    'pipeline:main': { pipeline: `healthcheck ${type}-server` },
    [`app:${type}-server`]: { use: `egg:swift#${type}` },
    'filter:healthcheck': { use: 'egg:swift#healthcheck' },
  });
}

function proxyConf(layout: Layout): string {
  const filters = ['catch_errors', 'gatekeeper', 'healthcheck', 'proxy-logging', 'listing_formats', 'copy', 'dlo', 'versioned_writes'];
  return iniFile({
    DEFAULT: commonDefaults(layout, layout.ports.proxy),
    'pipeline:main': {
      // s3api before tempauth (it turns an S3 signature into a tempauth identity); copy, slo and
      // dlo serve CopyObject and multipart uploads.
      pipeline:
        'catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server',
    },
    'app:proxy-server': { use: 'egg:swift#proxy', account_autocreate: true },
    'filter:s3api': { use: 'egg:swift#s3api', location: REGION, max_upload_part_num: 10_000 },
    // "user_<account>_<user> = <key> <groups>": the S3 access key is "<account>:<user>".
    'filter:tempauth': { use: 'egg:swift#tempauth', [`user_${ACCOUNT}_${USER}`]: `${layout.secret} .admin` },
    'filter:cache': { use: 'egg:swift#memcache', memcache_servers: `127.0.0.1:${layout.ports.memcached}` },
    // AWS allows 10,000 parts; Swift's default manifest limit is 1,000.
    'filter:slo': { use: 'egg:swift#slo', max_manifest_segments: 10_000 },
    ...Object.fromEntries(filters.map((name) => [`filter:${name}`, { use: `egg:swift#${name.replace('-', '_')}` }])),
  });
}

// Builds the three rings with Swift's own RingBuilder in one Python process: the equivalent
// swift-ring-builder create/add/rebalance commands are nine Python start-ups (~7 s on a loaded
// 2-core box, against ~1 s for this).
const BUILD_RINGS_PY = `
import sys
from swift.common.ring import RingBuilder
out_dir = sys.argv[1]
for spec in sys.argv[2:]:
    name, port = spec.split('=')
    builder = RingBuilder(6, 1, 0)  # 2^6 partitions, 1 replica, no min hours between moves
    builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port), 'device': 'd1', 'weight': 100})
    builder.rebalance()
    builder.get_ring().save(f'{out_dir}/{name}.ring.gz')
`;

/** The Python interpreter Swift's scripts run with (the shebang of one of them). */
async function swiftPython(swiftScript: string): Promise<string> {
  const firstLine = (await readFile(swiftScript, 'utf8')).split('\n', 1)[0] ?? '';
  const interpreter = firstLine.replace(/^#!\s*/, '').split(/\s+/)[0];
  if (interpreter === undefined || interpreter === '' || !firstLine.startsWith('#!')) {
    throw new Error(`cannot tell which Python runs Swift: ${swiftScript} starts with ${JSON.stringify(firstLine)}`);
  }
  return interpreter;
}

/** One ring per server type: one device "d1" on that server's port. */
async function buildRings(layout: Layout, python: string): Promise<void> {
  const child = spawnProcess(python, ['-c', BUILD_RINGS_PY, layout.dir, ...SERVER_TYPES.map((type) => `${type}=${layout.ports[type]}`)]);
  const status = await child.exited;
  if (status.code !== 0) throw new Error(`building Swift's rings failed: ${child.describe()}`);
}

async function answersHealthcheck(port: number): Promise<boolean> {
  const response = await request(`http://127.0.0.1:${port}/healthcheck`, { reset: true });
  await response.body.dump();
  return response.statusCode === 200;
}

export async function startSwift(): Promise<SwiftHandle> {
  const startedAt = Date.now();
  const tools = Object.fromEntries(TOOLS.map(([command, debPackage]) => [command, requireTool(command, debPackage)])) as Record<string, string>;
  await ensureSwiftConf();
  const workDir = await makeTempDir('swift');
  const processes: ProcessHandle[] = [];
  const stopAll = async (): Promise<void> => {
    // Proxy first (no new requests reach the backends), memcached last.
    for (const child of [...processes].reverse()) await child.stop();
  };
  let disposed = false;
  const dispose = async (): Promise<void> => {
    if (disposed) return;
    disposed = true;
    await stopAll();
    await workDir.remove();
  };

  try {
    const [account, container, object, proxy, memcached] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const layout: Layout = {
      dir: workDir.path,
      devicesDir: join(workDir.path, 'devices'),
      ports: { account, container, object, proxy, memcached },
      secret: randomBytes(16).toString('hex'),
    };
    // The device is a plain directory (mount_check = false); all three servers share it.
    await mkdir(join(layout.devicesDir, 'd1'), { recursive: true });
    await buildRings(layout, await swiftPython(tools['swift-proxy-server']!));

    processes.push(
      spawnProcess(tools.memcached!, ['-l', '127.0.0.1', '-p', String(layout.ports.memcached), '-U', '0', '-m', '64', ...(isRoot ? ['-u', 'root'] : [])], {
        logFile: join(workDir.path, 'memcached.log'),
      }),
    );
    for (const type of SERVER_TYPES) {
      const confPath = join(workDir.path, `${type}-server.conf`);
      await writeFile(confPath, backendConf(layout, type));
      processes.push(spawnProcess(tools[`swift-${type}-server`]!, [confPath, '-v'], { logFile: join(workDir.path, `${type}-server.log`) }));
    }
    const proxyConfPath = join(workDir.path, 'proxy-server.conf');
    await writeFile(proxyConfPath, proxyConf(layout));
    processes.push(spawnProcess(tools['swift-proxy-server']!, [proxyConfPath, '-v'], { logFile: join(workDir.path, 'proxy-server.log') }));

    const anyExited = (): string | undefined => processes.find((child) => child.exitStatus() !== undefined)?.describe();
    await Promise.all(
      (['account', 'container', 'object', 'proxy'] as const).map((server) =>
        pollUntil(() => answersHealthcheck(layout.ports[server]), {
          timeoutMs: READY_TIMEOUT_MS,
          what: `swift ${server} server to answer /healthcheck on port ${layout.ports[server]}`,
          abortReason: anyExited,
        }),
      ),
    );

    const endpoint = `http://127.0.0.1:${layout.ports.proxy}`;
    const accessKeyId = `${ACCOUNT}:${USER}`;
    const client = (): S3Client =>
      createS3Client({ endpoint, region: REGION, forcePathStyle: true, accessKeyId, secretAccessKey: layout.secret });

    // The whole chain (s3api signature check, tempauth, memcached, account autocreate) answers.
    const probe = client();
    try {
      await pollUntil(
        async () => {
          await probe.send(new ListBucketsCommand({}));
          return true;
        },
        { timeoutMs: READY_TIMEOUT_MS, what: `the S3 API at ${endpoint} to list buckets`, abortReason: anyExited },
      );
    } finally {
      probe.destroy();
    }

    const segmentCount = async (bucket: string): Promise<number> => {
      // tempauth's v1 login: the same account, user and key that s3api accepts.
      const login = await request(`${endpoint}/auth/v1.0`, { headers: { 'x-auth-user': accessKeyId, 'x-auth-key': layout.secret } });
      await login.body.dump();
      const token = login.headers['x-auth-token'];
      const storageUrl = login.headers['x-storage-url'];
      if (login.statusCode !== 200 || typeof token !== 'string' || typeof storageUrl !== 'string') {
        throw new Error(`tempauth login at ${endpoint}/auth/v1.0 answered ${login.statusCode}`);
      }
      const listing = await request(`${storageUrl}/${encodeURIComponent(`${bucket}+segments`)}?format=json`, { headers: { 'x-auth-token': token } });
      if (listing.statusCode === 404) {
        await listing.body.dump();
        return 0;
      }
      if (listing.statusCode !== 200) throw new Error(`listing ${bucket}+segments answered ${listing.statusCode}: ${await listing.body.text()}`);
      return ((await listing.body.json()) as unknown[]).length;
    };

    let bucketCount = 0;
    const startMs = Date.now() - startedAt;
    return {
      endpoint,
      region: REGION,
      accessKeyId,
      secretAccessKey: layout.secret,
      startMs,
      processes,
      client,
      createBucket: async (name?: string): Promise<string> => {
        bucketCount += 1;
        const bucket = name ?? `longshore-test-${bucketCount}-${randomBytes(4).toString('hex')}`;
        const s3 = client();
        try {
          await s3.send(new CreateBucketCommand({ Bucket: bucket }));
        } finally {
          s3.destroy();
        }
        return bucket;
      },
      segmentCount,
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

let shared: Promise<SwiftHandle> | undefined;

/**
 * One Swift for the whole test process, started on first use (suites that run unchanged on
 * the S3 driver, see longshore.ts); disposeSharedSwift() stops it. Its running children keep
 * the test process alive, so a suite must call it in an after() hook.
 */
export function sharedSwift(): Promise<SwiftHandle> {
  shared ??= startSwift();
  return shared;
}

/** Stops the shared Swift if it was started (a suite's last after() hook). */
export async function disposeSharedSwift(): Promise<void> {
  const running = shared;
  shared = undefined;
  await (await running?.catch(() => undefined))?.dispose();
}

/** The storage section that puts a Longshore on `swift`, in a bucket of its own. */
export async function s3StorageConfig(swift: SwiftHandle, bucket?: string): Promise<Record<string, unknown>> {
  return {
    driver: 's3',
    s3: {
      endpoint: swift.endpoint,
      region: swift.region,
      bucket: bucket ?? (await swift.createBucket()),
      accessKeyId: swift.accessKeyId,
      secretAccessKey: swift.secretAccessKey,
    },
  };
}

/**
 * Objects under `blobs/` and `meta/` across every bucket of the shared Swift: proof that a
 * suite run with TEST_STORAGE_DRIVER=s3 really stored in S3.
 */
export async function sharedSwiftObjectCounts(): Promise<{ buckets: number; blobs: number; records: number }> {
  if (shared === undefined) return { buckets: 0, blobs: 0, records: 0 };
  const swift = await shared;
  const client = swift.client();
  try {
    const counts = { buckets: 0, blobs: 0, records: 0 };
    for (const bucket of (await client.send(new ListBucketsCommand({}))).Buckets ?? []) {
      counts.buckets += 1;
      for (const [prefix, field] of [
        ['blobs/', 'blobs'],
        ['meta/', 'records'],
      ] as const) {
        const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket.Name, Prefix: prefix }));
        counts[field] += listed.KeyCount ?? 0;
      }
    }
    return counts;
  } finally {
    client.destroy();
  }
}
