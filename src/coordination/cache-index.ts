// The size bound on mirrored content for one replica: a least-recently-used index over every
// cached blob (layers, configs and manifests alike) that deletes what falls off its end.
//
// - Recency survives restarts without touching the blobs: last-access times are kept in the
//   metadata store (access-times.ts). rebuild() orders the blobs by them (by publication time
//   for a blob never accessed).
// - Private blobs (pushed here) are never in the index, never evicted, and do not count.
// - An evicted blob is deleted from the store; anyone reading it keeps their handle, so a
//   download in progress finishes. Its removal is announced on the BlobEvents bus, so every
//   cache of every replica (the manifest store's memory) forgets it.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { parseDigest } from '../protocol/digest.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { AccessTimeRecords } from './access-times.js';
import type { BlobEvents, CacheIndex, CacheStats, PrivateContent } from './ports.js';

interface Entry {
  size: number;
  /** When the access time was last recorded for persisting (ms); at most once a second. */
  recordedAt: number;
}

/** An access time is recorded for persisting at most this often per blob. */
export const RECORD_INTERVAL_MS = 1000;

export interface CacheIndexOptions {
  blobs: BlobStore;
  metadata: MetadataStore;
  privateContent: PrivateContent;
  events: BlobEvents;
  /** storage.cache.maxBytes; undefined: track recency and size, evict nothing. */
  maxBytes: number | undefined;
  log: Logger;
  now?: () => number;
  /** How often changed access times are written to the metadata store. */
  flushIntervalMs?: number;
}

export class InProcessCacheIndex implements CacheIndex {
  private readonly entries: LRUCache<string, Entry>;
  private evictionCount = 0;
  private readonly accessTimes: AccessTimeRecords;
  private readonly unsubscribe: () => void;
  private readonly blobs: BlobStore;
  private readonly privateContent: PrivateContent;
  private readonly events: BlobEvents;
  private readonly log: Logger;
  private readonly now: () => number;
  readonly maxBytes: number | undefined;

  constructor(options: CacheIndexOptions) {
    this.blobs = options.blobs;
    this.privateContent = options.privateContent;
    this.events = options.events;
    this.maxBytes = options.maxBytes;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.entries = new LRUCache<string, Entry>({
      maxSize: this.maxBytes ?? Number.MAX_SAFE_INTEGER,
      sizeCalculation: (entry) => Math.max(1, entry.size),
      dispose: (entry, digest, reason) => {
        if (reason === 'evict') void this.evict(digest, entry.size, 'least recently used; mirrored content over storage.cache.maxBytes');
      },
    });
    // Blobs fetched for the mirror announce themselves; pushes and imports are not mirrored.
    this.unsubscribe = this.events.subscribe((event) => {
      if (event.type === 'committed') this.added(event.digest, event.size);
      else if (event.reason !== 'evicted') this.forget(event.digest);
    });
    this.accessTimes = new AccessTimeRecords(options.metadata, this.log, options.flushIntervalMs);
  }

  async rebuild(): Promise<void> {
    const accessed = await this.accessTimes.readAll();
    const found: Array<{ digest: string; size: number; at: number }> = [];
    for await (const blob of this.blobs.list()) {
      if (!(await this.privateContent.has(blob.digest))) found.push({ digest: blob.digest, size: blob.size, at: accessed.get(blob.digest) ?? blob.storedAt });
    }
    found.sort((a, b) => a.at - b.at);
    for (const blob of found) this.entries.set(blob.digest, { size: blob.size, recordedAt: blob.at });
  }

  async rescan(): Promise<void> {
    const known = new Set(this.entries.keys());
    await this.accessTimes.flush(); // this process's own recent accesses, so the read below has them
    const accessed = await this.accessTimes.readAll();
    const present = new Set<string>();
    const found: Array<{ digest: string; size: number; at: number }> = [];
    for await (const blob of this.blobs.list()) {
      if (await this.privateContent.has(blob.digest)) continue;
      present.add(blob.digest);
      if (!known.has(blob.digest)) found.push({ digest: blob.digest, size: blob.size, at: accessed.get(blob.digest) ?? blob.storedAt });
    }
    // Gone from the store (gc): announced like gc's own deletions, so every cache of this
    // process (the manifest store's memory) forgets them too. A blob published after the
    // snapshot above is not in `known`, so it stays.
    for (const digest of known) {
      if (!present.has(digest) && this.entries.has(digest)) this.events.publish({ type: 'removed', digest, reason: 'collected' });
    }
    found.sort((a, b) => a.at - b.at);
    for (const blob of found) if (!this.entries.has(blob.digest)) this.entries.set(blob.digest, { size: blob.size, recordedAt: blob.at });
  }

  added(digest: string, size: number): void {
    void this.privateContent.has(digest).then(
      (isPrivate) => {
        if (isPrivate) return;
        const now = this.now();
        this.entries.set(digest, { size, recordedAt: now });
        this.record(digest, now);
        if (!this.entries.has(digest)) {
          // Larger than the whole bound: it was served, but it cannot stay.
          this.log.warn({ digest, size, maxBytes: this.maxBytes }, 'blob larger than storage.cache.maxBytes; not kept');
          void this.evict(digest, size, 'larger than storage.cache.maxBytes on its own');
        }
      },
      (error: unknown) => this.log.error({ digest, err: error }, 'cache index: could not check whether a blob is private'),
    );
  }

  touched(digest: string): void {
    const entry = this.entries.get(digest); // most recently used in memory at once
    if (!entry) return;
    const now = this.now();
    if (now - entry.recordedAt < RECORD_INTERVAL_MS) return;
    entry.recordedAt = now;
    this.record(digest, now);
  }

  forget(digest: string): void {
    if (this.entries.delete(digest)) this.record(digest, null);
  }

  leastRecentFirst(): Promise<string[]> {
    return Promise.resolve([...this.entries.rkeys()]);
  }

  async stats(): Promise<CacheStats> {
    return {
      mirrored: { bytes: this.entries.calculatedSize, objects: this.entries.size },
      private: await this.privateContent.stats(),
      evictions: this.evictionCount,
    };
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.accessTimes.close();
  }

  /** Writes the access times recorded since the last flush. */
  flush(): Promise<void> {
    return this.accessTimes.flush();
  }

  private record(digest: string, at: number | null): void {
    this.accessTimes.record(digest, at);
  }

  private async evict(digest: string, size: number, why: string): Promise<void> {
    try {
      // A blob pushed into a private repository since it was mirrored is pinned: keep it.
      if (await this.privateContent.has(digest)) return;
      this.evictionCount += 1;
      this.record(digest, null);
      await this.blobs.delete(parseDigest(digest));
      this.log.info({ digest, size, reason: why, maxBytes: this.maxBytes }, 'evicted');
      this.events.publish({ type: 'removed', digest, reason: 'evicted' });
    } catch (error) {
      this.log.error({ digest, err: error }, 'could not delete evicted blob');
    }
  }
}
