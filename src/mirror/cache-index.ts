// The size bound on mirrored content: a least-recently-used index over every cached blob
// (layers, configs and manifests alike) that deletes what falls off its end.
//
// - Recency survives restarts without a journal: a hit bumps the blob file's mtime, and
//   rebuild() orders the blobs by mtime. A crash loses nothing but the last second of order.
// - Private blobs (pushed here) are never in the index, never evicted, and do not count.
// - An evicted blob is unlinked; anyone reading it keeps their open descriptor, so a download
//   in progress finishes, and the disk space is freed when the last reader closes.
import { utimes } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { parseDigest } from '../protocol/digest.js';
import type { FsBlobStore } from '../storage/fs-blob-store.js';
import type { PrivateBlobs } from '../storage/private-blobs.js';

interface Entry {
  size: number;
  /** When the file's mtime was last bumped (ms); bumps are at most once a second. */
  touchedAt: number;
}

const TOUCH_INTERVAL_MS = 1000;

export interface CacheStats {
  mirrored: { bytes: number; objects: number };
  private: { bytes: number; objects: number };
  evictions: number;
}

export class CacheIndex {
  private readonly entries: LRUCache<string, Entry>;
  private evictionCount = 0;
  /** Called for each evicted digest after its file is gone (manifest caches forget it). */
  onEvicted: (digest: string) => void = () => undefined;

  constructor(
    private readonly blobs: FsBlobStore,
    private readonly privateBlobs: PrivateBlobs,
    readonly maxBytes: number | undefined,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new LRUCache<string, Entry>({
      // No bound configured: track recency and size anyway (for metrics and gc), evict nothing.
      maxSize: maxBytes ?? Number.MAX_SAFE_INTEGER,
      sizeCalculation: (entry) => Math.max(1, entry.size),
      dispose: (_entry, digest, reason) => {
        if (reason === 'evict') this.evict(digest);
      },
    });
  }

  /** Loads every mirrored blob on disk, oldest access first, so the order is as before. */
  async rebuild(): Promise<void> {
    const found: Array<{ digest: string; size: number; mtimeMs: number }> = [];
    for await (const blob of this.blobs.list()) {
      if (!this.privateBlobs.has(blob.digest)) found.push(blob);
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const blob of found) this.entries.set(blob.digest, { size: blob.size, touchedAt: blob.mtimeMs });
  }

  /** A newly cached mirrored blob; may push older ones out. */
  added(digest: string, size: number): void {
    if (this.privateBlobs.has(digest)) return;
    this.entries.set(digest, { size, touchedAt: this.now() });
    if (!this.entries.has(digest)) {
      // Larger than the whole bound: it was served, but it cannot stay.
      this.log.warn({ digest, size, maxBytes: this.maxBytes }, 'blob larger than storage.cache.maxBytes; not kept');
      this.evict(digest);
    }
  }

  /** A cache hit: most recently used now, on disk too (throttled). */
  touched(digest: string): void {
    const entry = this.entries.get(digest);
    if (!entry) return;
    const now = this.now();
    if (now - entry.touchedAt < TOUCH_INTERVAL_MS) return;
    entry.touchedAt = now;
    const seconds = now / 1000;
    utimes(this.blobs.blobPath(parseDigest(digest)), seconds, seconds).catch(() => undefined);
  }

  /** The blob is gone from disk (gc, a failed open): stop counting it. */
  forget(digest: string): void {
    this.entries.delete(digest);
  }

  /** Digests from least to most recently used (for tests and gc reports). */
  leastRecentFirst(): string[] {
    return [...this.entries.rkeys()];
  }

  stats(): CacheStats {
    return {
      mirrored: { bytes: this.entries.calculatedSize, objects: this.entries.size },
      private: this.privateBlobs.stats(),
      evictions: this.evictionCount,
    };
  }

  private evict(digest: string): void {
    // A blob pushed into a private repository since it was mirrored is pinned: keep the file.
    if (this.privateBlobs.has(digest)) return;
    this.evictionCount += 1;
    this.blobs.delete(parseDigest(digest)).then(
      () => this.onEvicted(digest),
      (error: unknown) => this.log.error({ digest, err: error }, 'could not delete evicted blob'),
    );
  }
}
