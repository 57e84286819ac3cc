// N Longshore replicas as one mirror, the way an operator runs them: one S3 bucket on a real
// Swift, one redis-server, one auth.secret, each replica its own process on its own fixed
// loopback port with cluster.advertiseUrl pointing at it (fixed, so a replica restarted after
// kill -9 comes back where its peers expect it), plus a round-robin client like a plain load
// balancer in front of them.
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { freePort } from './ports.js';
import { startLongshore, type LongshoreHandle, type LongshoreOptions } from './longshore.js';
import { startRedis, type RedisHandle } from './redis.js';
import { s3StorageConfig, sharedSwift, type SwiftHandle } from './swift.js';

export interface ClusterOptions {
  /** Number of replicas (default 3). */
  replicas?: number;
  /**
   * Config shared by every replica (upstreams, private, auth.htpasswd, ...). The harness sets
   * listen, storage (driver s3 on the shared bucket, unless storage.driver is given), cluster
   * and auth.secret; keys given here under storage/cluster/auth are merged in.
   */
  config?: Record<string, unknown>;
  /** Swift to put the bucket on (default: the process-wide sharedSwift(); the caller disposes it). */
  swift?: SwiftHandle;
  /** Redis to share (default: a new redis-server stopped by dispose()). */
  redis?: RedisHandle;
  /** Passed to each startLongshore (env, nodeArgs, startTimeoutMs). */
  longshore?: Omit<LongshoreOptions, 'dataDir'>;
}

export interface ClusterHandle {
  /** The replicas, in start order; each one's url equals its advertiseUrl. */
  readonly replicas: readonly LongshoreHandle[];
  readonly redis: RedisHandle;
  /** The bucket all replicas share. */
  readonly bucket: string;
  /** The auth.secret all replicas share. */
  readonly secret: string;
  /**
   * The base URL of the next replica in turn (round-robin over the replicas that are running),
   * like a load balancer: `fetch(`${cluster.next()}/v2/...`)`.
   */
  next(): string;
  /**
   * Stops replica `index` if it runs (SIGTERM) and starts it again at its own address. With
   * `emptyScratch` it comes back on an empty storage.path, as on a new machine: on S3 that
   * directory holds scratch files only, so everything it serves must come from the bucket.
   */
  restart(index: number, options?: { emptyScratch?: boolean }): Promise<void>;
  /** dispose() of every replica, then the Redis the harness started. Idempotent. */
  dispose(): Promise<void>;
}

function objectAt(config: Record<string, unknown>, key: string): Record<string, unknown> {
  const value = config[key];
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

export async function startCluster(opts: ClusterOptions = {}): Promise<ClusterHandle> {
  const count = opts.replicas ?? 3;
  const base = opts.config ?? {};
  const ownRedis = opts.redis === undefined;
  const redis = opts.redis ?? (await startRedis());
  const replicas: LongshoreHandle[] = [];
  let disposed = false;
  const dispose = async (): Promise<void> => {
    if (disposed) return;
    disposed = true;
    await Promise.all(replicas.map((replica) => replica.dispose()));
    if (ownRedis) await redis.dispose();
  };
  try {
    const givenStorage = objectAt(base, 'storage');
    const storage = givenStorage.driver === undefined ? { ...(await s3StorageConfig(opts.swift ?? (await sharedSwift()))), ...givenStorage } : givenStorage;
    const bucketName = objectAt(storage, 's3').bucket;
    const bucket = typeof bucketName === 'string' ? bucketName : '';
    const secret = randomBytes(24).toString('hex');
    // Started one after the other: several AWS SDK loads at once on a loaded 2-core box make
    // every replica slow to start; one at a time each comes up in its own start timeout.
    for (let i = 0; i < count; i += 1) {
      const port = await freePort();
      const advertiseUrl = `http://127.0.0.1:${port}`;
      const config = {
        ...base,
        listen: `127.0.0.1:${port}`,
        storage,
        cluster: { ...objectAt(base, 'cluster'), redis: redis.url, advertiseUrl },
        auth: { secret, ...objectAt(base, 'auth') },
      };
      replicas.push(await startLongshore(config, opts.longshore));
    }
    let turn = 0;
    return {
      replicas,
      redis,
      bucket,
      secret,
      next: () => {
        const running = replicas.filter((replica) => replica.process !== undefined);
        if (running.length === 0) throw new Error('cluster: no replica is running');
        const replica = running[turn % running.length] as LongshoreHandle;
        turn += 1;
        return replica.url;
      },
      restart: async (index, options = {}) => {
        const replica = replicas[index];
        if (replica === undefined) throw new Error(`cluster: no replica ${index}`);
        await replica.stop();
        if (options.emptyScratch === true) {
          await rm(replica.dataDir, { recursive: true, force: true });
          await mkdir(replica.dataDir, { recursive: true });
        }
        await replica.start();
      },
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}
