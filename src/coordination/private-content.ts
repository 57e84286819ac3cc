// The private-content index of one replica: the marks are metadata records (the truth, which
// a shared coordinator rebuilds its set from), mirrored in memory for O(1) checks on every
// cached read. A blob that is both mirrored and private is pinned: never evicted.
import { parseDigest, type Digest } from '../protocol/digest.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { ContentStats, PrivateContent } from './ports.js';

const LOAD_BATCH = 256;

export class InProcessPrivateContent implements PrivateContent {
  private readonly sizes = new Map<string, number>();

  constructor(private readonly metadata: MetadataStore) {}

  /** Loads the marks written by earlier runs. */
  async load(): Promise<void> {
    for await (const mark of readPrivateMarks(this.metadata)) this.sizes.set(mark.digest, mark.size);
  }

  /** After gc or import beside this process: the marks as the metadata store has them now. */
  async reload(): Promise<void> {
    const before = new Set(this.sizes.keys());
    const found = new Set<string>();
    for await (const mark of readPrivateMarks(this.metadata)) {
      found.add(mark.digest);
      this.sizes.set(mark.digest, mark.size);
    }
    // Only marks that were here before the read and are gone now: one added meanwhile stays.
    for (const digest of before) if (!found.has(digest)) this.sizes.delete(digest);
  }

  async add(digest: Digest, size: number): Promise<void> {
    if (this.sizes.has(digest.text)) return;
    await this.metadata.put(metadataKeys.privateBlob(digest), { size });
    this.sizes.set(digest.text, size);
  }

  async remove(digest: Digest): Promise<void> {
    await this.metadata.delete(metadataKeys.privateBlob(digest));
    this.sizes.delete(digest.text);
  }

  has(digest: Digest | string): Promise<boolean> {
    return Promise.resolve(this.sizes.has(typeof digest === 'string' ? digest : digest.text));
  }

  async *list(): AsyncGenerator<{ digest: string; size: number }> {
    for (const [digest, size] of [...this.sizes.entries()]) {
      await Promise.resolve();
      yield { digest, size };
    }
  }

  stats(): Promise<ContentStats> {
    let bytes = 0;
    for (const size of this.sizes.values()) bytes += size;
    return Promise.resolve({ objects: this.sizes.size, bytes });
  }
}

/** Every private mark in the metadata store (the truth any index is built from). */
export async function* readPrivateMarks(metadata: MetadataStore): AsyncGenerator<{ digest: string; size: number }> {
  for (const algorithm of await metadata.list(metadataKeys.privateBlobsRoot)) {
    const hexes = await metadata.list(`${metadataKeys.privateBlobsRoot}/${algorithm}`);
    // Read in parallel batches: start-up with many pushed blobs is bound by these reads, and
    // one batch at a time keeps the open files well under the descriptor limit.
    for (let start = 0; start < hexes.length; start += LOAD_BATCH) {
      const batch = hexes.slice(start, start + LOAD_BATCH).map((hex) => parseDigest(`${algorithm}:${hex}`));
      const records = await Promise.all(batch.map((digest) => metadata.get<{ size: number }>(metadataKeys.privateBlob(digest))));
      for (const [i, record] of records.entries()) if (record) yield { digest: (batch[i] as Digest).text, size: record.size };
    }
  }
}

/** Whether the metadata store holds a private mark for the digest (the truth, no index). */
export async function hasPrivateMark(metadata: MetadataStore, digest: Digest | string): Promise<boolean> {
  return (await metadata.get(metadataKeys.privateBlob(typeof digest === 'string' ? parseDigest(digest) : digest))) !== undefined;
}
