// Reads of write-once metadata records from memory. On S3 every record read is a GET (a
// network round trip, and a billed request on AWS); records whose value never changes once
// written (keys.ts: isWriteOnceRecord — manifest records, v1 chains, completed private v1
// images) are kept in a bounded LRU after the first read or write. Only values that exist are
// kept: "not there" can change any time. Mutable records (tags, private marks, repository
// links) always go to the bucket, so several replicas sharing it stay consistent with no
// invalidation between them.
import { LRUCache } from 'lru-cache';
import { isWriteOnceRecord } from './keys.js';
import type { MetadataDriver } from './metadata-store.js';

// Records are a few hundred bytes (v1 image records carry the image JSON, a few KiB): 16 MiB
// holds tens of thousands.
const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

export class WriteOnceRecordCache implements MetadataDriver {
  // The JSON text, parsed on every hit: callers may change the objects they are given.
  private readonly records: LRUCache<string, string>;

  constructor(
    private readonly driver: MetadataDriver,
    options: { maxBytes?: number } = {},
  ) {
    this.records = new LRUCache({ maxSize: options.maxBytes ?? DEFAULT_MAX_BYTES, sizeCalculation: (text, key) => text.length + key.length });
  }

  async get<T>(key: string): Promise<T | undefined> {
    const cached = this.records.get(key);
    if (cached !== undefined) return JSON.parse(cached) as T;
    const value = await this.driver.get<T>(key);
    if (value !== undefined && isWriteOnceRecord(key, value)) this.records.set(key, JSON.stringify(value));
    return value;
  }

  async put(key: string, value: unknown): Promise<void> {
    // Forgotten first: a failed write leaves no cached value the bucket may not have.
    this.records.delete(key);
    await this.driver.put(key, value);
    if (isWriteOnceRecord(key, value)) this.records.set(key, JSON.stringify(value));
  }

  async delete(key: string): Promise<boolean> {
    this.records.delete(key);
    return this.driver.delete(key);
  }

  list(prefix: string): Promise<string[]> {
    return this.driver.list(prefix);
  }
}
