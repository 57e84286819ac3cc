// In-memory BlobStore: for fast unit tests of the engine, and a second driver that keeps the
// port honest (the contract suite runs on both). Same guarantees as the fs driver: staged
// bytes are invisible until their digest checks out, readable through their writer before,
// and a handle keeps its bytes after a delete. Not for production: everything is in memory.
import type { Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createDigester, type Digest, type DigestAlgorithm } from '../protocol/digest.js';
import {
  checkWritten,
  sliceOfChunks,
  type PositionedChunk,
  READ_CHUNK_BYTES,
  type BlobHandle,
  type BlobStore,
  type BlobWriter,
  type ByteRange,
  type StoredBlob,
} from './blob-store.js';

interface Committed {
  bytes: Buffer;
  storedAt: number;
}

export class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<string, Committed>();
  private readonly staged = new Set<MemoryBlobWriter>();

  constructor(private readonly now: () => number = Date.now) {}

  init(options: { clearStaging?: boolean } = {}): Promise<void> {
    if (options.clearStaging ?? true) this.abortStaged(() => true);
    return Promise.resolve();
  }

  stat(digest: Digest): Promise<{ size: number } | undefined> {
    const blob = this.blobs.get(digest.text);
    return Promise.resolve(blob ? { size: blob.bytes.byteLength } : undefined);
  }

  open(digest: Digest): Promise<BlobHandle | undefined> {
    const blob = this.blobs.get(digest.text);
    return Promise.resolve(blob ? new MemoryBlobHandle(blob.bytes) : undefined);
  }

  readAll(digest: Digest, maxBytes: number): Promise<Buffer | undefined> {
    const blob = this.blobs.get(digest.text);
    if (!blob) return Promise.resolve(undefined);
    if (blob.bytes.byteLength > maxBytes) return Promise.reject(new Error(`blob ${digest.text} is ${blob.bytes.byteLength} bytes, over the ${maxBytes}-byte limit`));
    return Promise.resolve(Buffer.from(blob.bytes));
  }

  createWriter(expected?: Digest, options: { algorithm?: DigestAlgorithm } = {}): Promise<BlobWriter> {
    const writer = new MemoryBlobWriter(expected, expected?.algorithm ?? options.algorithm ?? 'sha256', this.now, {
      publish: (digest, bytes) => {
        // A second writer of the same content finds it there already: same bytes, keep the first.
        if (!this.blobs.has(digest.text)) this.blobs.set(digest.text, { bytes, storedAt: this.now() });
      },
      settled: () => this.staged.delete(writer),
    });
    this.staged.add(writer);
    return Promise.resolve(writer);
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    const writer = await this.createWriter(digest);
    try {
      await writer.write(Buffer.from(bytes)); // a copy: the caller may reuse its buffer
      await writer.commit(bytes.byteLength);
    } catch (error) {
      await writer.abort();
      throw error;
    } finally {
      writer.close();
    }
  }

  delete(digest: Digest): Promise<boolean> {
    return Promise.resolve(this.blobs.delete(digest.text));
  }

  async *list(): AsyncGenerator<StoredBlob> {
    for (const [digest, blob] of [...this.blobs.entries()]) {
      await Promise.resolve();
      yield { digest, size: blob.bytes.byteLength, storedAt: blob.storedAt };
    }
  }

  sweepStaging(options: { olderThanMs: number; dryRun?: boolean; now?: number }): Promise<number> {
    const now = options.now ?? this.now();
    return Promise.resolve(this.abortStaged((writer) => now - writer.lastWriteAt >= options.olderThanMs, options.dryRun));
  }

  checkWritable(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  close(): Promise<void> {
    this.abortStaged(() => true);
    return Promise.resolve();
  }

  private abortStaged(which: (writer: MemoryBlobWriter) => boolean, dryRun = false): number {
    const chosen = [...this.staged].filter(which);
    if (!dryRun) for (const writer of chosen) void writer.abort();
    return chosen.length;
  }
}

class MemoryBlobHandle implements BlobHandle {
  constructor(private readonly bytes: Buffer) {}

  get size(): number {
    return this.bytes.byteLength;
  }

  stream(range?: ByteRange): Readable {
    const start = range?.start ?? 0;
    const end = range?.end ?? this.bytes.byteLength - 1;
    const view = this.bytes.subarray(start, end + 1);
    const chunks: Buffer[] = [];
    for (let at = 0; at < view.byteLength; at += READ_CHUNK_BYTES) chunks.push(view.subarray(at, at + READ_CHUNK_BYTES));
    return Readable.from(chunks, { objectMode: false });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

class MemoryBlobWriter implements BlobWriter {
  private readonly hash: Hash;
  private readonly chunks: PositionedChunk[] = [];
  private written = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  private verified: Digest | undefined;
  lastWriteAt: number;

  constructor(
    readonly expected: Digest | undefined,
    private readonly algorithm: DigestAlgorithm,
    private readonly now: () => number,
    private readonly store: { publish(digest: Digest, bytes: Buffer): void; settled(): void },
  ) {
    this.hash = createDigester(algorithm);
    this.lastWriteAt = now();
  }

  private get label(): string {
    return this.expected?.text ?? 'upload';
  }

  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open' || this.verified) return Promise.reject(new Error(`write after ${this.verified ? 'verify' : this.state} for ${this.label}`));
    this.hash.update(chunk);
    if (chunk.byteLength > 0) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      this.chunks.push({ start: this.written, chunk: buffer });
      this.written += buffer.byteLength;
    }
    this.lastWriteAt = this.now();
    return Promise.resolve();
  }

  readAt(position: number, length: number): Promise<Buffer> {
    if (this.state === 'aborted') return Promise.reject(new Error(`read after abort for ${this.label}`));
    return Promise.resolve(sliceOfChunks(this.chunks, position, length));
  }

  async verify(expectedSize?: number): Promise<Digest> {
    if (this.verified) return this.verified;
    if (this.state !== 'open') throw new Error(`verify after ${this.state} for ${this.label}`);
    const checked = checkWritten(this.hash, this.algorithm, this.written, { label: this.label, digest: this.expected, size: expectedSize });
    if ('error' in checked) {
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
    this.store.publish(
      actual,
      Buffer.concat(
        this.chunks.map((c) => c.chunk),
        this.written,
      ),
    );
    this.state = 'committed';
    this.store.settled();
    return actual;
  }

  abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      this.chunks.length = 0;
      this.store.settled();
    }
    return Promise.resolve();
  }

  close(): void {
    // Nothing to release: the bytes go with the writer once nobody references it.
  }
}
