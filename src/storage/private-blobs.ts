// Blobs that belong to private repositories (pushed here, via v1 or v2). They are never
// evicted and never sent upstream; a blob that is both mirrored and private is pinned.
// Kept as one metadata record per blob and mirrored in memory for O(1) checks.
import type { Digest } from '../protocol/digest.js';
import type { MetadataStore } from './metadata-store.js';

const PREFIX = 'private/blobs';
const LOAD_BATCH = 256;

export class PrivateBlobs {
  private readonly sizes = new Map<string, number>();

  constructor(private readonly metadata: MetadataStore) {}

  /** Loads the records written by earlier runs. */
  async load(): Promise<void> {
    for (const algorithm of await this.metadata.list(PREFIX)) {
      const hexes = await this.metadata.list(`${PREFIX}/${algorithm}`);
      // Read in parallel batches: start-up with many pushed blobs is bound by these reads, and
      // one batch at a time keeps the open files well under the descriptor limit.
      for (let start = 0; start < hexes.length; start += LOAD_BATCH) {
        const batch = hexes.slice(start, start + LOAD_BATCH);
        const records = await Promise.all(batch.map((hex) => this.metadata.get<{ size: number }>(`${PREFIX}/${algorithm}/${hex}`)));
        records.forEach((record, i) => record && this.sizes.set(`${algorithm}:${batch[i] as string}`, record.size));
      }
    }
  }

  /** Marks a stored blob as private content. Idempotent. */
  async add(digest: Digest, size: number): Promise<void> {
    if (this.sizes.has(digest.text)) return;
    await this.metadata.put(`${PREFIX}/${digest.algorithm}/${digest.hex}`, { size });
    this.sizes.set(digest.text, size);
  }

  has(digest: Digest | string): boolean {
    return this.sizes.has(typeof digest === 'string' ? digest : digest.text);
  }

  stats(): { objects: number; bytes: number } {
    let bytes = 0;
    for (const size of this.sizes.values()) bytes += size;
    return { objects: this.sizes.size, bytes };
  }
}
