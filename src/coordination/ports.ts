// What replicas must agree on, behind interfaces. Each port has an in-process implementation
// here (one replica: memory, plus the metadata store where something must survive a restart);
// a shared implementation (Redis, issue 17) implements the same interfaces. The rule that
// decides what lives where: the storage (data directory or bucket) is the truth, and a
// coordinator only coordinates and caches, so it can be lost and rebuilt from the storage.
//
//   KeyedLocks      mutual exclusion per key: every metadata read-modify-write runs under one
//   Leases          an expiring claim on a key (who fetches a blob cluster-wide), renewable
//   BlobEvents      "blob committed" / "blob removed" notifications to every replica
//   PrivateContent  which digests are private content (pushed here): never evicted or mirrored
//   CacheIndex      the LRU over mirrored blobs: the storage.cache.maxBytes bound, access times
//   WindowCounters  counts per key in expiring windows (failed logins per address and per name)
//   SharedCircuits  each upstream's circuit-breaker state, told to every replica
//   UploadOwners    which replica holds each blob upload session (with cluster.advertiseUrl)
import type { Digest } from '../protocol/digest.js';

/** Serialises async work per key. Work for different keys runs concurrently. */
export interface KeyedLocks {
  withLock<T>(key: string, work: () => Promise<T>): Promise<T>;
}

/** A held lease. It lapses by itself `ttlMs` after the last acquire or renew. */
export interface Lease {
  readonly key: string;
  /** Extends the lease by its ttl; false when it had lapsed (someone else may hold it now). */
  renew(): Promise<boolean>;
  /** Gives it up, only if it is still ours. Idempotent. */
  release(): Promise<void>;
}

export interface Leases {
  /**
   * Takes the lease on `key` if nobody holds it; undefined when someone does. Never waits.
   * `holder` is recorded with it for others to read (a fetch's leader: its advertiseUrl).
   */
  tryAcquire(key: string, ttlMs: number, holder?: string): Promise<Lease | undefined>;
  /** The `holder` recorded by whoever holds the lease on `key` now; undefined if free or none given. */
  holder(key: string): Promise<string | undefined>;
}

export type BlobEvent =
  /** A blob was published under its digest (a fetch, an import or a push committed it). */
  | { type: 'committed'; digest: string; size: number; source: string }
  /** A blob left the store (evicted by the size bound, deleted by gc). Caches must forget it. */
  | { type: 'removed'; digest: string; reason: 'evicted' | 'collected' };

export interface BlobEvents {
  /** Delivers the event to every subscriber (of every replica). Never throws. */
  publish(event: BlobEvent): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: (event: BlobEvent) => void): () => void;
}

export interface ContentStats {
  bytes: number;
  objects: number;
}

/**
 * Blobs that belong to private repositories (pushed here, via v1 or v2). They are never
 * evicted, never garbage-collected by the mirror's rules, and never served under a mirrored
 * name on their own say-so. A mark is written before the bytes become visible.
 */
export interface PrivateContent {
  has(digest: Digest | string): Promise<boolean>;
  /** Marks a digest private. Idempotent. */
  add(digest: Digest, size: number): Promise<void>;
  /** Drops the mark (gc, once no repository links the blob and it is deleted). */
  remove(digest: Digest): Promise<void>;
  /**
   * Re-reads the marks after another process (gc, import) changed them. Only an index held in
   * this process needs it: a shared one is written through by every process.
   */
  reload?(): Promise<void>;
  /** Every marked digest (gc). */
  list(): AsyncIterable<{ digest: string; size: number }>;
  stats(): Promise<ContentStats>;
}

export interface CacheStats {
  mirrored: ContentStats;
  private: ContentStats;
  evictions: number;
}

/**
 * The size bound on mirrored content: a least-recently-used index over every cached blob
 * that deletes what falls off its end. Last-access times live here (and in the metadata
 * store, for restarts), never in file times, so any blob store driver can hold the bytes.
 * The notifications are fire-and-forget: a failure to record recency never fails a request.
 */
export interface CacheIndex {
  /** A newly cached mirrored blob; may push older ones out. */
  added(digest: string, size: number): void;
  /** A cache hit: most recently used now. */
  touched(digest: string): void;
  /** The blob is gone from the store (gc, a failed open): stop counting it. */
  forget(digest: string): void;
  /** Loads every mirrored blob in the store, oldest access first. */
  rebuild(): Promise<void>;
  /**
   * Reconciles the index with the store after another process changed it (gc deleted blobs,
   * import added some): blobs gone are forgotten, blobs new are counted. Blobs this process
   * adds meanwhile are kept.
   */
  rescan(): Promise<void>;
  /** Digests from least to most recently used. */
  leastRecentFirst(): Promise<string[]>;
  stats(): Promise<CacheStats>;
  /** Writes pending access times to the metadata store and stops background work. */
  close(): Promise<void>;
}

/** A key's open window: its count so far and the time until it closes. */
export interface WindowCount {
  count: number;
  remainingMs: number;
}

/**
 * Counters in fixed windows: the first increment of a key opens a window of `windowMs`, and
 * the count is forgotten when it closes. Shared by the replicas, so a limit holds cluster-wide.
 */
export interface WindowCounters {
  /**
   * Adds `change` to the key's window: +1 opens one if none is open, -1 takes back an earlier
   * +1 (never below 0, never opening a window). Resolves to the window after it, if open.
   */
  add(key: string, change: 1 | -1, windowMs: number): Promise<WindowCount | undefined>;
  /** The key's open window, or undefined when none is. */
  peek(key: string): Promise<WindowCount | undefined>;
}

/** A circuit that opened (until `openUntil`, ms since epoch) or closed (undefined). */
export interface CircuitChange {
  circuit: string;
  openUntil: number | undefined;
}

/**
 * The circuit state of each upstream, shared by the replicas: one that opens a circuit tells
 * the others, which then skip that upstream too until the retry time. Changes from this
 * process are not delivered back to it.
 */
export interface SharedCircuits {
  /** Tells the other replicas (and replicas starting later, until it lapses). Never throws. */
  publish(change: CircuitChange): void;
  /** Changes made by other replicas. Returns the unsubscribe function. */
  subscribe(listener: (change: CircuitChange) => void): () => void;
  /** When the circuit is open until, as last published by any replica (undefined: closed). */
  openUntil(circuit: string): Promise<number | undefined>;
}

/**
 * Which replica holds each blob upload session: a session's bytes are in its holder's scratch
 * directory, so a chunk that reaches another replica is passed on to the holder.
 */
export interface UploadOwners {
  /** This replica holds `id` (for the session idle timeout, renewed by every call). */
  claim(id: string): Promise<void>;
  /** The advertiseUrl of the replica holding `id`, if another one does; undefined otherwise. */
  ownerElsewhere(id: string): Promise<string | undefined>;
}

/** The ports that fall back to working uncoordinated when a shared coordinator is away. */
export const COORDINATION_PORTS = ['locks', 'leases', 'events', 'privateContent', 'cacheIndex', 'counters', 'circuits', 'uploads'] as const;
export type CoordinationPort = (typeof COORDINATION_PORTS)[number];

/** A count per port, every one at zero (nothing has run uncoordinated yet). */
export function zeroPerPort(): Record<CoordinationPort, number> {
  return Object.fromEntries(COORDINATION_PORTS.map((port) => [port, 0])) as Record<CoordinationPort, number>;
}

export interface CoordinationStatus {
  /** 'redis': replicas coordinate through Redis; 'in-process': one replica. */
  mode: 'redis' | 'in-process';
  /** Whether the shared coordinator is reachable now (always true in-process). */
  connected: boolean;
  /** Operations that ran uncoordinated because it was unreachable, per port, since start. */
  uncoordinated: Record<CoordinationPort, number>;
}

/**
 * The coordination primitives of one implementation (in-process or shared). PrivateContent and
 * CacheIndex are built beside it on the storage ports (storage/open-storage.ts, services.ts),
 * because they load from and write through the metadata store.
 */
export interface Coordinator {
  locks: KeyedLocks;
  leases: Leases;
  events: BlobEvents;
  counters: WindowCounters;
  /**
   * Always there, so a breaker never asks whether it shares: for one replica it has nobody to
   * tell, and costs a map entry per circuit change.
   */
  circuits: SharedCircuits;
  /**
   * Only with an advertiseUrl (several replicas): absent, every upload session is this
   * replica's own, and requests pay nothing for looking up a holder.
   */
  uploadOwners?: UploadOwners;
  /** For metrics and health: which coordinator, whether it is reachable. */
  status(): CoordinationStatus;
  close(): Promise<void>;
}
