// Blob upload sessions (OCI Distribution "push"): POST opens one, PATCH appends chunks in
// order, PUT ?digest= closes it. Bytes stream into a BlobWriter (temp file, hashed as they
// arrive); the blob is published only if the digest the client names checks out. Sessions
// idle past a timeout are aborted and their temp files removed.
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { parseDigest, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import type { BlobStore, BlobWriter } from '../storage/blob-store.js';

interface Session {
  id: string;
  repository: string;
  writer: BlobWriter;
  lastActivity: number;
  /** A request is writing: a second concurrent chunk would interleave bytes. */
  busy: boolean;
}

export interface UploadStatus {
  id: string;
  repository: string;
  /** Bytes received so far; the next chunk must start here. */
  offset: number;
}

export interface UploadOptions {
  now?: () => number;
  /**
   * Runs once the bytes are verified and before they are published under their digest: pushes
   * mark their content private here, so a crash at any point leaves it invisible or marked,
   * never readable through a mirrored name unmarked.
   */
  beforePublish?: (digest: Digest, size: number) => Promise<void>;
}

export class UploadSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly beforePublish: (digest: Digest, size: number) => Promise<void>;

  constructor(
    private readonly blobs: BlobStore,
    private readonly idleTimeoutMs: number,
    options: UploadOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.beforePublish = options.beforePublish ?? (() => Promise.resolve());
    this.sweeper = setInterval(() => void this.sweep(), Math.min(idleTimeoutMs, 60_000));
    this.sweeper.unref();
  }

  async start(repository: string): Promise<UploadStatus> {
    const writer = await this.blobs.createWriter();
    const session: Session = { id: randomUUID(), repository, writer, lastActivity: this.now(), busy: false };
    this.sessions.set(session.id, session);
    return this.status(repository, session.id);
  }

  status(repository: string, id: string): UploadStatus {
    const session = this.get(repository, id);
    return { id, repository, offset: session.writer.bytesWritten };
  }

  /**
   * Appends a chunk. `range` is the Content-Range the client sent, if any: it must start
   * where the upload stands (416 otherwise: out of order or repeated).
   */
  async append(repository: string, id: string, body: Readable, range?: { start: number; end: number }, declaredLength?: number): Promise<UploadStatus> {
    const session = this.get(repository, id);
    const offset = session.writer.bytesWritten;
    if (range && range.start !== offset) {
      throw new RegistryError('RANGE_INVALID', `chunk starts at ${range.start}, but the upload stands at ${offset}`, {
        status: 416,
        headers: { range: `0-${Math.max(offset - 1, 0)}`, 'docker-upload-uuid': id },
      });
    }
    if (session.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is still being received');
    session.busy = true;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) await session.writer.write(chunk);
    } catch (error) {
      await this.discard(session);
      throw new RegistryError('BLOB_UPLOAD_INVALID', `upload ${id} broke off while receiving a chunk: ${(error as Error).message}`);
    } finally {
      session.busy = false;
      session.lastActivity = this.now();
    }
    const received = session.writer.bytesWritten - offset;
    const expected = range ? range.end - range.start + 1 : declaredLength;
    if (expected !== undefined && received !== expected) {
      await this.discard(session);
      // A body that does not match its own Content-Range/Length is a bad request (400), not an
      // out-of-order chunk (416, which tells the client to resume elsewhere).
      throw new RegistryError('SIZE_INVALID', `chunk of ${received} bytes, but ${expected} were declared`);
    }
    return { id, repository, offset: session.writer.bytesWritten };
  }

  /** Closes the upload: the bytes must hash to `digestText`. Returns the stored digest and size. */
  async finish(repository: string, id: string, digestText: string): Promise<{ digest: Digest; size: number }> {
    const session = this.get(repository, id);
    const digest = parseDigest(digestText);
    this.sessions.delete(id);
    try {
      const size = session.writer.bytesWritten;
      const actual = await session.writer.verify();
      if (actual.text !== digest.text) {
        await session.writer.abort();
        throw new RegistryError('DIGEST_INVALID', `uploaded content has digest ${actual.text}, not ${digest.text}`, { detail: { digest: digest.text } });
      }
      try {
        await this.beforePublish(actual, size);
      } catch (error) {
        await session.writer.abort();
        throw error;
      }
      await session.writer.commit();
      return { digest, size };
    } finally {
      session.writer.close();
    }
  }

  async cancel(repository: string, id: string): Promise<void> {
    await this.discard(this.get(repository, id));
  }

  /** Aborts sessions idle longer than the timeout. */
  async sweep(): Promise<number> {
    let swept = 0;
    for (const session of [...this.sessions.values()]) {
      if (!session.busy && this.now() - session.lastActivity > this.idleTimeoutMs) {
        await this.discard(session);
        swept += 1;
      }
    }
    return swept;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const session of [...this.sessions.values()]) await this.discard(session);
  }

  private get(repository: string, id: string): Session {
    const session = this.sessions.get(id);
    if (!session || session.repository !== repository) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} is unknown, finished or expired`, { detail: { uuid: id } });
    }
    return session;
  }

  private async discard(session: Session): Promise<void> {
    this.sessions.delete(session.id);
    await session.writer.abort().catch(() => undefined);
    session.writer.close();
  }
}
