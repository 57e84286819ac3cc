// How a running server learns that gc or import changed its storage: the tool writes a small
// notice record (cache/changed) in the metadata store when it is done, and every server polls
// that record and, when it names a change it has not seen, rescans its cache index and private
// index. The storage is the one thing every replica shares whatever its set-up (fs or S3, one
// replica or several, with or without Redis, a tool on another host), so the notice needs no
// address, no credentials and no coordinator; its cost is one small read per poll.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { CacheIndex, PrivateContent } from '../coordination/ports.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';

/** How often a server reads the notice: the longest its figures stay stale after gc or import. */
export const CACHE_CHANGE_POLL_MS = 5000;

export interface CacheChangeNotice {
  /** New for every change: what a server compares. */
  id: string;
  by: 'gc' | 'import';
  at: string;
  host: string;
  pid: number;
}

/** Called by gc and import once they changed the storage. */
export async function announceCacheChange(metadata: Pick<MetadataStore, 'put'>, by: CacheChangeNotice['by']): Promise<void> {
  const notice: CacheChangeNotice = { id: randomUUID(), by, at: new Date().toISOString(), host: hostname(), pid: process.pid };
  await metadata.put(metadataKeys.cacheChanged, notice);
}

export interface CacheChangeWatcherOptions {
  metadata: Pick<MetadataStore, 'get'>;
  cacheIndex: Pick<CacheIndex, 'rescan'>;
  privateContent: Pick<PrivateContent, 'reload'>;
  log: Logger;
  intervalMs?: number;
}

/** What the serving graph exposes: others that keep their own view of the storage (the web page's repository list) catch up too. */
export interface CacheChanges {
  /** Called after each rescan; returns the unsubscribe function. */
  onRescanned(listener: (notice: CacheChangeNotice) => void): () => void;
}

export class CacheChangeWatcher implements CacheChanges {
  private seen: string | undefined;
  private readonly listeners = new Set<(notice: CacheChangeNotice) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  private constructor(private readonly options: CacheChangeWatcherOptions) {}

  /**
   * Reads the current notice as the baseline, then polls. Start it before the index is first
   * built: a change made between the two is then in the build and not rescanned, never missed.
   */
  static async start(options: CacheChangeWatcherOptions): Promise<CacheChangeWatcher> {
    const watcher = new CacheChangeWatcher(options);
    watcher.seen = (await options.metadata.get<CacheChangeNotice>(metadataKeys.cacheChanged))?.id;
    watcher.timer = setInterval(() => {
      watcher.polling ??= watcher.poll().finally(() => {
        watcher.polling = undefined;
      });
    }, options.intervalMs ?? CACHE_CHANGE_POLL_MS);
    watcher.timer.unref();
    return watcher;
  }

  onRescanned(listener: (notice: CacheChangeNotice) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
  }

  private async poll(): Promise<void> {
    const { metadata, cacheIndex, privateContent, log } = this.options;
    try {
      const notice = await metadata.get<CacheChangeNotice>(metadataKeys.cacheChanged);
      if (!notice || notice.id === this.seen) return;
      const started = Date.now();
      // Private marks first: the cache index leaves private blobs out of its count.
      await privateContent.reload?.();
      await cacheIndex.rescan();
      this.seen = notice.id; // only once done: a failed rescan is tried again at the next poll
      for (const listener of this.listeners) listener(notice);
      log.info({ by: notice.by, at: notice.at, host: notice.host, pid: notice.pid, durationMs: Date.now() - started }, `cache index rescanned after ${notice.by} changed the storage`);
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'cache change notice: could not read it or rescan; the next poll tries again');
    }
  }
}
