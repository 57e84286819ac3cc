// Metadata records kept in memory on S3, where every record read is a GET (a network round
// trip, and a billed request on AWS). Two kinds are kept, in a bounded LRU, after the first read
// or write:
//
// - write-once records (keys.ts: isWriteOnceRecord — manifest records, v1 chains, completed
//   private v1 images), whose value never changes once written;
// - private repositories' link records (local/<repository>/_layers|_manifests/<alg>/<hex>),
//   read on every private pull.
//
// Both can be deleted: links by a registry DELETE, manifest records by gc. A delete through this
// cache forgets the record here at once and then writes a notice (cache/records-changed, a new
// id) to the bucket; every process holding a cache reads that notice before it answers from
// memory, at most once per NOTICE_CHECK_MS, and forgets everything on a new id. So a record
// deleted by another replica, or by a gc process beside the server, is served from memory for
// at most NOTICE_CHECK_MS after the delete. (The notice is one record overwritten by everyone:
// concurrent deletes may leave only the last id, which is still new to every other process.)
//
// Only values that exist are kept: "not there" can change any time. Other mutable records
// (tags, private marks, provenance) always go to the bucket.
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { isWriteOnceRecord, linkedDigest, metadataKeys } from './keys.js';
import type { MetadataDriver } from './metadata-store.js';

// Records are a few hundred bytes (v1 image records carry the image JSON, a few KiB): 16 MiB
// holds tens of thousands.
const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
// How long a record deleted elsewhere may still be served from memory here; costs at most one
// GET of the notice per this interval, and only while cached records are being read.
export const NOTICE_CHECK_MS = 1000;

interface RecordsChangedNotice {
  id: string;
  at: string;
}

export interface RecordCacheOptions {
  maxBytes?: number;
  /** How often the delete notice is read before answering from memory (tests: 0, every time). */
  noticeCheckMs?: number;
}

/** Whether a record may be kept in memory (with the value that was read or written). */
function isCacheable(key: string, value: unknown): boolean {
  return linkedDigest(key) !== undefined || isWriteOnceRecord(key, value);
}

/** Whether a key can ever be cached, whatever its value: its delete must be announced. */
function mayBeCached(key: string): boolean {
  // A private v1 image is cached only once complete; the value does not matter for this test.
  return isCacheable(key, { complete: true });
}

export class RecordCache implements MetadataDriver {
  // The JSON text, parsed on every hit: callers may change the objects they are given.
  private readonly records: LRUCache<string, string>;
  private readonly noticeCheckMs: number;
  /** The id of the delete notice last read (undefined: none yet, or no notice in the bucket). */
  private seenNotice: string | undefined;
  private noticeReadAt = Number.NEGATIVE_INFINITY;
  private noticeRead: Promise<void> | undefined;
  /** Bumped whenever everything is forgotten: a read begun before must not cache its value. */
  private generation = 0;

  constructor(
    private readonly driver: MetadataDriver,
    options: RecordCacheOptions = {},
  ) {
    this.records = new LRUCache({ maxSize: options.maxBytes ?? DEFAULT_MAX_BYTES, sizeCalculation: (text, key) => text.length + key.length });
    this.noticeCheckMs = options.noticeCheckMs ?? NOTICE_CHECK_MS;
  }

  async get<T>(key: string): Promise<T | undefined> {
    if (this.records.has(key)) {
      await this.readNoticeIfDue();
      const cached = this.records.get(key);
      if (cached !== undefined) return JSON.parse(cached) as T;
    }
    const generation = this.generation;
    const value = await this.driver.get<T>(key);
    if (value !== undefined && generation === this.generation && isCacheable(key, value)) this.records.set(key, JSON.stringify(value));
    return value;
  }

  /**
   * Reads the delete notice unless it was read within noticeCheckMs, and forgets everything if
   * it changed. A failed read keeps what is cached (the bucket may be briefly unreachable) and is
   * tried again at the next cached read.
   */
  private readNoticeIfDue(): Promise<void> {
    if (Date.now() - this.noticeReadAt < this.noticeCheckMs) return Promise.resolve();
    this.noticeRead ??= (async () => {
      const startedAt = Date.now();
      try {
        const notice = await this.driver.get<RecordsChangedNotice>(metadataKeys.recordsChanged);
        if (notice?.id !== this.seenNotice) {
          this.seenNotice = notice?.id;
          this.forgetAll();
        }
        this.noticeReadAt = startedAt;
      } catch {
        // Served from memory as before; the next cached read asks again.
      } finally {
        this.noticeRead = undefined;
      }
    })();
    return this.noticeRead;
  }

  private forgetAll(): void {
    this.generation += 1;
    this.records.clear();
  }

  async put(key: string, value: unknown): Promise<void> {
    // Forgotten first: a failed write leaves no cached value the bucket may not have.
    this.records.delete(key);
    await this.driver.put(key, value);
    if (isCacheable(key, value)) this.records.set(key, JSON.stringify(value));
  }

  async delete(key: string): Promise<boolean> {
    this.records.delete(key);
    const deleted = await this.driver.delete(key);
    // Other processes may hold it. Not marked as seen here: a notice another process wrote
    // meanwhile may be the one this overwrites, so this process forgets its own cache too.
    if (deleted && mayBeCached(key)) {
      const notice: RecordsChangedNotice = { id: randomUUID(), at: new Date().toISOString() };
      await this.driver.put(metadataKeys.recordsChanged, notice);
    }
    return deleted;
  }

  list(prefix: string): Promise<string[]> {
    return this.driver.list(prefix);
  }
}
