// Runs in a worker thread of file-hasher.ts: hashes byte ranges of temp files the main thread
// has written, reading them back through the writer's own descriptor (descriptors are shared
// by every thread of the process). The bytes of a blob are never posted between threads: the
// main thread only says which range landed, and this thread reads it from the page cache.
import { createHash, type Hash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { exposedGc } from '../util/exposed-gc.js';

export type HashRequest =
  | { op: 'start'; session: number; algorithm: string }
  | { op: 'hash'; session: number; fd: number; position: number; length: number }
  /** Shared staging memory (direct-io.ts) that later hashBlock requests name by id. */
  | { op: 'slab'; slab: number; memory: SharedArrayBuffer }
  /** The main thread dropped the slab: no request names it any more. */
  | { op: 'forgetSlab'; slab: number }
  /** Bytes [offset, offset + length) of a slab, hashed where they are: a direct writer's block. */
  | { op: 'hashBlock'; session: number; slab: number; offset: number; length: number }
  | { op: 'finish'; session: number }
  | { op: 'drop'; session: number };

export type HashReply =
  /** The range was read (or skipped, for a dropped session): its descriptor may close. */
  | { op: 'hashed'; session: number }
  | { op: 'digest'; session: number; hex: string }
  | { op: 'failed'; session: number; message: string };

// 1 MiB reads: big enough that the syscall per read is noise, small enough to stay in cache
// between the read and the hash.
const READ_BYTES = 1024 * 1024;
const buffer = Buffer.allocUnsafeSlow(READ_BYTES);
const hashes = new Map<number, Hash>();
const slabs = new Map<number, SharedArrayBuffer>();
/** A collection for forgotten slabs is queued (forgetSlab). */
let collectionQueued = false;
// A session that failed keeps failing: its later ranges are skipped and its digest refused.
const failures = new Map<number, string>();

function hashRange(hash: Hash, fd: number, position: number, length: number): void {
  let done = 0;
  while (done < length) {
    const bytesRead = readSync(fd, buffer, 0, Math.min(READ_BYTES, length - done), position + done);
    if (bytesRead === 0) throw new Error(`temp file ended at ${position + done}, expected ${length - done} more bytes`);
    hash.update(buffer.subarray(0, bytesRead));
    done += bytesRead;
  }
}

function handle(request: HashRequest): HashReply | undefined {
  if (request.op === 'slab') {
    slabs.set(request.slab, request.memory);
    return undefined;
  }
  if (request.op === 'forgetSlab') {
    slabs.delete(request.slab);
    // The memory is unmapped only once this isolate collects its SharedArrayBuffer object, and
    // an idle thread collects nothing: ask for a collection, off this thread's critical path.
    // One collection for all the slabs forgotten in one turn (a burst's slabs go together).
    if (!collectionQueued) {
      collectionQueued = true;
      setImmediate(() => {
        collectionQueued = false;
        exposedGc()({ type: 'major', execution: 'async' });
      });
    }
    return undefined;
  }
  const { session } = request;
  switch (request.op) {
    case 'start':
      hashes.set(session, createHash(request.algorithm));
      return undefined;
    case 'hash': {
      const hash = hashes.get(session);
      if (hash && !failures.has(session)) {
        try {
          hashRange(hash, request.fd, request.position, request.length);
        } catch (error) {
          failures.set(session, (error as Error).message);
        }
      }
      return { op: 'hashed', session };
    }
    case 'hashBlock': {
      const hash = hashes.get(session);
      const memory = slabs.get(request.slab);
      if (hash && !failures.has(session)) {
        if (memory) hash.update(new Uint8Array(memory, request.offset, request.length));
        else failures.set(session, `unknown staging slab ${request.slab}`);
      }
      return { op: 'hashed', session };
    }
    case 'finish': {
      const hash = hashes.get(session);
      const failure = failures.get(session);
      hashes.delete(session);
      failures.delete(session);
      if (failure !== undefined || !hash) return { op: 'failed', session, message: failure ?? 'unknown hash session' };
      return { op: 'digest', session, hex: hash.digest('hex') };
    }
    case 'drop':
      hashes.delete(session);
      failures.delete(session);
      return undefined;
  }
}

parentPort?.on('message', (request: HashRequest) => {
  const reply = handle(request);
  if (reply) parentPort?.postMessage(reply);
});
