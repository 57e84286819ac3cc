// bcrypt off the event loop: a small pool of worker threads (piscina) with a bounded queue.
// One bcrypt check is ~2-50 ms of CPU depending on the entry's cost; on the event loop, a
// handful of anonymous requests per second with made-up Basic credentials would stall every
// cached pull. Here they wait their turn in the queue, and past the queue's bound they are
// refused at once (429) instead of piling up.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { RegistryError } from '../protocol/errors.js';
import type { BcryptTask } from './bcrypt-worker.js';

export interface BcryptPoolSettings {
  /** Worker threads (auth.verify.workers): verifications that run at the same time. */
  workers: number;
  /** Verifications that may wait for a thread (auth.verify.queue); past it: 429. */
  queue: number;
}

// Threads not used for this long exit; the next verification starts one again (~30 ms).
const IDLE_THREAD_MS = 60_000;
// What a client refused for a full queue is told to wait: verifications take milliseconds.
const BUSY_RETRY_AFTER_S = 1;

// The worker is loaded as the same kind of file as this one: .ts under tsx (tests), .js in dist.
const WORKER_FILE = new URL(`./bcrypt-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

export class BcryptPool {
  private readonly pool: Piscina<BcryptTask, boolean | string>;

  constructor(private readonly settings: BcryptPoolSettings) {
    this.pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: 0,
      maxThreads: Math.max(1, Math.min(settings.workers, availableParallelism())),
      maxQueue: settings.queue,
      idleTimeout: IDLE_THREAD_MS,
    });
  }

  /** Whether `password` matches the bcrypt `hash` ($2a$/$2b$). Throws 429 when the queue is full. */
  async compare(password: string, hash: string): Promise<boolean> {
    return (await this.run({ op: 'compare', password, hash })) === true;
  }

  /** A new bcrypt hash ($2b$) of `password` at `cost`. */
  async hash(password: string, cost: number): Promise<string> {
    return String(await this.run({ op: 'hash', password, cost }));
  }

  /** Verifications waiting for a thread (for tests and the load scenario). */
  get waiting(): number {
    return this.pool.queueSize;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }

  private async run(task: BcryptTask): Promise<boolean | string> {
    // Checked here rather than by catching piscina's error, whose only mark is its message.
    if (this.pool.queueSize >= this.settings.queue) throw busy();
    return this.pool.run(task);
  }
}

function busy(): RegistryError {
  return new RegistryError('TOOMANYREQUESTS', 'too many logins are being checked; retry shortly', {
    headers: { 'retry-after': String(BUSY_RETRY_AFTER_S) },
  });
}
