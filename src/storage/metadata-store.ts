// Small JSON records (tags, manifest media types, private marks, v1 records), keyed by
// slash-separated keys; every key layout is in keys.ts. Values must be JSON-serialisable.
//
// Two layers: a MetadataDriver stores and lists records (fs, memory; an S3 bucket next) and
// needs nothing but plain get/put/delete/list, because real S3 servers (Swift's s3api) refuse
// conditional writes. CoordinatedMetadataStore adds the two conditional operations every
// read-modify-write in the code goes through, with their mutual exclusion coming from the
// coordinator's KeyedLocks: in-process for one replica, Redis leases for several.
import type { KeyedLocks } from '../coordination/ports.js';

export interface MetadataDriver {
  get<T>(key: string): Promise<T | undefined>;
  /** Replaces the record whole; a reader sees the old or the new value, never a mix. */
  put(key: string, value: unknown): Promise<void>;
  /** False when there was nothing to delete. */
  delete(key: string): Promise<boolean>;
  /**
   * Names directly below `prefix` (one level), without the prefix, sorted: records, and
   * "directories" that hold records further down.
   */
  list(prefix: string): Promise<string[]>;
}

/** Returned by an update's change function to delete the record. */
export const DELETE_RECORD: unique symbol = Symbol('delete record');

/**
 * What an update does with the record: write a new value, delete it (DELETE_RECORD), or
 * leave it as it is (undefined). Throwing leaves it as it is too, and the error propagates.
 */
export type RecordChange<T> = (current: T | undefined) => T | undefined | typeof DELETE_RECORD | Promise<T | undefined | typeof DELETE_RECORD>;

export interface MetadataStore extends MetadataDriver {
  /** Creates the record only if there is none. True when this call created it. */
  putIfAbsent(key: string, value: unknown): Promise<boolean>;
  /**
   * Read-modify-write under the key's lock: no other update of the key (in any replica that
   * shares the coordinator) runs between the read and the write. Resolves to the record as it
   * is afterwards.
   */
  update<T>(key: string, change: RecordChange<T>): Promise<T | undefined>;
}

/** A driver plus the coordinator's locks: the MetadataStore every caller uses. */
export class CoordinatedMetadataStore implements MetadataStore {
  constructor(
    private readonly driver: MetadataDriver,
    private readonly locks: KeyedLocks,
  ) {}

  get<T>(key: string): Promise<T | undefined> {
    return this.driver.get<T>(key);
  }

  put(key: string, value: unknown): Promise<void> {
    return this.driver.put(key, value);
  }

  delete(key: string): Promise<boolean> {
    return this.driver.delete(key);
  }

  list(prefix: string): Promise<string[]> {
    return this.driver.list(prefix);
  }

  async putIfAbsent(key: string, value: unknown): Promise<boolean> {
    let created = false;
    await this.update(key, (current) => {
      if (current !== undefined) return undefined;
      created = true;
      return value;
    });
    return created;
  }

  async update<T>(key: string, change: RecordChange<T>): Promise<T | undefined> {
    assertSafeKey(key);
    return this.locks.withLock(`metadata:${key}`, async () => {
      const current = await this.driver.get<T>(key);
      const next = await change(current);
      if (next === undefined) return current;
      if (next === DELETE_RECORD) {
        await this.driver.delete(key);
        return undefined;
      }
      await this.driver.put(key, next);
      return next;
    });
  }
}

// Key segments are names, tags and digests, which the protocol layer has validated already;
// this is the last line of defence before a key becomes a path or an object name.
const SAFE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._:-]*$/;

export function assertSafeKey(key: string): void {
  const segments = key.split('/');
  if (segments.length === 0 || segments.some((s) => !SAFE_SEGMENT.test(s) || s === '..')) {
    throw new Error(`unsafe metadata key "${key}"`);
  }
}
