// Digests of big staged writes, computed off the event loop. sha256 of a 200 MiB layer is
// ~0.19 s of CPU (SHA-NI, this project's bench machine): on the event loop it was the largest
// single cost of a cold miss, serial with receiving and sending (issue 19). Here a worker
// thread (hash-worker.ts) reads back each range the writer has put in its temp file and hashes
// it while the event loop goes on receiving and sending. No blob bytes cross threads: ranges are
// read from the page cache through the writer's descriptor, which every thread shares.
//
// One thread (MAX_THREADS), shared by every writer of the process; a writer's session stays on one
// thread so its ranges are hashed in order. A thread that dies fails the sessions it held (their
// verify() throws, their fetch fails) and the next session starts a fresh one.
import { Worker } from 'node:worker_threads';
import { deferred, type Deferred } from '../util/deferred.js';
import type { StagingBlock, StagingSlab } from './direct-io.js';
import type { HashReply, HashRequest } from './hash-worker.js';

// One thread: it hashes ~1 GB/s, more than one download brings in on this project's 2-CPU
// machine, and each thread costs ~11 MB of RSS and 4 descriptors (measured), which the
// 150 MB memory goal and the idle-upload descriptor bound (upload-limits e2e) both feel.
const MAX_THREADS = 1;
// A thread with no session for this long is ended: idle, it is still a whole V8 isolate (~9 MB
// of RSS, measured: issue 19's memory goal). The next big write starts one again (~30 ms of CPU,
// overlapping the download: ranges queue until the thread is up, and it hashes faster than a
// download brings bytes in). Not sooner: with 5 s, a cold 200 MiB miss after a pause peaked
// ~15 MB higher than with a thread already running (5 alternating runs), so a busy server keeps it.
let idleThreadMs = 60_000;

/**
 * A worker running hash-worker: the .js file in dist. Under tsx (tests) the .ts file, loaded
 * after registering tsx in the thread: a worker started on a .ts file directly fails on Node 20
 * ("Unknown file extension"), the --import hooks being ready only after its entry is resolved.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./hash-worker.js', import.meta.url));
  const entry = new URL('./hash-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`, { eval: true });
}
class HashThread {
  private readonly worker: Worker;
  readonly sessions = new Map<number, FileHasher>();
  private lastError: Error | undefined;
  private exited = false;
  /** Staging slabs this thread was given (direct-io.ts). */
  private readonly slabs = new Set<number>();
  private idleTimer: NodeJS.Timeout | undefined;

  /** `onGone`: the thread takes no new sessions (ending when idle, or exited). */
  constructor(private readonly onGone: (thread: HashThread) => void) {
    this.worker = startWorker();
    this.worker.on('message', (reply: HashReply) => this.sessions.get(reply.session)?.receive(reply));
    this.worker.on('error', (error) => (this.lastError = error));
    // Only 'exit' means the thread no longer reads any descriptor: sessions fail from there.
    this.worker.on('exit', (code) => {
      this.exited = true;
      clearTimeout(this.idleTimer);
      this.onGone(this);
      const error = new Error(`hash worker thread exited (code ${code})${this.lastError ? `: ${this.lastError.message}` : ''}`);
      for (const session of this.sessions.values()) session.fail(error);
      this.sessions.clear();
    });
    // Idle threads do not keep the process alive; one with sessions does (see attach/detach).
    this.worker.unref();
    this.endWhenIdle();
  }

  get alive(): boolean {
    return !this.exited;
  }

  attach(session: FileHasher): void {
    if (this.sessions.size === 0) {
      this.worker.ref();
      clearTimeout(this.idleTimer);
    }
    this.sessions.set(session.id, session);
  }

  detach(session: FileHasher): void {
    if (this.sessions.delete(session.id) && this.sessions.size === 0) {
      this.worker.unref();
      this.endWhenIdle();
    }
  }

  private endWhenIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.sessions.size > 0 || this.exited) return;
      // Out of the pool first, so no session can attach to a thread that is going away.
      this.onGone(this);
      void this.worker.terminate();
    }, idleThreadMs);
    this.idleTimer.unref();
  }

  post(request: HashRequest): void {
    this.worker.postMessage(request);
  }

  /** Gives the thread a staging slab once, before the first request that names it. */
  knowSlab(slab: StagingSlab): void {
    if (this.slabs.has(slab.id)) return;
    this.slabs.add(slab.id);
    if (!slabsWatched.has(slab)) {
      slabsWatched.add(slab);
      slabCollected.register(slab, slab.id);
    }
    this.worker.postMessage({ op: 'slab', slab: slab.id, memory: slab.memory } satisfies HashRequest);
  }

  /** The slab is gone from this thread: its memory is freed once no thread holds it. */
  forgetSlab(id: number): void {
    if (!this.slabs.delete(id) || this.exited) return;
    this.worker.postMessage({ op: 'forgetSlab', slab: id } satisfies HashRequest);
  }

  get slabCount(): number {
    return this.slabs.size;
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

const threads: HashThread[] = [];
let nextSessionId = 1;

// A slab the main thread no longer holds (direct-io.ts drops blocks past its free pool) is
// still held by every hash thread it was given, which would keep a burst's staging memory
// mapped until the thread ends (60 s idle, never on a busy server). Once the slab is garbage
// here, the threads are told to let it go too.
const slabsWatched = new WeakSet<StagingSlab>();
const slabCollected = new FinalizationRegistry<number>((id) => {
  for (const thread of threads) thread.forgetSlab(id);
});

/** The least busy live thread, starting one while there are fewer than MAX_THREADS. */
function pickThread(): HashThread {
  let best: HashThread | undefined;
  for (const thread of threads) if (!best || thread.sessions.size < best.sessions.size) best = thread;
  if (best && (best.sessions.size === 0 || threads.length >= MAX_THREADS)) return best;
  const thread = new HashThread((gone) => {
    const index = threads.indexOf(gone);
    if (index >= 0) threads.splice(index, 1);
  });
  threads.push(thread);
  return thread;
}

/** How many hash threads take sessions now (tests). */
export function hashThreadCount(): number {
  return threads.length;
}

/** Staging slabs the hash threads hold, in all (tests). */
export function hashThreadSlabCount(): number {
  return threads.reduce((sum, thread) => sum + thread.slabCount, 0);
}

/**
 * How long a thread may stay idle before it ends (tests shorten it), for idle periods starting
 * from now on. Returns the previous setting.
 */
export function setHashThreadIdleMs(ms: number): number {
  const previous = idleThreadMs;
  idleThreadMs = ms;
  return previous;
}

/** Stops every hash thread, as a crash would (tests: a dead thread fails its writers). */
export async function terminateHashThreads(): Promise<void> {
  await Promise.all(threads.map((thread) => thread.terminate()));
}

/**
 * One digest being computed from ranges of a file, in the order they are given. Until
 * `whenIdle()` resolves, the thread may still read through the descriptors it was given: do
 * not close them before.
 */
export class FileHasher {
  readonly id = nextSessionId++;
  private readonly thread: HashThread;
  private pending = 0;
  private idle: Deferred<void> | undefined;
  private result: Deferred<string> | undefined;
  private failure: Error | undefined;
  private finished = false;
  /** Called as each request is done, in order (the thread answers a session's requests in order). */
  private readonly done: Array<(() => void) | undefined> = [];

  constructor(algorithm: string) {
    this.thread = pickThread();
    this.thread.attach(this);
    this.thread.post({ op: 'start', session: this.id, algorithm });
  }

  /** Adds bytes [position, position + length) of the file open as `fd` to the digest. */
  hash(fd: number, position: number, length: number): void {
    if (this.finished || this.failure || length === 0) return;
    this.pending += 1;
    this.done.push(undefined);
    this.thread.post({ op: 'hash', session: this.id, fd, position, length });
  }

  /**
   * Adds the first `length` bytes of a staging block to the digest, read where they are; `onDone`
   * runs once the thread is through with them (or failed, or the session was dropped): from then
   * on the block may be written over.
   */
  hashBlock(block: StagingBlock, length: number, onDone: () => void): void {
    if (this.finished || this.failure || length === 0) {
      onDone();
      return;
    }
    this.pending += 1;
    this.done.push(onDone);
    this.thread.knowSlab(block.slab);
    this.thread.post({ op: 'hashBlock', session: this.id, slab: block.slab.id, offset: block.offset, length });
  }

  /** Resolves once the thread reads no descriptor for this session any more. */
  whenIdle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    this.idle ??= deferred<void>();
    return this.idle.promise;
  }

  /** The hex digest of every range given, once hashed; rejects if the thread failed. */
  digest(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.result) {
      this.result = deferred<string>();
      this.finished = true;
      this.thread.post({ op: 'finish', session: this.id });
    }
    return this.result.promise;
  }

  /** Gives up the digest (the write was aborted): ranges not hashed yet are skipped. */
  drop(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.thread.alive) this.thread.post({ op: 'drop', session: this.id });
    if (this.pending === 0) this.thread.detach(this);
  }

  receive(reply: HashReply): void {
    if (reply.op === 'hashed') {
      this.pending -= 1;
      this.done.shift()?.();
      if (this.pending === 0) this.becameIdle();
      return;
    }
    this.thread.detach(this);
    if (reply.op === 'digest') this.result?.resolve(reply.hex);
    else this.result?.reject(new Error(`hashing failed: ${reply.message}`));
  }

  fail(error: Error): void {
    this.failure ??= error;
    this.pending = 0;
    for (const onDone of this.done.splice(0)) onDone?.();
    this.becameIdle();
    this.result?.reject(error);
  }

  private becameIdle(): void {
    this.idle?.resolve();
    this.idle = undefined;
    // A dropped session leaves its thread once nothing of it is queued there.
    if (this.finished && !this.result) this.thread.detach(this);
  }
}
