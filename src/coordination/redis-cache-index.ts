// The size bound on mirrored content, shared by the replicas: a Redis sorted set of cached
// blobs scored by last access (the LRU), a hash of their sizes and a byte counter. Evictions
// run in one replica at a time, under a lease. Access times are also written to the metadata
// store (access-times.ts), so a flushed or replaced Redis is rebuilt from the storage with its
// order: a "loaded" key says the set is complete, and the first replica that finds it missing
// rebuilds it under a lease. Private blobs are never in the set and never evicted: the private
// index is checked, and before a delete the metadata store's mark as well.
import { LRUCache } from 'lru-cache';
import { parseDigest } from '../protocol/digest.js';
import { AccessTimeRecords } from './access-times.js';
import { whileHoldingLease } from './held-lease.js';
import { RECORD_INTERVAL_MS, type CacheIndexOptions } from './cache-index.js';
import type { CacheIndex, CacheStats, Leases } from './ports.js';
import { hasPrivateMark } from './private-content.js';
import type { RedisConnection } from './redis-connection.js';

// Scores order by access time, then by arrival within one millisecond (a sequence number in
// the low bits: ms * 1024 stays an exact double for millennia), so blobs used in the same
// millisecond leave in the order they came, as in the in-process LRU. Formatted with %.0f:
// Lua would print a plain number with 14 digits and lose the low bits.
const SCORE = `local score = string.format('%.0f', tonumber(ARGV[#ARGV]) * 1024 + redis.call('incr', KEYS[#KEYS]) % 1024)`;
// KEYS: lru, sizes, bytes, loaded, seq. ARGV: digest, size, access time. GT: a concurrent
// rebuild never moves a blob back in time. Returns {loaded, bytes}.
const ADD_SCRIPT = `${SCORE}
if redis.call('hsetnx', KEYS[2], ARGV[1], ARGV[2]) == 1 then redis.call('incrby', KEYS[3], ARGV[2]) end
redis.call('zadd', KEYS[1], 'GT', score, ARGV[1])
return {redis.call('exists', KEYS[4]), tonumber(redis.call('get', KEYS[3]) or '0')}`;
// KEYS: lru, seq. ARGV: digest, access time. 1 when the blob is in the index.
const TOUCH_SCRIPT = `if redis.call('zscore', KEYS[1], ARGV[1]) then ${SCORE} redis.call('zadd', KEYS[1], 'GT', score, ARGV[1]) return 1 end return 0`;
// KEYS: lru, sizes, bytes. ARGV: digest. Its counted size (-1: it was not counted).
const FORGET_SCRIPT = `
redis.call('zrem', KEYS[1], ARGV[1])
local size = redis.call('hget', KEYS[2], ARGV[1])
if size then redis.call('hdel', KEYS[2], ARGV[1]) redis.call('decrby', KEYS[3], size) return tonumber(size) end
return -1`;

const EVICTION_LEASE_TTL_MS = 60_000;
const REBUILD_LEASE_TTL_MS = 5 * 60_000;
/** Evictions per pass; a pass that stops there schedules the next. */
const EVICTION_BATCH = 1000;

export interface RedisCacheIndexOptions extends CacheIndexOptions {
  connection: RedisConnection;
  /** Evictions and rebuilds run in one replica at a time under these. */
  leases: Leases;
}

export class RedisCacheIndex implements CacheIndex {
  private readonly keys: { lru: string; sizes: string; bytes: string; evictions: string; loaded: string; seq: string };
  private readonly accessTimes: AccessTimeRecords;
  /** When this replica last recorded each blob's access: at most one write a second per blob. */
  private readonly recordedAt = new LRUCache<string, number>({ max: 10_000 });
  private readonly unsubscribe: () => void;
  private readonly stopOnReady: () => void;
  private readonly now: () => number;
  private evicting: Promise<void> | undefined;
  private evictAgain = false;
  private rebuilding: Promise<void> | undefined;
  private lastStats: Omit<CacheStats, 'private'> = { mirrored: { bytes: 0, objects: 0 }, evictions: 0 };
  /** Notifications still being written to Redis (they are fire-and-forget on the port). */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly options: RedisCacheIndexOptions) {
    const { connection } = options;
    this.keys = {
      lru: connection.key('cache:lru'),
      sizes: connection.key('cache:sizes'),
      bytes: connection.key('cache:bytes'),
      evictions: connection.key('cache:evictions'),
      loaded: connection.key('cache:loaded'),
      seq: connection.key('cache:seq'),
    };
    this.now = options.now ?? Date.now;
    this.accessTimes = new AccessTimeRecords(options.metadata, options.log, options.flushIntervalMs);
    // Every replica hears every commit; adding is idempotent, so each may record it.
    this.unsubscribe = options.events.subscribe((event) => {
      if (event.type === 'committed') this.added(event.digest, event.size);
      else if (event.reason !== 'evicted') this.forget(event.digest);
    });
    this.stopOnReady = connection.onReady(() => void this.ensureLoaded());
  }

  async rebuild(): Promise<void> {
    await this.ensureLoaded();
  }

  added(digest: string, size: number): void {
    this.track(this.add(digest, size));
  }

  touched(digest: string): void {
    const now = this.now();
    if (now - (this.recordedAt.get(digest) ?? 0) < RECORD_INTERVAL_MS) return;
    this.recordedAt.set(digest, now);
    this.track(this.options.connection.client.eval(TOUCH_SCRIPT, { keys: [this.keys.lru, this.keys.seq], arguments: [digest, String(now)] }).then(
      (inIndex) => {
        if (inIndex === 1) this.accessTimes.record(digest, now);
      },
      (error: unknown) => {
        this.options.connection.uncoordinated('cacheIndex', error, { digest, step: 'touch' });
        this.accessTimes.record(digest, now); // kept for the rebuild once Redis is back
      },
    ));
  }

  forget(digest: string): void {
    this.recordedAt.delete(digest);
    this.accessTimes.record(digest, null);
    this.track(
      this.options.connection.client
        .eval(FORGET_SCRIPT, { keys: [this.keys.lru, this.keys.sizes, this.keys.bytes], arguments: [digest] })
        .catch((error: unknown) => this.options.connection.uncoordinated('cacheIndex', error, { digest, step: 'forget' })),
    );
  }

  /** Resolves once the notifications sent so far, and the evictions they started, have taken effect. */
  async settled(): Promise<void> {
    while (this.pending.size > 0 || this.evicting) {
      await Promise.all([...this.pending, this.evicting]);
    }
  }

  async leastRecentFirst(): Promise<string[]> {
    return this.options.connection.client.zRange(this.keys.lru, 0, -1);
  }

  async stats(): Promise<CacheStats> {
    const { client } = this.options.connection;
    try {
      const [bytes, objects, evictions] = await Promise.all([client.get(this.keys.bytes), client.hLen(this.keys.sizes), client.get(this.keys.evictions)]);
      this.lastStats = { mirrored: { bytes: Number(bytes ?? 0), objects }, evictions: Number(evictions ?? 0) };
    } catch (error) {
      this.options.connection.uncoordinated('cacheIndex', error, { step: 'stats' });
    }
    return { ...this.lastStats, private: await this.options.privateContent.stats() };
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.stopOnReady();
    await this.evicting?.catch(() => undefined);
    await this.accessTimes.close();
  }

  /** Writes pending access times to the metadata store (tests; close does it too). */
  flush(): Promise<void> {
    return this.accessTimes.flush();
  }

  private async add(digest: string, size: number): Promise<void> {
    const { connection, log, maxBytes } = this.options;
    try {
      if (await this.options.privateContent.has(digest)) return;
      const now = this.now();
      this.accessTimes.record(digest, now);
      if (maxBytes !== undefined && size > maxBytes) {
        // Larger than the whole bound: it was served, but it cannot stay.
        log.warn({ digest, size, maxBytes }, 'blob larger than storage.cache.maxBytes; not kept');
        await this.evict(digest, 'larger than storage.cache.maxBytes on its own', size);
        return;
      }
      const reply = (await connection.client.eval(ADD_SCRIPT, {
        keys: [this.keys.lru, this.keys.sizes, this.keys.bytes, this.keys.loaded, this.keys.seq],
        arguments: [digest, String(size), String(now)],
      })) as [number, number];
      const [loaded, bytes] = reply;
      if (loaded === 0) void this.ensureLoaded();
      if (maxBytes !== undefined && bytes > maxBytes) this.scheduleEviction();
    } catch (error) {
      connection.uncoordinated('cacheIndex', error, { digest, step: 'add' });
    }
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Runs eviction passes until the bound holds; one pass at a time in this replica. */
  private scheduleEviction(): void {
    if (this.evicting) {
      this.evictAgain = true;
      return;
    }
    this.evicting = this.evictionPass().finally(() => {
      this.evicting = undefined;
      if (this.evictAgain) {
        this.evictAgain = false;
        this.scheduleEviction();
      }
    });
  }

  /** Evicts least recently used blobs while the bound is exceeded, under the cluster-wide lease. */
  private async evictionPass(): Promise<void> {
    const { connection, leases, maxBytes, log } = this.options;
    if (maxBytes === undefined) return;
    try {
      // Without the lease another replica is evicting, and sees the same counter.
      await whileHoldingLease(leases, 'cache:evict', EVICTION_LEASE_TTL_MS, async () => {
        for (let evicted = 0; evicted < EVICTION_BATCH; evicted += 1) {
          const bytes = Number((await connection.client.get(this.keys.bytes)) ?? 0);
          if (bytes <= maxBytes) return;
          const [oldest] = await connection.client.zRange(this.keys.lru, 0, 0);
          if (oldest === undefined) return;
          await this.evict(oldest, 'least recently used; mirrored content over storage.cache.maxBytes');
        }
        this.evictAgain = true; // more to do: another pass, letting other work in between
      });
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'cache eviction pass failed; the next addition retries');
    }
  }

  private async evict(digest: string, why: string, uncountedSize?: number): Promise<void> {
    const { connection, blobs, metadata, privateContent, events, log, maxBytes } = this.options;
    const uncount = () => connection.client.eval(FORGET_SCRIPT, { keys: [this.keys.lru, this.keys.sizes, this.keys.bytes], arguments: [digest] });
    // Pinned since it was mirrored (pushed into a private repository): it stays, uncounted.
    // The metadata store's mark is checked too: it is the truth, whatever Redis lost.
    if ((await privateContent.has(digest)) || (await hasPrivateMark(metadata, digest))) {
      await uncount();
      return;
    }
    try {
      await blobs.delete(parseDigest(digest));
    } catch (error) {
      log.error({ digest, err: error }, 'could not delete evicted blob');
      return;
    }
    const counted = (await uncount()) as number;
    await connection.client.incr(this.keys.evictions);
    log.info({ digest, size: counted >= 0 ? counted : uncountedSize, reason: why, maxBytes }, 'evicted');
    this.recordedAt.delete(digest);
    this.accessTimes.record(digest, null);
    events.publish({ type: 'removed', digest, reason: 'evicted' });
  }

  private ensureLoaded(): Promise<void> {
    this.rebuilding ??= this.rebuildFromStorage().finally(() => {
      this.rebuilding = undefined;
    });
    return this.rebuilding;
  }

  /** Fills the shared index from the storage unless it is complete already. */
  private async rebuildFromStorage(): Promise<void> {
    const { connection, blobs, privateContent, log } = this.options;
    try {
      if ((await connection.client.exists(this.keys.loaded)) === 1) {
        this.scheduleEviction();
        return;
      }
      await this.underRebuildLease(async () => {
        const accessed = await this.accessTimes.readAll();
        let count = 0;
        for await (const blob of blobs.list()) {
          if (await privateContent.has(blob.digest)) continue;
          await this.addScanned(blob, accessed);
          count += 1;
        }
        await connection.client.set(this.keys.loaded, String(this.now()));
        log.info({ blobs: count }, 'cache index rebuilt in Redis from the storage');
      });
    } catch (error) {
      connection.uncoordinated('cacheIndex', error, { step: 'rebuild' });
    }
  }

  /** After gc or import beside the replicas: one of them brings the shared set in line with the storage. */
  async rescan(): Promise<void> {
    const { connection, blobs, privateContent } = this.options;
    try {
      await this.underRebuildLease(async () => {
        const known = new Set(await connection.client.zRange(this.keys.lru, 0, -1));
        const accessed = await this.accessTimes.readAll();
        const present = new Set<string>();
        for await (const blob of blobs.list()) {
          if (await privateContent.has(blob.digest)) continue;
          present.add(blob.digest);
          if (!known.has(blob.digest)) await this.addScanned(blob, accessed);
        }
        // Only blobs known before the walk: one committed during it stays.
        for (const digest of known) if (!present.has(digest)) this.forget(digest);
      });
    } catch (error) {
      connection.uncoordinated('cacheIndex', error, { step: 'rescan' });
    }
  }

  /** Runs `work` holding the cluster-wide rebuild lease (renewed meanwhile), then lets evictions run; nothing when another replica holds it. */
  private async underRebuildLease(work: () => Promise<void>): Promise<void> {
    // Without the lease another replica is rebuilding from the same storage.
    if (await whileHoldingLease(this.options.leases, 'cache:rebuild', REBUILD_LEASE_TTL_MS, work)) this.scheduleEviction();
  }

  private async addScanned(blob: { digest: string; size: number; storedAt: number }, accessed: Map<string, number>): Promise<void> {
    await this.options.connection.client.eval(ADD_SCRIPT, {
      keys: [this.keys.lru, this.keys.sizes, this.keys.bytes, this.keys.loaded, this.keys.seq],
      arguments: [blob.digest, String(blob.size), String(accessed.get(blob.digest) ?? blob.storedAt)],
    });
  }
}
