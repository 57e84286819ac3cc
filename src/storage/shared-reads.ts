// Concurrent hits of one object share one GET. A fleet rolling out an image pulls the same
// layers from every node at once; without sharing, each of N clients is its own GET of the
// object, and the object store serves N copies (on an on-premises store that is the limit: a
// single Swift proxy serves ~190 MB/s of multipart objects in all on this project's machine,
// however many clients share it). A hit of a blob nobody else is reading streams its GET alone.
// A hit that comes while another whole read of the blob is under way starts a shared read: its
// GET's bytes go into a scratch file, and every hit of that blob arriving while it is in
// progress reads the file as it grows, as followers of a cold fetch do
// (storage/growing-blob.ts). N concurrent clients cost two GETs, not N.
//
// The scratch copy is checked against the digest as it lands, and each reader's final byte
// waits for that check: an object corrupted in the bucket, or a GET cut short, ends every
// reader's response aborted. The file is deleted when the last reader is done; nothing of it
// outlives the reads, and it is never published anywhere.
import type { Readable, Writable } from 'node:stream';
import type { Digest } from '../protocol/digest.js';
import { noteBufferChurn } from '../util/buffer-churn.js';
import { ChangeSignal } from '../util/deferred.js';
import { readIntoBuffer, type BlobHandle, type BlobStore, type BlobWriter, type ByteRange } from './blob-store.js';
import { FollowingReader, receiveBody, writeFollowing, type FollowedBlob } from './growing-blob.js';

/** Below this, a second GET costs less than a scratch file and its digest check. */
export const SHARED_READ_MIN_BYTES = 1024 * 1024;

/** Where shared reads keep their bytes: a local blob store whose writers are never committed. */
export type ScratchStore = Pick<BlobStore, 'createWriter' | 'hasRoomFor'>;

export class SharedReads {
  private readonly reads = new Map<string, SharedRead>();
  /** Whole reads of a blob sent alone, by digest: a hit coming meanwhile starts a shared read. */
  private readonly alone = new Map<string, number>();

  constructor(private readonly scratch: ScratchStore) {}

  /** Shared reads in progress (their GET running, or readers still reading the file). */
  get count(): number {
    return this.reads.size;
  }

  /** A handle that follows the shared read of `digest` in progress; undefined when none is. */
  join(digest: Digest): SharedReadHandle | undefined {
    const read = this.reads.get(digest.text);
    if (!read) return undefined;
    read.hold();
    return new SharedReadHandle(read);
  }

  /**
   * How a whole read of the object (`body`, a GET of its `size` bytes) goes. Alone (`body` is
   * the caller's to send; call `alone()` when finished) while nothing else reads the blob: a lone
   * hit pays no scratch file and no digest check (on this project's VM those took a 200 MiB hit
   * from 0.43 to 1.02 s of CPU, and from 164 to 130 MB/s). Shared when another whole read of the
   * blob is under way: the read in progress is joined, or, if that one is a lone read, a shared
   * read starts from `body` for this hit and every later one; `body` is dropped when joining.
   * Alone as well when the blob is small or the scratch directory has no room for it.
   */
  async claim(digest: Digest, body: Readable, size: number): Promise<{ shared: SharedReadHandle } | { alone: () => void }> {
    const running = this.join(digest);
    if (running) {
      body.destroy();
      return { shared: running };
    }
    if (size >= SHARED_READ_MIN_BYTES && (this.alone.get(digest.text) ?? 0) > 0 && (!this.scratch.hasRoomFor || (await this.scratch.hasRoomFor(size)))) {
      const startedMeanwhile = this.join(digest);
      if (startedMeanwhile) {
        body.destroy();
        return { shared: startedMeanwhile };
      }
      const read = new SharedRead(digest, size, () => {
        if (this.reads.get(digest.text) === read) this.reads.delete(digest.text);
      });
      this.reads.set(digest.text, read);
      void read.run(this.scratch, body);
      return { shared: new SharedReadHandle(read) };
    }
    this.alone.set(digest.text, (this.alone.get(digest.text) ?? 0) + 1);
    let counted = true;
    return {
      alone: () => {
        if (!counted) return;
        counted = false;
        const left = (this.alone.get(digest.text) ?? 1) - 1;
        if (left > 0) this.alone.set(digest.text, left);
        else this.alone.delete(digest.text);
      },
    };
  }

  /**
   * The object was deleted: an open from now on must not find it through a read in progress
   * (whose readers still get every byte, as a handle opened before a delete does).
   */
  forget(digest: Digest): void {
    this.reads.delete(digest.text);
  }

  /** Shutdown: every GET still running is stopped (its readers fail), its file removed. */
  close(): void {
    for (const read of this.reads.values()) read.stop();
    this.reads.clear();
  }
}

class SharedRead implements FollowedBlob {
  failed: Error | undefined;
  verified = false;
  recent: { start: number; chunk: Buffer } | undefined;
  private writer: BlobWriter | undefined;
  /** The GET's body while it is being received. */
  private body: Readable | undefined;
  /** The handle claim() answers holds it from the start; every join adds one. */
  private holds = 1;
  private released = false;
  private readonly progress = new ChangeSignal();

  constructor(
    readonly digest: Digest,
    readonly size: number,
    /** Takes the read out of the registry: nobody joins it from then on. */
    private readonly unlist: () => void,
  ) {}

  get bytesWritten(): number {
    return this.writer?.bytesWritten ?? 0;
  }

  /** Readers only ask for bytes below bytesWritten, so the writer exists by then. */
  readAt(position: number, length: number): Promise<Buffer> {
    if (!this.writer) return Promise.reject(new Error(`shared read of ${this.digest.text} has no bytes yet`));
    return this.writer.readAt(position, length);
  }

  readInto(buffer: Buffer, position: number, length: number): Promise<Buffer> {
    if (!this.writer) return Promise.reject(new Error(`shared read of ${this.digest.text} has no bytes yet`));
    return readIntoBuffer(this.writer, buffer, position, length);
  }

  async run(scratch: ScratchStore, body: Readable): Promise<void> {
    this.body = body;
    try {
      const writer = await scratch.createWriter(this.digest);
      this.writer = writer;
      // Every reader left (or the store closed) while the file was being created.
      if (this.holds === 0 || body.destroyed) throw new Error(`shared read of ${this.digest.text} stopped before it began`);
      await receiveBody(body, writer, `S3 GET of ${this.digest.text}`, (start, chunk) => {
        noteBufferChurn(chunk.byteLength);
        if (start + chunk.byteLength > this.size) throw new Error(`S3 sent more than the ${this.size} bytes of ${this.digest.text}`);
        this.recent = { start, chunk };
        this.notify();
      });
      // The size and the digest: a mismatch aborts the writer, and the readers fail below.
      await writer.verify(this.size);
      this.verified = true;
    } catch (error) {
      this.failed = error instanceof Error ? error : new Error(String(error));
      this.unlist();
      body.destroy();
    } finally {
      this.body = undefined;
      this.notify();
      if (this.holds === 0) this.release();
    }
  }

  hold(): void {
    this.holds += 1;
  }

  leave(): void {
    this.holds -= 1;
    if (this.holds > 0) return;
    this.unlist();
    // Still receiving: run() stops on the destroyed body and releases then.
    if (this.body) this.body.destroy();
    else this.release();
  }

  stop(): void {
    this.body?.destroy();
  }

  /** Gives up the scratch file (deleted, or kept as a spare: spare-files.ts) once readers are done. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    const writer = this.writer;
    if (!writer) return;
    void writer
      .abort()
      .catch(() => undefined)
      .then(() => writer.close());
  }

  changed(): Promise<void> {
    return this.progress.next();
  }

  private notify(): void {
    this.progress.fire();
  }
}

/** One reader's hold on a shared read: stream() or writeTo() takes it over, close() gives it back. */
export class SharedReadHandle implements BlobHandle {
  private taken = false;

  constructor(private readonly read: SharedRead) {}

  get size(): number {
    return this.read.size;
  }

  stream(range?: ByteRange): Readable {
    this.take();
    return new FollowingReader(this.read, this.read, range);
  }

  writeTo(destination: Writable, range?: ByteRange): Promise<void> {
    this.take();
    return writeFollowing(this.read, this.read, destination, range);
  }

  private take(): void {
    if (this.taken) throw new Error(`handle on the shared read of ${this.read.digest.text} already used or closed`);
    this.taken = true;
  }

  close(): Promise<void> {
    if (!this.taken) {
      this.taken = true;
      this.read.leave();
    }
    return Promise.resolve();
  }
}
