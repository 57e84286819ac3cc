// What we last learned about each mirrored tag: its digest and when we last asked upstream.
// Kept on disk (restart, offline and stale serving need it) with an in-memory LRU in front,
// so a tag within its TTL is answered without touching the disk or the upstream.
import { LRUCache } from 'lru-cache';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';

export interface TagRecord {
  digest: string;
  mediaType: string;
  /** ms since epoch of the last upstream confirmation. */
  checkedAt: number;
}

const MEMORY_ENTRIES = 50_000;

export class TagRecords {
  private readonly memory = new LRUCache<string, TagRecord>({ max: MEMORY_ENTRIES });

  constructor(private readonly metadata: MetadataStore) {}

  private key(upstream: string, repository: string, tag: string): string {
    return metadataKeys.mirrorTag(upstream, repository, tag);
  }

  /** The record if it is in memory: no disk read, no promise (the hot path of a fresh tag). */
  peek(upstream: string, repository: string, tag: string): TagRecord | undefined {
    return this.memory.get(this.key(upstream, repository, tag));
  }

  async get(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const key = this.key(upstream, repository, tag);
    const cached = this.memory.get(key);
    if (cached) return cached;
    const record = await this.metadata.get<TagRecord>(key);
    if (record) this.memory.set(key, record);
    return record;
  }

  async put(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void> {
    const key = this.key(upstream, repository, tag);
    this.memory.set(key, record);
    await this.metadata.put(key, record);
  }

  async delete(upstream: string, repository: string, tag: string): Promise<void> {
    const key = this.key(upstream, repository, tag);
    this.memory.delete(key);
    await this.metadata.delete(key);
  }

  /** Tags we know for a repository, for serving tags/list when the upstream is away. */
  async list(upstream: string, repository: string): Promise<string[]> {
    return this.metadata.list(metadataKeys.mirrorTags(upstream, repository));
  }
}
