// The one cached-lookup primitive of the pull-through engine: v2 tags, v1 tags and image
// lists, v1 image records. A cached answer within its TTL is served with no upstream request;
// past it, one caller per key asks the upstream (the others share that answer); offline, or
// when the upstream fails transiently, the last known answer is served stale.
import type { Logger } from 'pino';
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

export class CachedLookup {
  private readonly flights = new SingleFlight<unknown>();

  constructor(
    private readonly settings: { offline: boolean; now: () => number },
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
    const { promise, shared } = this.flights.run(lookup.key, () => lookup.refresh(entry));
    let value: T | undefined;
    try {
      value = (await promise) as T | undefined;
    } catch (error) {
      if (entry && error instanceof UpstreamError && error.isTransient) {
        this.log.warn({ ...lookup.context, ...lookup.describe?.(entry.value), err: error.message }, 'upstream failed; serving stale');
        return { value: entry.value, outcome: 'stale' };
      }
      throw error;
    }
    if (value === undefined) return undefined;
    if (shared) return { value, outcome: 'coalesced' };
    return { value, outcome: entry && lookup.same?.(entry.value, value) ? 'hit' : 'miss' };
  }
}
