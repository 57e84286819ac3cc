// Blob upload sessions (OCI Distribution "push"): POST opens one, PATCH appends chunks in
// order, PUT ?digest= closes it. Bytes stream into a BlobWriter (temp file, hashed as they
// arrive); the blob is published only if the digest the client names checks out. Sessions
// idle past a timeout are aborted and their temp files removed.
//
// What a pusher can hold is bounded (issue 14): sessions per user and in total
// (storage.uploads.*, 429 past them), and an idle session holds no file descriptor (the
// writer is suspended between chunks), so pushes never starve pulls of descriptors.
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { parseDigest, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import type { BlobStore } from '../storage/blob-store.js';
import { isStorageRefusal, storageError } from '../storage/refusal.js';
import { StagedPush, type BeforeVisible } from './staged-push.js';

/** How long a client refused for the session bound is asked to wait before trying again. */
export const SESSION_BOUND_RETRY_AFTER_SECONDS = 10;
/** The owner of sessions opened without a user (only where policy lets anonymous clients push). */
const ANONYMOUS_OWNER = '';

interface Session {
  id: string;
  repository: string;
  /** Who opened it: the per-user bound counts these. */
  owner: string;
  staged: StagedPush;
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

export interface UploadLimits {
  /** storage.uploads.maxSessions: open sessions of all users together. */
  maxSessions: number;
  /** storage.uploads.maxSessionsPerUser: open sessions of one user. */
  maxSessionsPerUser: number;
}

export interface UploadOptions {
  now?: () => number;
  limits?: UploadLimits;
  /**
   * Runs once the bytes are verified and before they are published under their digest: pushes
   * mark their content private here, so a crash at any point leaves it invisible or marked,
   * never readable through a mirrored name unmarked.
   */
  beforePublish?: BeforeVisible;
}

export class UploadSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly beforePublish: BeforeVisible | undefined;
  private readonly limits: UploadLimits;
  /** Open sessions per owner, for the per-user bound. */
  private readonly perOwner = new Map<string, number>();
  /** Open sessions plus those being opened (the total bound counts both). */
  private slotsTaken = 0;

  constructor(
    private readonly blobs: BlobStore,
    private readonly idleTimeoutMs: number,
    options: UploadOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.beforePublish = options.beforePublish;
    this.limits = options.limits ?? { maxSessions: Number.POSITIVE_INFINITY, maxSessionsPerUser: Number.POSITIVE_INFINITY };
    this.sweeper = setInterval(() => void this.sweep(), Math.min(idleTimeoutMs, 60_000));
    this.sweeper.unref();
  }

  /** Open sessions (all users). */
  get count(): number {
    return this.sessions.size;
  }

  /**
   * Opens a session for `owner` (the authenticated user). Past storage.uploads.maxSessions or
   * maxSessionsPerUser: 429 TOOMANYREQUESTS with Retry-After, before anything is created.
   */
  async start(repository: string, owner = ANONYMOUS_OWNER): Promise<UploadStatus> {
    const owned = this.perOwner.get(owner) ?? 0;
    if (owned >= this.limits.maxSessionsPerUser) {
      throw tooManySessions(`${owner} has ${owned} unfinished uploads, the most one user may have (storage.uploads.maxSessionsPerUser); finish or cancel one`);
    }
    if (this.slotsTaken >= this.limits.maxSessions) {
      throw tooManySessions(`${this.slotsTaken} uploads are in progress, the most this registry takes (storage.uploads.maxSessions); retry later`);
    }
    // Counted before the await, so concurrent POSTs cannot overshoot the bounds.
    const id = randomUUID();
    this.perOwner.set(owner, owned + 1);
    this.slotsTaken += 1;
    let staged: StagedPush;
    try {
      staged = await StagedPush.open(this.blobs);
      await staged.suspend();
    } catch (error) {
      this.release(owner);
      throw storageError(error, 'cannot start an upload');
    }
    this.sessions.set(id, { id, repository, owner, staged, lastActivity: this.now(), busy: false });
    return { id, repository, offset: 0 };
  }

  status(repository: string, id: string): UploadStatus {
    const session = this.get(repository, id);
    return { id, repository, offset: session.staged.bytesWritten };
  }

  /**
   * Appends a chunk. `range` is the Content-Range the client sent, if any: it must start
   * where the upload stands (416 otherwise: out of order or repeated).
   */
  async append(repository: string, id: string, body: Readable, range?: { start: number; end: number }, declaredLength?: number): Promise<UploadStatus> {
    const session = this.get(repository, id);
    const offset = session.staged.bytesWritten;
    if (range && range.start !== offset) {
      throw new RegistryError('RANGE_INVALID', `chunk starts at ${range.start}, but the upload stands at ${offset}`, {
        status: 416,
        headers: { range: `0-${Math.max(offset - 1, 0)}`, 'docker-upload-uuid': id },
      });
    }
    if (session.busy) throw new RegistryError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is still being received');
    session.busy = true;
    try {
      await session.staged.receive(body as AsyncIterable<Buffer>);
      // Between chunks the session holds no descriptor; the next PATCH reopens the file.
      await session.staged.suspend();
    } catch (error) {
      await this.discard(session);
      if (isStorageRefusal(error)) throw storageError(error, `upload ${id} was dropped`);
      throw new RegistryError('BLOB_UPLOAD_INVALID', `upload ${id} broke off while receiving a chunk: ${(error as Error).message}`);
    } finally {
      session.busy = false;
      session.lastActivity = this.now();
    }
    const received = session.staged.bytesWritten - offset;
    const expected = range ? range.end - range.start + 1 : declaredLength;
    if (expected !== undefined && received !== expected) {
      await this.discard(session);
      // A body that does not match its own Content-Range/Length is a bad request (400), not an
      // out-of-order chunk (416, which tells the client to resume elsewhere).
      throw new RegistryError('SIZE_INVALID', `chunk of ${received} bytes, but ${expected} were declared`);
    }
    return { id, repository, offset: session.staged.bytesWritten };
  }

  /** Closes the upload: the bytes must hash to `digestText`. Returns the stored digest and size. */
  async finish(repository: string, id: string, digestText: string): Promise<{ digest: Digest; size: number }> {
    const session = this.get(repository, id);
    const digest = parseDigest(digestText);
    this.forget(session);
    try {
      return await session.staged.publish({ claimed: digest, ...(this.beforePublish ? { beforeVisible: this.beforePublish } : {}) });
    } catch (error) {
      throw storageError(error, `upload ${id} could not be stored`);
    } finally {
      session.staged.close();
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

  /** Removes a session from the books (its slot is free again); idempotent. */
  private forget(session: Session): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.release(session.owner);
  }

  private release(owner: string): void {
    this.slotsTaken -= 1;
    const owned = (this.perOwner.get(owner) ?? 1) - 1;
    if (owned > 0) this.perOwner.set(owner, owned);
    else this.perOwner.delete(owner);
  }

  private async discard(session: Session): Promise<void> {
    this.forget(session);
    await session.staged.abort();
    session.staged.close();
  }
}

function tooManySessions(message: string): RegistryError {
  return new RegistryError('TOOMANYREQUESTS', message, { headers: { 'retry-after': String(SESSION_BOUND_RETRY_AFTER_SECONDS) } });
}
