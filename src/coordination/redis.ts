// The coordinator of several replicas sharing one storage: locks, leases and blob events in
// Redis (cluster.redis). Redis only coordinates: nothing here is the only copy of anything.
//
// - Leases follow zot's redis_lock.go: SET key token NX PX ttl takes it, a Lua compare-and-
//   pexpire renews it and a Lua compare-and-delete releases it, so a lease that lapsed and was
//   taken over is never renewed or released by its old holder.
// - Locks are leases held for the length of the work (renewed every third of their ttl), taken
//   after an in-process lock on the same key: waiters of one replica queue in order without
//   polling Redis, and only one per replica at a time retries SET NX, for a bounded wait.
// - Events go to every subscriber of this process at once and, through a Redis channel, to the
//   other replicas (a subscriber needs a connection of its own); a replica ignores its own.
// - Circuits: an open circuit is a key that expires at its retry time (so a replica starting
//   later finds it) plus a message on a channel (so running replicas act on it at once).
// - Upload owners: a key per session naming its holder's advertiseUrl, expiring with the
//   session's idle timeout and renewed by each request the holder serves.
// - With Redis unreachable every port works uncoordinated (see redis-connection.ts).
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { InProcessBlobEvents, InProcessLeases, InProcessLocks, InProcessWindowCounters, Listeners, type ListenerErrorHandler } from './in-process.js';
import type { BlobEvent, BlobEvents, CircuitChange, Coordinator, KeyedLocks, Lease, Leases, SharedCircuits, UploadOwners, WindowCount, WindowCounters } from './ports.js';
import { CoordinationError, RedisConnection, type RedisConnectionOptions } from './redis-connection.js';

const RENEW_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
// KEYS: counter. ARGV: change (1 or -1), window ms. +1 on no key opens the window (the key
// expires with it); -1 never opens one, nor goes below 0. Returns {count, ms left} or {-1, 0}.
const ADD_SCRIPT = `
local change = tonumber(ARGV[1])
if change < 0 and redis.call('exists', KEYS[1]) == 0 then return {-1, 0} end
local n = redis.call('incrby', KEYS[1], change)
if n < 0 then redis.call('set', KEYS[1], 0, 'KEEPTTL') n = 0 end
if redis.call('pttl', KEYS[1]) < 0 then redis.call('pexpire', KEYS[1], ARGV[2]) end
return {n, redis.call('pttl', KEYS[1])}`;
/** Between a lease's token and its holder in the Redis value (a space: not in ids nor URLs). */
const HOLDER_SEPARATOR = ' ';
const RELEASE_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface RedisLockOptions {
  /** A lock lapses this long after its holder stopped renewing it (a crashed replica). */
  lockTtlMs?: number;
  /** How long withLock waits for a lock held elsewhere before failing with LOCK_TIMEOUT. */
  lockWaitMs?: number;
}

const DEFAULT_LOCK_TTL_MS = 10_000;
const DEFAULT_LOCK_WAIT_MS = 30_000;
const RETRY_MIN_MS = 5;
const RETRY_MAX_MS = 100;

/** Takes a lease in Redis; undefined when someone holds it. Throws when Redis is unreachable. */
async function acquireRedisLease(connection: RedisConnection, key: string, ttlMs: number, holder?: string): Promise<Lease | undefined> {
  const redisKey = connection.key(`lease:${key}`);
  // The holder rides in the token (after a separator no instance id or UUID contains), so it
  // is set, renewed and deleted atomically with the lease itself.
  const token = `${connection.instanceId}:${randomUUID()}${holder === undefined ? '' : `${HOLDER_SEPARATOR}${holder}`}`;
  const taken = await connection.client.set(redisKey, token, { condition: 'NX', expiration: { type: 'PX', value: ttlMs } });
  if (taken !== 'OK') return undefined;
  let released = false;
  return {
    key,
    renew: async () => {
      if (released) return false;
      const renewed = await connection.client.eval(RENEW_SCRIPT, { keys: [redisKey], arguments: [token, String(ttlMs)] });
      return renewed === 1;
    },
    release: async () => {
      if (released) return;
      await connection.client.eval(RELEASE_SCRIPT, { keys: [redisKey], arguments: [token] });
      released = true;
    },
  };
}

export class RedisLeases implements Leases {
  /** Used while Redis is unreachable: exclusive within this replica only. */
  private readonly fallback = new InProcessLeases();

  constructor(private readonly connection: RedisConnection) {}

  async tryAcquire(key: string, ttlMs: number, holder?: string): Promise<Lease | undefined> {
    try {
      return await acquireRedisLease(this.connection, key, ttlMs, holder);
    } catch (error) {
      this.connection.uncoordinated('leases', error, { lease: key });
      return this.fallback.tryAcquire(key, ttlMs, holder);
    }
  }

  async holder(key: string): Promise<string | undefined> {
    try {
      const token = await this.connection.client.get(this.connection.key(`lease:${key}`));
      const at = token?.indexOf(HOLDER_SEPARATOR) ?? -1;
      return token === null || token === undefined || at === -1 ? undefined : token.slice(at + HOLDER_SEPARATOR.length);
    } catch (error) {
      this.connection.uncoordinated('leases', error, { lease: key, step: 'holder' });
      return this.fallback.holder(key);
    }
  }
}

export class RedisLocks implements KeyedLocks {
  private readonly local = new InProcessLocks();
  private readonly ttlMs: number;
  private readonly waitMs: number;

  constructor(
    private readonly connection: RedisConnection,
    options: RedisLockOptions = {},
  ) {
    this.ttlMs = options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS;
    this.waitMs = options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS;
  }

  withLock<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.local.withLock(key, async () => {
      const lease = await this.acquire(key);
      const renewal = lease ? setInterval(() => void this.renew(lease), this.ttlMs / 3) : undefined;
      try {
        return await work();
      } finally {
        clearInterval(renewal);
        await lease?.release().catch((error: unknown) => this.connection.uncoordinated('locks', error, { lock: key, step: 'release' }));
      }
    });
  }

  /** The lock's lease; undefined when Redis is unreachable (the work runs under the local lock only). */
  private async acquire(key: string): Promise<Lease | undefined> {
    const deadline = Date.now() + this.waitMs;
    let delay = RETRY_MIN_MS;
    for (;;) {
      let lease: Lease | undefined;
      try {
        lease = await acquireRedisLease(this.connection, `lock:${key}`, this.ttlMs);
      } catch (error) {
        this.connection.uncoordinated('locks', error, { lock: key });
        return undefined;
      }
      if (lease) return lease;
      if (Date.now() >= deadline) {
        throw new CoordinationError('LOCK_TIMEOUT', `lock "${key}" still held by another replica after ${this.waitMs} ms`, { lock: key, waitedMs: this.waitMs });
      }
      // Jittered backoff: replicas waiting for one key do not retry in step.
      await sleep(delay / 2 + Math.random() * (delay / 2));
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  private async renew(lease: Lease): Promise<void> {
    try {
      if (!(await lease.renew())) this.connection.log.error({ lock: lease.key }, 'a lock lapsed while its work was running (the work outlived its ttl); another replica may hold it now');
    } catch (error) {
      this.connection.uncoordinated('locks', error, { lock: lease.key, step: 'renew' });
    }
  }
}

const blobEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('committed'), digest: z.string(), size: z.number(), source: z.string() }),
  z.strictObject({ type: z.literal('removed'), digest: z.string(), reason: z.enum(['evicted', 'collected']) }),
]);

export class RedisBlobEvents implements BlobEvents {
  private readonly local: InProcessBlobEvents;
  private readonly channel: string;

  constructor(
    private readonly connection: RedisConnection,
    onListenerError: ListenerErrorHandler,
  ) {
    this.local = new InProcessBlobEvents(onListenerError);
    this.channel = connection.key('events');
  }

  /** Subscribes to the other replicas' events (the client resubscribes after a reconnection). */
  async start(): Promise<void> {
    await this.connection.subscribeOthers(this.channel, 'events', blobEventSchema, (event) => this.local.publish(event));
  }

  publish(event: BlobEvent): void {
    this.local.publish(event);
    void this.connection.announce(this.channel, 'events', event, { event });
  }

  subscribe(listener: (event: BlobEvent) => void): () => void {
    return this.local.subscribe(listener);
  }

}

const circuitChangeSchema = z.strictObject({ circuit: z.string(), openUntil: z.number().optional() });

export class RedisCircuits implements SharedCircuits {
  private readonly listeners: Listeners<CircuitChange>;
  private readonly channel: string;

  constructor(
    private readonly connection: RedisConnection,
    onListenerError?: ListenerErrorHandler,
  ) {
    this.listeners = new Listeners(onListenerError);
    this.channel = connection.key('circuits');
  }

  async start(): Promise<void> {
    await this.connection.subscribeOthers(this.channel, 'circuits', circuitChangeSchema, (change) => {
      this.listeners.deliver({ circuit: change.circuit, openUntil: change.openUntil });
    });
  }

  publish(change: CircuitChange): void {
    const { client } = this.connection;
    const key = this.redisKey(change.circuit);
    const remainingMs = change.openUntil === undefined ? 0 : Math.ceil(change.openUntil - Date.now());
    const stored = remainingMs > 0 ? client.set(key, String(change.openUntil), { expiration: { type: 'PX', value: remainingMs } }) : client.del(key);
    stored.catch((error: unknown) => this.connection.uncoordinated('circuits', error, { ...change }));
    void this.connection.announce(this.channel, 'circuits', change, { ...change });
  }

  subscribe(listener: (change: CircuitChange) => void): () => void {
    return this.listeners.add(listener);
  }

  async openUntil(circuit: string): Promise<number | undefined> {
    try {
      const until = await this.connection.client.get(this.redisKey(circuit));
      return until === null ? undefined : Number(until);
    } catch (error) {
      this.connection.uncoordinated('circuits', error, { circuit });
      return undefined;
    }
  }

  private redisKey(circuit: string): string {
    return this.connection.key(`circuit:${circuit}`);
  }

}

/** Counters as Redis keys that expire with their window: nothing to clean up, memory bounded by time. */
export class RedisWindowCounters implements WindowCounters {
  /** Used while Redis is unreachable: limits hold per replica only. */
  private readonly fallback = new InProcessWindowCounters();

  constructor(private readonly connection: RedisConnection) {}

  async add(key: string, change: 1 | -1, windowMs: number): Promise<WindowCount | undefined> {
    try {
      const [count, remainingMs] = (await this.connection.client.eval(ADD_SCRIPT, { keys: [this.redisKey(key)], arguments: [String(change), String(windowMs)] })) as [number, number];
      return count < 0 ? undefined : { count, remainingMs };
    } catch (error) {
      this.connection.uncoordinated('counters', error, { counter: key });
      return this.fallback.add(key, change, windowMs);
    }
  }

  async peek(key: string): Promise<WindowCount | undefined> {
    try {
      const redisKey = this.redisKey(key);
      const [count, remainingMs] = await Promise.all([this.connection.client.get(redisKey), this.connection.client.pTTL(redisKey)]);
      return count === null || remainingMs <= 0 ? undefined : { count: Number(count), remainingMs };
    } catch (error) {
      this.connection.uncoordinated('counters', error, { counter: key });
      return this.fallback.peek(key);
    }
  }

  private redisKey(key: string): string {
    return this.connection.key(`counter:${key}`);
  }
}

export class RedisUploadOwners implements UploadOwners {
  constructor(
    private readonly connection: RedisConnection,
    private readonly advertiseUrl: string,
    private readonly idleTimeoutMs: number,
  ) {}

  async claim(id: string): Promise<void> {
    try {
      await this.connection.client.set(this.redisKey(id), this.advertiseUrl, { expiration: { type: 'PX', value: this.idleTimeoutMs } });
    } catch (error) {
      this.connection.uncoordinated('uploads', error, { upload: id });
    }
  }

  async ownerElsewhere(id: string): Promise<string | undefined> {
    try {
      const owner = await this.connection.client.get(this.redisKey(id));
      return owner === null || owner === this.advertiseUrl ? undefined : owner;
    } catch (error) {
      // Without Redis: answered here, where the session is found or reported unknown.
      this.connection.uncoordinated('uploads', error, { upload: id });
      return undefined;
    }
  }

  private redisKey(id: string): string {
    return this.connection.key(`upload:${id}`);
  }
}

export interface RedisCoordinator extends Coordinator {
  readonly connection: RedisConnection;
}

export interface RedisCoordinatorOptions extends RedisConnectionOptions, RedisLockOptions {
  onListenerError?: ListenerErrorHandler;
  /** cluster.advertiseUrl and storage.uploadTimeout: with both, upload sessions are found across replicas. */
  uploads?: { advertiseUrl: string; idleTimeoutMs: number };
}

export async function openRedisCoordinator(options: RedisCoordinatorOptions): Promise<RedisCoordinator> {
  const connection = await RedisConnection.open(options);
  const events = new RedisBlobEvents(connection, options.onListenerError ?? (() => undefined));
  const circuits = new RedisCircuits(connection, options.onListenerError);
  await Promise.all([events.start(), circuits.start()]);
  return {
    connection,
    locks: new RedisLocks(connection, options),
    leases: new RedisLeases(connection),
    events,
    counters: new RedisWindowCounters(connection),
    circuits,
    uploadOwners: options.uploads && new RedisUploadOwners(connection, options.uploads.advertiseUrl, options.uploads.idleTimeoutMs),
    status: () => connection.status(),
    close: async () => {
      await connection.close();
    },
  };
}
