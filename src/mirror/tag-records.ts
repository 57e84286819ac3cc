// What we last learned about each mirrored tag: its digest and when we last asked upstream.
// Kept on disk (restart, offline and stale serving need it) with an in-memory LRU in front,
// so a tag within its TTL is answered without touching the disk or the upstream.
import { growingLru } from '../util/growing-lru.js';
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
  private readonly memory = growingLru<string, TagRecord>(MEMORY_ENTRIES);

  constructor(private readonly metadata: MetadataStore) {}

  private key(upstream: string, repository: string, tag: string): string {
    return metadataKeys.mirrorTag(upstream, repository, tag);
  }

  /** The in-memory key: one template string per lookup of a hot tag, not a joined array. */
  private memoryKey(upstream: string, repository: string, tag: string): string {
    return `${upstream}\n${repository}\n${tag}`;
  }

  /** The record if it is in memory: no disk read, no promise (the hot path of a fresh tag). */
  peek(upstream: string, repository: string, tag: string): TagRecord | undefined {
    return this.memory.get(this.memoryKey(upstream, repository, tag));
  }

  async get(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const cached = this.memory.get(this.memoryKey(upstream, repository, tag));
    if (cached) return cached;
    const record = await this.metadata.get<TagRecord>(this.key(upstream, repository, tag));
    if (record) this.memory.set(this.memoryKey(upstream, repository, tag), record);
    return record;
  }

  /** The record as the metadata store has it now (another replica may have refreshed it). */
  async reload(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    const record = await this.metadata.get<TagRecord>(this.key(upstream, repository, tag));
    const memoryKey = this.memoryKey(upstream, repository, tag);
    if (record) this.memory.set(memoryKey, record);
    else this.memory.delete(memoryKey);
    return record;
  }

  async put(upstream: string, repository: string, tag: string, record: TagRecord): Promise<void> {
    this.memory.set(this.memoryKey(upstream, repository, tag), record);
    await this.metadata.put(this.key(upstream, repository, tag), record);
  }

  async delete(upstream: string, repository: string, tag: string): Promise<void> {
    this.memory.delete(this.memoryKey(upstream, repository, tag));
    await this.metadata.delete(this.key(upstream, repository, tag));
  }

  /** Tags we know for a repository, for serving tags/list when the upstream is away. */
  async list(upstream: string, repository: string): Promise<string[]> {
    return this.metadata.list(metadataKeys.mirrorTags(upstream, repository));
  }
}
