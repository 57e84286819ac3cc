// The coordinator of a single replica: locks, leases and notifications in this process.
// Correct for one Longshore process per storage; several replicas sharing a bucket need the
// shared coordinator (Redis, issue 17), which implements the same ports.
import { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import type { BlobEvent, BlobEvents, Coordinator, KeyedLocks, Lease, Leases, WindowCount, WindowCounters } from './ports.js';

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

export class InProcessBlobEvents implements BlobEvents {
  private readonly emitter = new EventEmitter();

  constructor(private readonly onListenerError: (error: unknown, event: BlobEvent) => void = () => undefined) {
    // Every cache of the process subscribes; the default warning at 10 is not a leak here.
    this.emitter.setMaxListeners(0);
  }

  publish(event: BlobEvent): void {
    for (const listener of this.emitter.listeners('event') as Array<(event: BlobEvent) => void>) {
      try {
        listener(event);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }

  subscribe(listener: (event: BlobEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
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

export function inProcessCoordinator(options: { onListenerError?: (error: unknown, event: BlobEvent) => void } = {}): Coordinator {
  return {
    locks: new InProcessLocks(),
    leases: new InProcessLeases(),
    events: new InProcessBlobEvents(options.onListenerError),
    counters: new InProcessWindowCounters(),
    status: () => ({ mode: 'in-process', connected: true, uncoordinated: { locks: 0, leases: 0, events: 0, privateContent: 0, cacheIndex: 0, counters: 0, circuits: 0, uploads: 0 } }),
    close: () => Promise.resolve(),
  };
}
