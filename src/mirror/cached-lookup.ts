// The one cached-lookup primitive of the pull-through engine: v2 tags, v1 tags and image
// lists, v1 image records. A cached answer within its TTL is served with no upstream request;
// past it, one caller per key asks the upstream (the others share that answer); offline, or
// when the upstream fails transiently, the last known answer is served stale.
//
// With locks shared by several replicas (cluster.redis), "one caller per key" holds cluster-
// wide: the refresh runs under the key's lock and first reads the storage again, so replicas
// past the TTL together make one upstream request (one tag HEAD per tagTtl), and a replica
// whose memory is older than another's refresh takes that answer instead of asking again.
import type { Logger } from 'pino';
import type { KeyedLocks } from '../coordination/ports.js';
import { UpstreamError } from '../upstream/errors.js';
import type { CacheOutcome } from './outcome.js';
import { SingleFlight } from './single-flight.js';

export interface CachedEntry<T> {
  value: T;
  /** ms since epoch of the last upstream answer (0: unknown; immutable records use an infinite TTL). */
  fetchedAt: number;
}

export interface Lookup<T> {
  /** Single-flight key: unique across everything this primitive serves. */
  key: string;
  ttlMs: number;
  /** The last known answer, if any. */
  cached(): Promise<CachedEntry<T> | undefined>;
  /**
   * The last known answer as the storage has it now, past any memory of this replica's (which
   * another replica's refresh does not reach). Default: `cached`.
   */
  latest?(): Promise<CachedEntry<T> | undefined>;
  /**
   * Asks the upstream (given the last known answer, e.g. to revalidate with a HEAD) and stores
   * what it learns. undefined: the upstream says there is no such thing.
   */
  refresh(previous: CachedEntry<T> | undefined): Promise<T | undefined>;
  /** Whether a refreshed answer is the one already known (outcome "hit": revalidated). */
  same?(known: T, fresh: T): boolean;
  /** For the stale-serving log line: what is looked up, and what the stale answer is. */
  context?: Record<string, unknown>;
  describe?(value: T): Record<string, unknown>;
}

export interface LookupResult<T> {
  value: T;
  outcome: CacheOutcome;
}

export interface CachedLookupSettings {
  offline: boolean;
  now: () => number;
  /** The coordinator's locks: refreshes of one key run one at a time across the replicas. */
  locks?: KeyedLocks;
}

interface Refreshed<T> {
  value: T | undefined;
  /** Another replica refreshed it while this one waited for the lock. */
  byAnotherReplica: boolean;
}

export class CachedLookup {
  private readonly flights = new SingleFlight<Refreshed<unknown>>();

  constructor(
    private readonly settings: CachedLookupSettings,
    private readonly log: Logger,
  ) {}

  /**
   * How a known answer fetched at `fetchedAt` may be served without asking the upstream:
   * 'hit' within its TTL, 'stale' past it when offline; undefined when the upstream must be
   * asked. Synchronous, so a caller holding the answer in memory can serve it with no
   * Lookup object, closure or await (the manifest-by-tag hot path); get() uses the same rule.
   */
  servedFromCache(fetchedAt: number, ttlMs: number): 'hit' | 'stale' | undefined {
    if (this.settings.now() - fetchedAt < ttlMs) return 'hit';
    return this.settings.offline ? 'stale' : undefined;
  }

  /** undefined: not known here and (offline, or the upstream says) nowhere else. */
  async get<T>(lookup: Lookup<T>): Promise<LookupResult<T> | undefined> {
    const entry = await lookup.cached();
    if (entry) {
      const outcome = this.servedFromCache(entry.fetchedAt, lookup.ttlMs);
      if (outcome) return { value: entry.value, outcome };
    }
    if (this.settings.offline) return undefined;
    const { promise, shared } = this.flights.run(lookup.key, () => this.refresh(lookup, entry));
    let refreshed: Refreshed<T>;
    try {
      refreshed = (await promise) as Refreshed<T>;
    } catch (error) {
      if (entry && error instanceof UpstreamError && error.isTransient) {
        this.log.warn({ ...lookup.context, ...lookup.describe?.(entry.value), err: error.message }, 'upstream failed; serving stale');
        return { value: entry.value, outcome: 'stale' };
      }
      throw error;
    }
    const { value, byAnotherReplica } = refreshed;
    if (value === undefined) return undefined;
    if (shared) return { value, outcome: 'coalesced' };
    if (byAnotherReplica) return { value, outcome: 'hit' };
    return { value, outcome: entry && lookup.same?.(entry.value, value) ? 'hit' : 'miss' };
  }

  private async refresh<T>(lookup: Lookup<T>, entry: CachedEntry<T> | undefined): Promise<Refreshed<T>> {
    const { locks } = this.settings;
    if (!locks) return { value: await lookup.refresh(entry), byAnotherReplica: false };
    let locked = false;
    try {
      return await locks.withLock(`lookup:${lookup.key}`, async () => {
        locked = true;
        const latest = await (lookup.latest ?? lookup.cached).call(lookup);
        if (latest && this.settings.now() - latest.fetchedAt < lookup.ttlMs) return { value: latest.value, byAnotherReplica: true };
        return { value: await lookup.refresh(latest ?? entry), byAnotherReplica: false };
      });
    } catch (error) {
      if (locked) throw error;
      // The lock was not had (held elsewhere past the wait: a hung upstream): ask for ourselves.
      this.log.warn({ ...lookup.context, err: (error as Error).message }, 'refresh lock not had; refreshing uncoordinated');
      return { value: await lookup.refresh(entry), byAnotherReplica: false };
    }
  }
}
