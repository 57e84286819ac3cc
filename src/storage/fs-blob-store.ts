// Filesystem BlobStore: blobs/<algorithm>/<2 hex>/<hex>, written under tmp/ and renamed
// into place once verified. rename() is atomic within one filesystem, so a blob path either
// holds complete, verified bytes or does not exist; a crash leaves only tmp/ files, which
// init() removes.
import { constants as fsConstants, createReadStream, read } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { randomUUID, type Hash } from 'node:crypto';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { createDigester, type Digest, type DigestAlgorithm } from '../protocol/digest.js';
import { noteBufferChurn } from '../util/buffer-churn.js';
import { ChangeSignal } from '../util/deferred.js';
import { O_DIRECT } from './direct-io.js';
import { DirectStaging } from './direct-staging.js';
import { FileHasher } from './file-hasher.js';
import { SpareFiles } from './spare-files.js';
import { writeAllAt } from './write-all.js';
import {
  READ_CHUNK_BYTES,
  checkWritten,
  giveReadBuffer,
  takeReadBuffer,
  sliceOfChunks,
  type PositionedChunk,
  type BlobHandle,
  type BlobStore,
  type BlobWriter,
  type ByteRange,
  type StoredBlob,
} from './blob-store.js';

// Free space a miss leaves for everything else (metadata records, the next temp files): a
// blob that would eat into it is streamed through without being cached.
const FREE_SPACE_HEADROOM_BYTES = 4 * 1024 * 1024;

export interface FsBlobStoreOptions {
  /**
   * Keep up to this many bytes of aborted writers' files in tmp/ for later writers to write
   * over (spare-files.ts). The S3 driver's scratch store sets it: every scratch file ends
   * aborted there. Unset or 0: aborted files are deleted.
   */
  spareBytes?: number;
  /**
   * Write temp files through aligned staging blocks with O_DIRECT where the filesystem takes it
   * (direct-staging.ts). Default: true without spareBytes. The S3 driver's scratch store keeps
   * spares and reads its files back for the upload parts, both of which want the page cache.
   */
  directWrites?: boolean;
}

export class FsBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly spares: SpareFiles | undefined;
  private directWrites: boolean;

  constructor(
    readonly root: string,
    options: FsBlobStoreOptions = {},
  ) {
    this.blobsDir = path.join(root, 'blobs');
    this.tmpDir = path.join(root, 'tmp');
    this.spares = (options.spareBytes ?? 0) > 0 ? new SpareFiles(this.tmpDir, options.spareBytes ?? 0) : undefined;
    // Spares are kept for their page-cache pages, which direct writes do without.
    this.directWrites = (options.directWrites ?? this.spares === undefined) && O_DIRECT !== undefined;
  }

  /** Spare files kept for reuse: how many, and the disk they hold. */
  get spareFiles(): { count: number; bytes: number } {
    return { count: this.spares?.count ?? 0, bytes: this.spares?.size ?? 0 };
  }

  /**
   * Prepares the directories. The serving process owns tmp/ and clears what a crash left
   * there; tools that may run beside a server (gc, import) pass `clearStaging: false`.
   */
  async init(options: { clearStaging?: boolean } = {}): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    if (options.clearStaging ?? true) {
      await rm(this.tmpDir, { recursive: true, force: true });
      this.spares?.forget();
    }
    await mkdir(this.tmpDir, { recursive: true });
  }

  /** Where a blob's file is. Private to the driver (and its own tests): callers go through the port. */
  blobPath(digest: Digest): string {
    return path.join(this.blobsDir, digest.algorithm, digest.hex.slice(0, 2), digest.hex);
  }

  async stat(digest: Digest): Promise<{ size: number } | undefined> {
    try {
      const info = await stat(this.blobPath(digest));
      return { size: info.size };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async open(digest: Digest): Promise<BlobHandle | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.blobPath(digest), 'r');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    try {
      const { size } = await handle.stat();
      return new FsBlobHandle(handle, size);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async readAll(digest: Digest, maxBytes: number): Promise<Buffer | undefined> {
    const handle = await this.open(digest);
    if (!handle) return undefined;
    try {
      if (handle.size > maxBytes) throw new Error(`blob ${digest.text} is ${handle.size} bytes, over the ${maxBytes}-byte limit`);
      return await (handle as FsBlobHandle).readFile();
    } finally {
      await handle.close();
    }
  }

  async createWriter(expected?: Digest, options: { algorithm?: DigestAlgorithm } = {}): Promise<BlobWriter> {
    const tempPath = path.join(this.tmpDir, `${expected ? expected.hex.slice(0, 16) : 'upload'}-${randomUUID()}`);
    // w+ (r+ for a spare, written over from byte 0) so followers can read back what was
    // written through the same descriptor, even after the file is renamed into place or unlinked.
    const spareSize = await this.spares?.take(tempPath);
    const handle = await open(tempPath, spareSize === undefined ? 'wx+' : 'r+');
    const spares = this.spares;
    return new FsBlobWriter(expected, expected?.algorithm ?? options.algorithm ?? 'sha256', handle, tempPath, {
      finalPathOf: (d) => this.blobPath(d),
      ...(this.directWrites ? { openDirect: () => this.openDirect(tempPath) } : {}),
      ...(spareSize === undefined ? {} : { spareSize }),
      ...(spares ? { discard: (file: string, size: number) => spares.give(file, size) } : {}),
    });
  }

  /** An O_DIRECT descriptor of a temp file, or undefined where the filesystem refuses them. */
  private async openDirect(tempPath: string): Promise<FileHandle | undefined> {
    if (!this.directWrites || O_DIRECT === undefined) return undefined;
    try {
      return await open(tempPath, fsConstants.O_WRONLY | O_DIRECT);
    } catch (error) {
      // tmpfs and some others refuse O_DIRECT (EINVAL): write through the page cache there.
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      this.directWrites = false;
      return undefined;
    }
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    const writer = await this.createWriter(digest);
    try {
      await writer.write(bytes);
      await writer.commit(bytes.byteLength);
    } catch (error) {
      await writer.abort();
      throw error;
    } finally {
      writer.close();
    }
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      await unlink(this.blobPath(digest));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /**
   * Every committed blob with its size and publication time (the file's mtime: the last
   * write before the rename). Stats run in parallel per directory: a cold start over 100,000
   * blobs is bound by these syscalls.
   */
  async *list(): AsyncGenerator<StoredBlob> {
    for (const algorithm of await readdirOrEmpty(this.blobsDir)) {
      for (const prefix of await readdirOrEmpty(path.join(this.blobsDir, algorithm))) {
        const dir = path.join(this.blobsDir, algorithm, prefix);
        const names = await readdirOrEmpty(dir);
        const infos = await Promise.all(names.map((hex) => stat(path.join(dir, hex)).catch(() => undefined)));
        for (const [i, info] of infos.entries()) {
          if (info?.isFile()) yield { digest: `${algorithm}:${names[i] as string}`, size: info.size, storedAt: info.mtimeMs };
        }
      }
    }
  }

  async sweepStaging(options: { olderThanMs: number; dryRun?: boolean; now?: number }): Promise<number> {
    const now = options.now ?? Date.now();
    let swept = 0;
    for (const name of await readdirOrEmpty(this.tmpDir)) {
      const file = path.join(this.tmpDir, name);
      const info = await stat(file).catch(() => undefined);
      if (!info || now - info.mtimeMs < options.olderThanMs) continue;
      if (!options.dryRun) await rm(file, { recursive: true, force: true });
      swept += 1;
    }
    return swept;
  }

  async hasRoomFor(bytes: number | undefined): Promise<boolean> {
    const roomy = async () => {
      const info = await statfs(this.tmpDir).catch(() => undefined);
      if (!info) return true; // cannot tell: try, and let the write say
      return info.bavail * info.bsize >= (bytes ?? 0) + FREE_SPACE_HEADROOM_BYTES;
    };
    if (await roomy()) return true;
    // Spares are only worth their disk while there is disk to spare.
    if (this.spares === undefined || this.spares.count === 0) return false;
    await this.spares.dropAll();
    return roomy();
  }

  async checkWritable(): Promise<string | undefined> {
    const probe = path.join(this.tmpDir, `ready-${randomUUID()}`);
    try {
      await writeFile(probe, 'ok');
      return undefined;
    } catch (error) {
      return `storage ${this.root} is not writable: ${(error as Error).message}`;
    } finally {
      // Removed even when the write failed half-way (a full disk can leave an empty file).
      await rm(probe, { force: true }).catch(() => undefined);
    }
  }

  /** Fetches still running wrote to temp files that will never be committed now. */
  async close(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    this.spares?.forget();
    await mkdir(this.tmpDir, { recursive: true });
  }
}

class FsBlobHandle implements BlobHandle {
  private closed = false;
  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  stream(range?: ByteRange): Readable {
    this.closed = true; // the stream owns the descriptor from here on
    if (this.size === 0) {
      void this.handle.close();
      return Readable.from([]);
    }
    return createReadStream('', {
      fd: this.handle,
      start: range?.start ?? 0,
      end: range?.end ?? Math.max(0, this.size - 1),
      highWaterMark: READ_CHUNK_BYTES,
      autoClose: true,
    });
  }

  async readFile(): Promise<Buffer> {
    return this.handle.readFile();
  }

  /**
   * Reads into pooled buffers and writes them to `destination`, two in flight (one being
   * read while the other is written). A buffer goes back to the pool once the destination's
   * write callback says it is done with it.
   */
  writeTo(destination: Writable, range?: ByteRange): Promise<void> {
    this.closed = true; // this call owns the descriptor from here on
    const end = range?.end ?? this.size - 1;
    let position = range?.start ?? 0;
    let inFlight = 0;
    let reading = false;
    let settled = false;
    return new Promise<void>((resolve) => {
      const release = () => {
        // Never close while a read is pending: the descriptor number could be reused under it.
        if (reading) return;
        void this.handle
          .close()
          .catch(() => undefined)
          .then(() => resolve());
      };
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        destination.off('close', onClose);
        if (error) destination.destroy(error);
        release();
      };
      const onClose = () => settle();
      destination.on('close', onClose);
      const pump = (): void => {
        if (settled || reading) return;
        // Gone already (a client that hung up before we started, whose 'close' we missed).
        if (destination.destroyed) {
          settle();
          return;
        }
        if (position > end) {
          if (inFlight === 0) {
            destination.end();
            settle();
          }
          return;
        }
        if (inFlight >= 2) return;
        reading = true;
        const buffer = takeReadBuffer();
        read(this.handle.fd, buffer, 0, Math.min(buffer.byteLength, end - position + 1), position, (error, bytesRead) => {
          reading = false;
          if (settled) {
            giveReadBuffer(buffer);
            release();
            return;
          }
          if (error || bytesRead === 0) {
            giveReadBuffer(buffer);
            settle(error ?? new Error(`blob file ended at ${position} of ${this.size} bytes`));
            return;
          }
          position += bytesRead;
          inFlight += 1;
          destination.write(bytesRead === buffer.byteLength ? buffer : buffer.subarray(0, bytesRead), () => {
            inFlight -= 1;
            giveReadBuffer(buffer);
            pump();
          });
          pump();
        });
      };
      pump();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

// Bytes accepted by write() but not yet in the file. Up to this many, write() returns at once
// and the file catches up in the background with one writev per batch: a download keeps
// receiving while the previous batch goes to disk, instead of waiting for a thread-pool round
// trip per network chunk. Past it, write() waits (backpressure). Two batches: one being written
// while the next fills. Not more: a chunk waiting here outlives the scavenges of
// util/buffer-churn.ts, and chunks promoted to the old generation brought back the full
// mark-compacts those scavenges avoid (bench/cold-cpu.ts --trace-gc, a warm-up and three 200 MiB
// misses with the scavenges: 8 MiB ~70 mark-compacts, 2 MiB 5; CPU per miss of the threads
// besides the event loop 1.35 -> 0.85 s, of the event loop 0.66-0.86 -> 0.44-0.46 s).
export const MAX_UNFLUSHED_BYTES = 2 * 1024 * 1024;
// Bytes per writev. Measured (200 MiB of 64 KiB chunks to ext4, CPU of the writing thread):
// 16 buffers per call ~41 ms, 128 per call 121-236 ms: a big batch is long out of the CPU
// cache by the time the kernel copies it. Batches are cut at this size instead of IOV_MAX.
const MAX_BATCH_BYTES = 1024 * 1024;
// writev takes at most IOV_MAX (1024) buffers per call.
const MAX_BATCH_BUFFERS = 512;
// Blobs up to this size are hashed on the event loop as they are written: a thread round trip
// would cost more than the hash (manifests, configs, small layers). Past it the digest is
// computed by a worker thread reading the temp file back (file-hasher.ts): from the first byte,
// the inline hash of the first MiB is dropped.
const INLINE_HASH_BYTES = 1024 * 1024;
// Bytes handed to the hash thread per request. Each request is a message each way between the
// threads, and on this project's 2-CPU VM a message cost the event loop ~0.5 ms (a cold 200 MiB
// miss's CPU profile: ~100 ms in postMessage at one request per 1 MiB batch). Bigger requests
// leave more to hash after the last byte: 4 MiB is ~5 ms at the thread's speed.
const HASH_REQUEST_BYTES = 4 * 1024 * 1024;

class FsBlobWriter implements BlobWriter {
  /** The digest so far, while the blob is small enough to hash inline. */
  private inlineHash: Hash | undefined;
  /** The digest computed off the event loop, once the blob outgrew INLINE_HASH_BYTES. */
  private hasher: FileHasher | undefined;
  /** Bytes of the file handed to the hasher: [0, hashSubmitted). */
  private hashSubmitted = 0;
  /** Bytes hashed and readable (from `unflushed` or the file). */
  private accepted = 0;
  /** Bytes in the file; `unflushed` holds [flushed, accepted) in order. */
  private flushed = 0;
  private unflushed: PositionedChunk[] = [];
  private flushing: Promise<void> | undefined;
  /** Fires when bytes reached the file, writing failed or the writer was aborted. */
  private readonly flushProgress = new ChangeSignal();
  private flushFailure: Error | undefined;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  private closing: Promise<void> | undefined;
  private verified: Digest | undefined;
  /** Why verify() threw the bytes away (a digest or size mismatch), for readers still reading. */
  private rejectedBy: Error | undefined;
  private reopening: Promise<FileHandle> | undefined;
  /** Staging blocks and direct writes (direct-staging.ts), until suspend() or the end. */
  private staging: DirectStaging | undefined;
  /** The O_DIRECT descriptor, opened by the staging's first full block. */
  private directOpening: Promise<FileHandle | undefined> | undefined;

  constructor(
    readonly expected: Digest | undefined,
    private readonly algorithm: DigestAlgorithm,
    private handle: FileHandle | undefined,
    private readonly tempPath: string,
    private readonly lifecycle: {
      finalPathOf: (digest: Digest) => string;
      /** The file is a spare this long (spare-files.ts): bytes past ours are someone else's. */
      spareSize?: number;
      /** Takes the file once aborted, closed and idle, instead of it being deleted. */
      discard?: (file: string, size: number) => Promise<void>;
      /** Opens an O_DIRECT descriptor of the file; given, bytes go through direct-staging.ts. */
      openDirect?: () => Promise<FileHandle | undefined>;
    },
  ) {
    this.inlineHash = createDigester(algorithm);
    if (lifecycle.openDirect) {
      this.staging = new DirectStaging({ buffered: () => this.file(), direct: () => this.openDirectFile() }, () => {
        const hasher = this.hasher;
        return hasher ? (block, length, onDone) => hasher.hashBlock(block, length, onDone) : undefined;
      });
    }
  }

  private get label(): string {
    return this.expected?.text ?? `upload ${path.basename(this.tempPath)}`;
  }

  get bytesWritten(): number {
    return this.accepted;
  }

  /** Keeps a reference to `chunk` until it is in the file: callers must not reuse it. */
  async write(chunk: Uint8Array): Promise<void> {
    await this.writeNow(chunk);
  }

  /**
   * write() without a promise per chunk: the chunk is taken at once, and a promise comes back
   * only when too many bytes wait for the file (wait for it before the next chunk). A cold
   * miss streams ~3,200 chunks per 200 MiB; this is the path it takes (BlobFetch).
   */
  writeNow(chunk: Uint8Array): Promise<void> | undefined {
    this.throwIfFlushFailed();
    if (this.state !== 'open' || this.verified) throw new Error(`write after ${this.verified ? 'verify' : this.state} for ${this.label}`);
    if (chunk.byteLength === 0) return undefined;
    if (this.inlineHash && this.accepted + chunk.byteLength > INLINE_HASH_BYTES) {
      // Too big to hash inline: the worker hashes the file from byte 0 as batches land.
      this.inlineHash = undefined;
      this.hasher = new FileHasher(this.algorithm);
    }
    this.inlineHash?.update(chunk);
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.staging) {
      this.accepted += buffer.byteLength;
      return this.staging.take(buffer);
    }
    this.unflushed.push({ start: this.accepted, chunk: buffer });
    this.accepted += buffer.byteLength;
    this.flushing ??= this.flush();
    return this.accepted - this.flushed > MAX_UNFLUSHED_BYTES ? this.caughtUp() : undefined;
  }

  /** Resolves once the file is back under MAX_UNFLUSHED_BYTES behind; throws if writing failed. */
  private async caughtUp(): Promise<void> {
    while (this.accepted - this.flushed > MAX_UNFLUSHED_BYTES && !this.flushFailure && this.state === 'open') await this.flushProgress.next();
    this.throwIfFlushFailed();
  }

  // A method, not an inline check: TypeScript would keep the field narrowed across awaits.
  private throwIfFlushFailed(): void {
    if (this.flushFailure) throw this.flushFailure;
  }

  /** Writes batches of accepted bytes to the file until none are left (or the writer is aborted). */
  private async flush(): Promise<void> {
    try {
      while (this.unflushed.length > 0 && this.state === 'open') {
        let count = 0;
        let bytes = 0;
        while (count < this.unflushed.length && count < MAX_BATCH_BUFFERS && bytes < MAX_BATCH_BYTES) {
          bytes += (this.unflushed[count] as { chunk: Buffer }).chunk.byteLength;
          count += 1;
        }
        const batch = this.unflushed.slice(0, count);
        const file = await this.file();
        await writeAllAt(
          file,
          batch.map(({ chunk }) => chunk),
          this.flushed,
        );
        this.unflushed.splice(0, batch.length);
        this.flushed += bytes;
        if (this.flushed - this.hashSubmitted >= HASH_REQUEST_BYTES) this.submitHashing(file);
        this.wakeWriters();
      }
    } catch (error) {
      this.flushFailure = error instanceof Error ? error : new Error(String(error));
      this.wakeWriters();
    } finally {
      this.flushing = undefined;
    }
  }

  /**
   * Hands what landed in the file since the last call to the hasher thread, if there is one.
   * Writing calls it every HASH_REQUEST_BYTES; digestHex() hands over the rest.
   */
  private submitHashing(file: FileHandle): void {
    if (!this.hasher || this.hashSubmitted === this.flushed) return;
    this.hasher.hash(file.fd, this.hashSubmitted, this.flushed - this.hashSubmitted);
    this.hashSubmitted = this.flushed;
  }

  /** The hex digest of every accepted byte; all of them must be in the file already. */
  private async digestHex(): Promise<string> {
    if (!this.hasher) return (this.inlineHash as Hash).digest('hex');
    if (this.hashSubmitted !== this.flushed) this.submitHashing(await this.file());
    return this.hasher.digest();
  }

  private wakeWriters(): void {
    this.flushProgress.fire();
  }

  /** Resolves once every accepted byte is in the file; throws if writing failed. */
  private async allFlushed(): Promise<void> {
    if (this.staging) {
      await this.staging.finish();
      // Every block went to the file and, past the inline hash's size, to the hash thread.
      this.flushed = this.accepted;
      if (this.hasher) this.hashSubmitted = this.accepted;
    }
    while (this.flushing) await this.flushing;
    this.throwIfFlushFailed();
  }

  async readAt(position: number, length: number): Promise<Buffer> {
    if (this.staging && this.state !== 'aborted') {
      const buffer = Buffer.allocUnsafe(Math.max(0, Math.min(length, this.accepted - position)));
      noteBufferChurn(buffer.byteLength);
      return this.readInto(buffer, position, length);
    }
    // Bytes not yet in the file come straight from the chunk that holds them.
    if (this.state !== 'aborted' && position >= this.flushed) return sliceOfChunks(this.unflushed, position, length);
    const buffer = Buffer.allocUnsafe(Math.max(0, Math.min(length, this.flushed - position)));
    noteBufferChurn(buffer.byteLength); // garbage once the reader sent it on
    return this.readInto(buffer, position, length);
  }

  async readInto(buffer: Buffer, position: number, length: number): Promise<Buffer> {
    // Aborted: the unflushed bytes are gone, and an empty answer would spin a reader. Followers
    // reading when verify() found a mismatch learn that, not only that the file is gone.
    if (this.state === 'aborted') throw this.rejectedBy ?? new Error(`read after abort for ${this.label}`);
    let fileEnd = this.flushed;
    if (this.staging) {
      const inMemory = this.staging.read(buffer, position, length);
      if (Buffer.isBuffer(inMemory)) return inMemory;
      fileEnd = inMemory.fileEnd;
    } else if (position >= this.flushed) return sliceOfChunks(this.unflushed, position, Math.min(length, buffer.byteLength));
    const wanted = Math.min(length, buffer.byteLength, fileEnd - position);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await (await this.file()).read(buffer, filled, wanted - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  }

  readerAt(position: number): void {
    this.staging?.readerAt(position);
  }

  async verify(expectedSize?: number): Promise<Digest> {
    if (this.verified) return this.verified;
    if (this.state !== 'open') throw new Error(`verify after ${this.state} for ${this.label}`);
    let hex: string;
    try {
      await this.allFlushed();
      hex = await this.digestHex();
    } catch (error) {
      await this.abort();
      throw error;
    }
    const checked = checkWritten(hex, this.algorithm, this.accepted, { label: this.label, digest: this.expected, size: expectedSize });
    if ('error' in checked) {
      this.rejectedBy = checked.error;
      await this.abort();
      throw checked.error;
    }
    const actual = checked.digest;
    this.verified = actual;
    return actual;
  }

  async commit(expectedSize?: number): Promise<Digest> {
    const actual = await this.verify(expectedSize);
    if (this.state !== 'open') throw new Error(`commit after ${this.state} for ${this.label}`);
    const finalPath = this.lifecycle.finalPathOf(actual);
    // A spare longer than the blob would be served with the old tail.
    if ((this.lifecycle.spareSize ?? 0) > this.accepted) await (await this.file()).truncate(this.accepted);
    await mkdir(path.dirname(finalPath), { recursive: true });
    await rename(this.tempPath, finalPath);
    this.state = 'committed';
    return actual;
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.unflushed = [];
    this.staging?.stop();
    this.hasher?.drop();
    this.wakeWriters();
    const discard = this.lifecycle.discard;
    if (discard) {
      // Not before every write and hash read through the descriptor is over: the next writer
      // of a spare must be the only one touching it.
      this.close();
      await this.closing;
      await discard(this.tempPath, Math.max(this.lifecycle.spareSize ?? 0, this.flushed)).catch(() => undefined);
      return;
    }
    await unlink(this.tempPath).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }

  close(): void {
    // A batch still being written must finish before the descriptor goes: a closed (and
    // reused) descriptor number could otherwise receive it.
    // Likewise the hash thread must be done reading through it.
    // The staging's blocks go back to the pool once no write or hash uses them.
    this.closing ??= (this.staging ? this.staging.idle() : this.allFlushed())
      .catch(() => undefined)
      .then(() => this.hasher?.whenIdle())
      .then(() => this.handle?.close())
      .then(() => this.directOpening)
      .then((direct) => direct?.close())
      .catch(() => undefined);
  }

  /** The O_DIRECT descriptor, opened once (undefined where the filesystem refuses O_DIRECT). */
  private async openDirectFile(): Promise<FileHandle | undefined> {
    this.directOpening ??= this.lifecycle.openDirect?.() ?? Promise.resolve(undefined);
    return this.directOpening;
  }

  /** The temp file's descriptor, reopened if suspend() gave it back. */
  private async file(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    if (this.closing) throw new Error(`${this.label} is closed`);
    // One open for concurrent callers (a flush and a read), never two descriptors.
    this.reopening ??= open(this.tempPath, 'r+').finally(() => (this.reopening = undefined));
    this.handle = await this.reopening;
    return this.handle;
  }

  /**
   * Writes out the buffered bytes and closes the descriptor until the next write: an idle
   * upload session holds no descriptor (issue 14: a thousand idle sessions starved pulls).
   */
  async suspend(): Promise<void> {
    await this.allFlushed();
    if (this.staging) {
      // From here on the upload is written through the page cache like any writer's: a resumed
      // upload starts at an unaligned offset, and a session with no descriptor reopens one.
      this.staging = undefined;
      const direct = await this.directOpening;
      this.directOpening = undefined;
      await direct?.close();
    }
    await this.hasher?.whenIdle();
    const handle = this.handle;
    if (!handle || this.flushing) return;
    this.handle = undefined;
    await handle.close();
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}
