// Filesystem BlobStore: blobs/<algorithm>/<2 hex>/<hex>, written under tmp/ and renamed
// into place once verified. rename() is atomic within one filesystem, so a blob path either
// holds complete, verified bytes or does not exist; a crash leaves only tmp/ files, which
// init() removes.
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomUUID, type Hash } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createDigester, type Digest, type DigestAlgorithm } from '../protocol/digest.js';
import {
  READ_CHUNK_BYTES,
  DigestMismatchError,
  SizeMismatchError,
  type BlobHandle,
  type BlobStore,
  type BlobWriter,
  type ByteRange,
} from './blob-store.js';


export class FsBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.blobsDir = path.join(root, 'blobs');
    this.tmpDir = path.join(root, 'tmp');
  }

  /**
   * Prepares the directories. The serving process owns tmp/ and clears what a crash left
   * there; tools that may run beside a server (gc, import) pass `clearTemp: false`.
   */
  async init(options: { clearTemp?: boolean } = {}): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    if (options.clearTemp ?? true) await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

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
    // w+ so followers can read back what was written through the same descriptor, even
    // after the file is renamed into place or unlinked.
    const handle = await open(tempPath, 'wx+');
    return new FsBlobWriter(expected, expected?.algorithm ?? options.algorithm ?? 'sha256', handle, tempPath, (d) => this.blobPath(d));
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
   * Every committed blob with its size and mtime (the cache index keeps access order in
   * mtime), for index rebuilds and garbage collection. Stats run in parallel per directory:
   * a cold start over 100,000 blobs is bound by these syscalls.
   */
  async *list(): AsyncGenerator<{ digest: string; size: number; mtimeMs: number }> {
    for (const algorithm of await readdirOrEmpty(this.blobsDir)) {
      for (const prefix of await readdirOrEmpty(path.join(this.blobsDir, algorithm))) {
        const dir = path.join(this.blobsDir, algorithm, prefix);
        const names = await readdirOrEmpty(dir);
        const infos = await Promise.all(names.map((hex) => stat(path.join(dir, hex)).catch(() => undefined)));
        for (const [i, info] of infos.entries()) {
          if (info?.isFile()) yield { digest: `${algorithm}:${names[i] as string}`, size: info.size, mtimeMs: info.mtimeMs };
        }
      }
    }
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

class FsBlobWriter implements BlobWriter {
  private readonly hash: Hash;
  private written = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  private closing: Promise<void> | undefined;
  private verified: Digest | undefined;

  constructor(
    readonly expected: Digest | undefined,
    private readonly algorithm: DigestAlgorithm,
    private readonly handle: FileHandle,
    private readonly tempPath: string,
    private readonly finalPathOf: (digest: Digest) => string,
  ) {
    this.hash = createDigester(algorithm);
  }

  private get label(): string {
    return this.expected?.text ?? `upload ${path.basename(this.tempPath)}`;
  }

  get bytesWritten(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open' || this.verified) throw new Error(`write after ${this.verified ? 'verify' : this.state} for ${this.label}`);
    this.hash.update(chunk);
    let offset = 0;
    while (offset < chunk.byteLength) {
      const { bytesWritten } = await this.handle.write(chunk, offset, chunk.byteLength - offset, this.written + offset);
      offset += bytesWritten;
    }
    this.written += chunk.byteLength;
  }

  async readAt(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(Math.min(length, Math.max(0, this.written - position)));
    let filled = 0;
    while (filled < buffer.byteLength) {
      const { bytesRead } = await this.handle.read(buffer, filled, buffer.byteLength - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === buffer.byteLength ? buffer : buffer.subarray(0, filled);
  }

  async verify(expectedSize?: number): Promise<Digest> {
    if (this.verified) return this.verified;
    if (this.state !== 'open') throw new Error(`verify after ${this.state} for ${this.label}`);
    const hex = this.hash.digest('hex');
    const actual: Digest = { algorithm: this.algorithm, hex, text: `${this.algorithm}:${hex}` };
    if (expectedSize !== undefined && expectedSize !== this.written) {
      await this.abort();
      throw new SizeMismatchError(this.label, expectedSize, this.written);
    }
    if (this.expected && actual.text !== this.expected.text) {
      await this.abort();
      throw new DigestMismatchError(this.expected.text, actual.text, this.written);
    }
    this.verified = actual;
    return actual;
  }

  async commit(expectedSize?: number): Promise<Digest> {
    const actual = await this.verify(expectedSize);
    if (this.state !== 'open') throw new Error(`commit after ${this.state} for ${this.label}`);
    const finalPath = this.finalPathOf(actual);
    await mkdir(path.dirname(finalPath), { recursive: true });
    await rename(this.tempPath, finalPath);
    this.state = 'committed';
    return actual;
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await unlink(this.tempPath).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }

  close(): void {
    this.closing ??= this.handle.close().catch(() => undefined);
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
