// The coordinator of a single replica: locks, leases and notifications in this process.
// Correct for one Longshore process per storage; several replicas sharing a bucket need the
// shared coordinator (Redis, issue 17), which implements the same ports.
//
// Every coordinator works on an InProcessCluster, the memory the ports keep. A serving process
// has a cluster of one; tests open several coordinators on one cluster to play the replicas of
// a cluster without Redis (the coordination contract runs its multi-replica cases that way).
// Nothing here runs a timer: expiries are checked when read.
import { LRUCache } from 'lru-cache';
import {
  zeroPerPort,
  type BlobEvent,
  type BlobEvents,
  type CircuitChange,
  type Coordinator,
  type KeyedLocks,
  type Lease,
  type Leases,
  type SharedCircuits,
  type UploadOwners,
  type WindowCount,
  type WindowCounters,
} from './ports.js';

/** Per-key FIFO chains of promises: one holder per key at a time, others queue in order. */
export class InProcessLocks implements KeyedLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async withLock<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.tails.set(key, tail);
    await previous;
    try {
      return await work();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export class InProcessLeases implements Leases {
  /** Lease key -> its current holder's token and expiry. */
  private readonly held = new Map<string, { token: symbol; expiresAt: number; holder: string | undefined }>();

  constructor(private readonly now: () => number = Date.now) {}

  holder(key: string): Promise<string | undefined> {
    const current = this.held.get(key);
    return Promise.resolve(current && current.expiresAt > this.now() ? current.holder : undefined);
  }

  tryAcquire(key: string, ttlMs: number, holder?: string): Promise<Lease | undefined> {
    const current = this.held.get(key);
    if (current && current.expiresAt > this.now()) return Promise.resolve(undefined);
    const token = Symbol(key);
    this.held.set(key, { token, expiresAt: this.now() + ttlMs, holder });
    const ours = () => {
      const entry = this.held.get(key);
      return entry?.token === token && entry.expiresAt > this.now() ? entry : undefined;
    };
    return Promise.resolve({
      key,
      renew: () => {
        const entry = ours();
        if (entry) entry.expiresAt = this.now() + ttlMs;
        return Promise.resolve(entry !== undefined);
      },
      release: () => {
        // Compare-and-delete: a lapsed lease taken over by someone else stays theirs.
        if (this.held.get(key)?.token === token) this.held.delete(key);
        return Promise.resolve();
      },
    });
  }
}

/** What to do with an error thrown by a listener of blob events or circuit changes. */
export type ListenerErrorHandler = (error: unknown, message: BlobEvent | CircuitChange) => void;

/**
 * The listeners of one kind of message in this process. Delivery goes to those subscribed when
 * it starts; one that throws is reported and does not stop the rest nor fail the publisher.
 */
export class Listeners<T extends BlobEvent | CircuitChange> {
  /** One entry per subscription, so a function subscribed twice is called twice. */
  private readonly entries = new Set<{ listener: (message: T) => void }>();

  constructor(private readonly onError: ListenerErrorHandler = () => undefined) {}

  /** Returns the unsubscribe function. */
  add(listener: (message: T) => void): () => void {
    const entry = { listener };
    this.entries.add(entry);
    return () => this.entries.delete(entry);
  }

  deliver(message: T): void {
    for (const { listener } of [...this.entries]) {
      try {
        listener(message);
      } catch (error) {
        this.onError(error, message);
      }
    }
  }
}

export class InProcessBlobEvents implements BlobEvents {
  private readonly listeners: Listeners<BlobEvent>;

  /**
   * @param replicas the events of every coordinator of an in-process cluster, this one
   *   included: a publish reaches all of them. Without it, this process's subscribers only.
   */
  constructor(
    onListenerError?: ListenerErrorHandler,
    private readonly replicas?: Set<InProcessBlobEvents>,
  ) {
    this.listeners = new Listeners(onListenerError);
    replicas?.add(this);
  }

  publish(event: BlobEvent): void {
    for (const replica of this.replicas ?? [this]) replica.deliver(event);
  }

  /** Leaves its cluster: other replicas' events no longer reach it. */
  close(): void {
    this.replicas?.delete(this);
  }

  /** Hands `event` to this replica's subscribers only. */
  deliver(event: BlobEvent): void {
    this.listeners.deliver(event);
  }

  subscribe(listener: (event: BlobEvent) => void): () => void {
    return this.listeners.add(listener);
  }
}

/** Windows in memory, at most `maxKeys` of them (least recently counted dropped first). */
export class InProcessWindowCounters implements WindowCounters {
  private readonly windows: LRUCache<string, { count: number; endsAt: number }>;

  constructor(
    private readonly now: () => number = Date.now,
    maxKeys = 20_000,
  ) {
    this.windows = new LRUCache({ max: maxKeys });
  }

  add(key: string, change: 1 | -1, windowMs: number): Promise<WindowCount | undefined> {
    let window = this.windows.get(key);
    if (!window || window.endsAt <= this.now()) {
      if (change < 0) return Promise.resolve(undefined);
      this.windows.set(key, (window = { count: 0, endsAt: this.now() + windowMs }));
    }
    window.count = Math.max(0, window.count + change);
    return Promise.resolve({ count: window.count, remainingMs: window.endsAt - this.now() });
  }

  peek(key: string): Promise<WindowCount | undefined> {
    const window = this.windows.peek(key);
    if (!window || window.endsAt <= this.now()) return Promise.resolve(undefined);
    return Promise.resolve({ count: window.count, remainingMs: window.endsAt - this.now() });
  }
}

/** Each circuit's retry time as last published in the cluster, and its replicas' circuits. */
export class CircuitBoard {
  readonly replicas = new Set<InProcessCircuits>();
  private readonly openUntil = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  record(change: CircuitChange): void {
    if (change.openUntil !== undefined && change.openUntil > this.now()) this.openUntil.set(change.circuit, change.openUntil);
    else this.openUntil.delete(change.circuit);
  }

  read(circuit: string): number | undefined {
    const until = this.openUntil.get(circuit);
    if (until === undefined || until > this.now()) return until;
    this.openUntil.delete(circuit); // lapsed, as a Redis key expiring at the retry time
    return undefined;
  }
}

/** One replica's view of the cluster's circuits; a cluster of one only remembers its own. */
export class InProcessCircuits implements SharedCircuits {
  private readonly listeners: Listeners<CircuitChange>;

  constructor(
    private readonly board: CircuitBoard,
    onListenerError?: ListenerErrorHandler,
  ) {
    this.listeners = new Listeners(onListenerError);
    board.replicas.add(this);
  }

  publish(change: CircuitChange): void {
    this.board.record(change);
    for (const replica of this.board.replicas) if (replica !== this) replica.listeners.deliver({ ...change });
  }

  subscribe(listener: (change: CircuitChange) => void): () => void {
    return this.listeners.add(listener);
  }

  openUntil(circuit: string): Promise<number | undefined> {
    return Promise.resolve(this.board.read(circuit));
  }

  /** Leaves its cluster. */
  close(): void {
    this.board.replicas.delete(this);
  }
}

/** Sessions whose holder a cluster keeps at once; beyond it the least recently claimed is forgotten. */
const MAX_UPLOAD_CLAIMS = 10_000;

export class InProcessUploadOwners implements UploadOwners {
  constructor(
    private readonly claims: LRUCache<string, { owner: string; expiresAt: number }>,
    private readonly advertiseUrl: string,
    private readonly idleTimeoutMs: number,
    private readonly now: () => number,
  ) {}

  claim(id: string): Promise<void> {
    this.claims.set(id, { owner: this.advertiseUrl, expiresAt: this.now() + this.idleTimeoutMs });
    return Promise.resolve();
  }

  ownerElsewhere(id: string): Promise<string | undefined> {
    const claim = this.claims.get(id);
    if (claim === undefined || claim.expiresAt <= this.now()) return Promise.resolve(undefined);
    return Promise.resolve(claim.owner === this.advertiseUrl ? undefined : claim.owner);
  }
}

/**
 * What in-process coordinators keep, in memory. A serving process has one of its own; tests
 * open several coordinators on one to play the replicas of a cluster.
 */
export class InProcessCluster {
  readonly locks = new InProcessLocks();
  readonly leases: InProcessLeases;
  readonly counters: InProcessWindowCounters;
  readonly events = new Set<InProcessBlobEvents>();
  readonly circuits: CircuitBoard;
  readonly uploadClaims = new LRUCache<string, { owner: string; expiresAt: number }>({ max: MAX_UPLOAD_CLAIMS });

  constructor(readonly now: () => number = Date.now) {
    this.leases = new InProcessLeases(now);
    this.counters = new InProcessWindowCounters(now);
    this.circuits = new CircuitBoard(now);
  }
}

export interface InProcessCoordinatorOptions {
  onListenerError?: ListenerErrorHandler;
  /** The cluster this coordinator is a replica of; a new one of its own without it. */
  cluster?: InProcessCluster;
  /** As for Redis: with it, upload sessions are claimed and found across the cluster's replicas. */
  uploads?: { advertiseUrl: string; idleTimeoutMs: number };
}

export function inProcessCoordinator(options: InProcessCoordinatorOptions = {}): Coordinator {
  const cluster = options.cluster ?? new InProcessCluster();
  const { uploads } = options;
  const events = new InProcessBlobEvents(options.onListenerError, cluster.events);
  const circuits = new InProcessCircuits(cluster.circuits, options.onListenerError);
  return {
    locks: cluster.locks,
    leases: cluster.leases,
    events,
    counters: cluster.counters,
    circuits,
    uploadOwners: uploads && new InProcessUploadOwners(cluster.uploadClaims, uploads.advertiseUrl, uploads.idleTimeoutMs, cluster.now),
    status: () => ({ mode: 'in-process', connected: true, uncoordinated: zeroPerPort() }),
    close: () => {
      events.close();
      circuits.close();
      return Promise.resolve();
    },
  };
}
