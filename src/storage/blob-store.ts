// The content-addressed blob store: one copy of every blob, keyed by its digest.
// Drivers implement this interface; `test/support/blob-store-contract.ts` is the contract
// every driver must pass.
import type { Readable, Writable } from 'node:stream';
import type { Hash } from 'node:crypto';
import type { Digest, DigestAlgorithm } from '../protocol/digest.js';
import { noteBufferChurn } from '../util/buffer-churn.js';

// 512 KiB reads: with the 64 KiB default, serving large layers is dominated by per-chunk
// overhead (~0.35x nginx with 16 streams). Stored blobs go out through BlobHandle.writeTo with
// pooled buffers of this size (`npm run bench`, 16 x 200 MiB hits on 2 CPUs: ~1.1x nginx);
// a stream allocating a fresh buffer per read reached ~0.85x in isolation and ~0.45x in full
// bench runs, its garbage piling up between collections.
export const READ_CHUNK_BYTES = 512 * 1024;

// Read buffers of READ_CHUNK_BYTES, reused across responses: serving a hit (FsBlobHandle.writeTo)
// or following a blob as it lands (writeFollowing) allocates nothing per chunk. A fresh 512 KiB
// buffer per read is fresh memory to fault in and collect: 16 followers of a shared S3 read
// spent ~1.2 s of CPU per libuv thread on it (`npm run bench -- --only s3`). Bounded, so a
// burst of clients does not pin memory afterwards.
const readBufferPool: Buffer[] = [];
const MAX_POOLED_READ_BUFFERS = 32;

export function takeReadBuffer(): Buffer {
  const pooled = readBufferPool.pop();
  if (pooled) return pooled;
  // More clients than the pool holds: this one may end up as garbage (giveReadBuffer drops it).
  noteBufferChurn(READ_CHUNK_BYTES);
  return Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
}

/** Gives a buffer back once nothing uses it any more (a write's callback came). */
export function giveReadBuffer(buffer: Buffer): void {
  if (readBufferPool.length < MAX_POOLED_READ_BUFFERS) readBufferPool.push(buffer);
}

export interface ByteRange {
  start: number;
  /** Inclusive, as in HTTP Range headers. */
  end: number;
}

/**
 * An open, committed blob. Reading stays valid even if the blob is deleted meanwhile, except
 * through a handle that offers redirectUrl: it reads the object when streamed, as the client it
 * would redirect does.
 */
export interface BlobHandle {
  readonly size: number;
  /** Streams the blob (or a range of it) and closes the handle when the stream ends. */
  stream(range?: ByteRange): Readable;
  /** Releases the handle without reading (HEAD, 416). Idempotent. */
  close(): Promise<void>;
  /**
   * Optional fast path: writes the blob (or a range) into `destination` and ends it, without
   * stream layers in between (fs: pooled buffers instead of one allocated per chunk; S3: the
   * GET's chunks, batched into fewer socket writes), and closes the handle. Resolves when done
   * or when the destination went away; a failed read destroys `destination`, never ends it.
   * `destination` must be done with a chunk once it calls back the chunk's write (a socket, an
   * HTTP response; not a PassThrough, which hands the chunk on uncopied): the buffer is reused then.
   */
  writeTo?(destination: Writable, range?: ByteRange): Promise<void>;
  /**
   * Optional, object stores with redirects on (storage.s3.redirect): a short-lived URL where
   * the client can GET the blob itself, straight from the store, and closes the handle. Only
   * committed blobs have handles, so only they can be redirected to.
   */
  redirectUrl?(): Promise<string>;
}

/** A blob as the HTTP layer sends it: streamed, or (stored blobs) written with pooled buffers. */
export interface SendableBlob {
  /** undefined: unknown length (a miss whose upstream streams without one). */
  size: number | undefined;
  /** Streams the blob or a range of it. Call exactly one of open(), writeTo(), redirectUrl() or discard(). */
  open(range?: ByteRange): Readable;
  discard(): Promise<void>;
  writeTo?(destination: Writable, range?: ByteRange): Promise<void>;
  /** A stored blob the client may fetch from the store itself (BlobHandle.redirectUrl). */
  redirectUrl?(): Promise<string>;
}

/** A stored blob's handle, ready to send. */
export function sendableBlob(handle: BlobHandle): SendableBlob {
  const writeTo = handle.writeTo?.bind(handle);
  const redirectUrl = handle.redirectUrl?.bind(handle);
  return {
    size: handle.size,
    open: (range) => handle.stream(range),
    discard: () => handle.close(),
    ...(writeTo ? { writeTo } : {}),
    ...(redirectUrl ? { redirectUrl } : {}),
  };
}

/**
 * A blob being written. Bytes are hashed as they are written; `commit` publishes the blob
 * under its digest only if the hash matches. Until then nobody can open it from the store,
 * but readers that hold the writer (followers of an in-flight fetch) can read what landed.
 */
export interface BlobWriter {
  /** The digest the bytes must hash to; undefined for uploads whose digest comes out at the end. */
  readonly expected: Digest | undefined;
  readonly bytesWritten: number;
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Optional fast path of write() for callers that stream many chunks: takes `chunk` at once and
   * answers undefined, or a promise to await before the next chunk when the writer is behind
   * (backpressure). Throws (synchronously, or through that promise) where write() would reject.
   */
  writeNow?(chunk: Uint8Array): Promise<void> | undefined;
  /** Reads already-written bytes; used by followers tailing an in-progress fetch. */
  readAt(position: number, length: number): Promise<Buffer>;
  /**
   * Optional readAt without an allocation: bytes read from the file go into `buffer` (a pooled
   * one); bytes still in memory come back as a view of the chunk that holds them. Either way
   * the answer is at most `length` and `buffer.byteLength` bytes long.
   */
  readInto?(buffer: Buffer, position: number, length: number): Promise<Buffer>;
  /**
   * Optional: a reader following the write has delivered the bytes before `position`. A writer
   * that keeps recent bytes in memory (direct-staging.ts) keeps them until the furthest reader
   * is past them, a little while at most, so a reader that keeps up never reads the file back.
   */
  readerAt?(position: number): void;
  /**
   * Checks the digest (and size, when given) without publishing; on a mismatch the partial
   * blob is deleted and the error thrown. For all-or-nothing imports: verify everything first,
   * then commit. No writes are accepted afterwards.
   */
  verify(expectedSize?: number): Promise<Digest>;
  /**
   * Verifies (unless verify() already did) and renames the blob into place under its digest.
   * A writer with no expected digest stores under the digest of what it got.
   */
  commit(expectedSize?: number): Promise<Digest>;
  /**
   * Optional, set by writers whose commit takes long after the last byte (S3: the upload's
   * last parts and its completion). A followed fetch then releases its readers' final byte
   * once verify() passed, before the commit: the client's wait is the digest check, not the
   * publication. Unset (fs, memory: the commit is a rename), readers end only after the
   * commit, so a blob is always in the store once a client got all of it.
   */
  readonly slowCommit?: boolean;
  /** Deletes the partial blob. Safe after commit (no-op) and idempotent. */
  abort(): Promise<void>;
  /** Closes the descriptor once nobody reads through `readAt` any more. Idempotent. */
  close(): void;
  /**
   * Optional: writes out what is buffered and gives back any descriptor or connection the
   * writer holds until it is used again (the next write or read reopens it). Upload sessions
   * call it between chunks, so a thousand idle sessions hold no file descriptors. Only for a
   * writer nobody reads through `readAt` meanwhile (an upload, not a followed fetch).
   */
  suspend?(): Promise<void>;
}

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly size: number,
  ) {
    super(`content digest mismatch: expected ${expected}, got ${actual} (${size} bytes)`);
    this.name = 'DigestMismatchError';
  }
}

export class SizeMismatchError extends Error {
  constructor(
    readonly digest: string,
    readonly expectedSize: number,
    readonly actualSize: number,
  ) {
    super(`size mismatch for ${digest}: expected ${expectedSize} bytes, got ${actualSize}`);
    this.name = 'SizeMismatchError';
  }
}

/**
 * The one check every driver's writer makes before anything is published: the bytes written
 * hash to the expected digest and count to the expected size. Returns the digest they hash to,
 * or the error to abort with. `hash`: the running hash, or the hex digest a driver computed
 * elsewhere (the fs driver's worker thread).
 */
export function checkWritten(
  hash: Hash | string,
  algorithm: DigestAlgorithm,
  written: number,
  expected: { label: string; digest: Digest | undefined; size: number | undefined },
): { digest: Digest } | { error: Error } {
  const hex = typeof hash === 'string' ? hash : hash.digest('hex');
  const digest: Digest = { algorithm, hex, text: `${algorithm}:${hex}` };
  if (expected.size !== undefined && expected.size !== written) return { error: new SizeMismatchError(expected.label, expected.size, written) };
  if (expected.digest && digest.text !== expected.digest.text) return { error: new DigestMismatchError(expected.digest.text, digest.text, written) };
  return { digest };
}

/**
 * Hands `chunk` to `writer` by its fast path (writeNow) where it has one, else by write(): a
 * promise comes back when the caller must wait for it before the next chunk.
 */
export function writeChunk(writer: BlobWriter, chunk: Uint8Array): Promise<void> | undefined {
  return writer.writeNow ? writer.writeNow(chunk) : writer.write(chunk);
}

/**
 * Already-written bytes of `writer` at `position`, into `buffer` by its readInto where it has
 * one, else by readAt (an allocation): at most `length` and `buffer.byteLength` bytes.
 */
export function readIntoBuffer(writer: Pick<BlobWriter, 'readAt' | 'readInto'>, buffer: Buffer, position: number, length: number): Promise<Buffer> {
  return writer.readInto ? writer.readInto(buffer, position, length) : writer.readAt(position, Math.min(length, buffer.byteLength));
}

/** A chunk a writer holds in memory, at its offset in the blob. */
export interface PositionedChunk {
  start: number;
  chunk: Buffer;
}

/**
 * The bytes at `position` (at most `length`, never past the chunk that holds them) from chunks
 * held in blob order, without a copy; empty when no chunk holds that position. Writers keep
 * what is not yet in their store this way so that followers can read it live.
 */
export function sliceOfChunks(chunks: readonly PositionedChunk[], position: number, length: number): Buffer {
  let low = 0;
  let high = chunks.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const entry = chunks[middle] as PositionedChunk;
    if (position < entry.start) high = middle - 1;
    else if (position >= entry.start + entry.chunk.byteLength) low = middle + 1;
    else {
      const offset = position - entry.start;
      return entry.chunk.subarray(offset, offset + Math.min(length, entry.chunk.byteLength - offset));
    }
  }
  return Buffer.alloc(0);
}

/** A committed blob as listing finds it. */
export interface StoredBlob {
  digest: string;
  size: number;
  /** When the blob was published (ms since epoch): gc's grace period counts from it. */
  storedAt: number;
}

/**
 * The port every caller stores blobs through; drivers (fs, memory; s3 next) implement it and
 * pass test/support/blob-store-contract.ts. Nothing outside a driver knows where bytes live.
 *
 * Guarantees: a digest's blob is either absent or complete and verified (writes are staged
 * and published only once their digest checks out); staged bytes are readable through their
 * writer before the commit (followers of a fetch); a handle stays readable after a delete.
 */
export interface BlobStore {
  /**
   * Prepares the store. The serving process owns the staging area and clears what a crash
   * left there (`clearStaging`, the default); tools that may run beside a server pass false.
   */
  init(options?: { clearStaging?: boolean }): Promise<void>;
  stat(digest: Digest): Promise<{ size: number } | undefined>;
  /** A handle on a committed blob, to stream whole or by range (`handle.stream(range)`). */
  open(digest: Digest): Promise<BlobHandle | undefined>;
  /** Small blobs (manifests, configs) read whole; refuses anything over `maxBytes`. */
  readAll(digest: Digest, maxBytes: number): Promise<Buffer | undefined>;
  /** A writer for a blob: of known digest (verified on commit), or of a digest found on commit. */
  createWriter(expected?: Digest, options?: { algorithm?: DigestAlgorithm }): Promise<BlobWriter>;
  /** Stores bytes already in memory (manifests) with the same verification as streams. */
  put(digest: Digest, bytes: Uint8Array): Promise<void>;
  delete(digest: Digest): Promise<boolean>;
  /** Every committed blob, in no particular order (index rebuilds, gc). */
  list(): AsyncIterable<StoredBlob>;
  /**
   * Removes staged writes (temp files, incomplete uploads) older than `olderThanMs` that a
   * crash or a killed process left behind; with `dryRun`, only counts them. Returns the count.
   */
  sweepStaging(options: { olderThanMs: number; dryRun?: boolean; now?: number }): Promise<number>;
  /**
   * Optional: whether a blob of `bytes` (undefined: unknown size) fits in the free space now.
   * A miss that does not fit is streamed to the client without being cached (a full disk).
   */
  hasRoomFor?(bytes: number | undefined): Promise<boolean>;
  /** Readiness: undefined when the store takes a write, else what is wrong. Leaves nothing behind. */
  checkWritable(): Promise<string | undefined>;
  /** Shutdown of the serving process: staged writes that will never commit now are removed. */
  close(): Promise<void>;
}
