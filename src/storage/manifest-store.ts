// Manifests are blobs like any other (content-addressed, verified on write); the media type
// they were served with is kept beside them, because clients need it byte-exact and it is
// not always inside the manifest. Hot manifests stay in memory: tag and digest lookups are
// the most frequent requests a mirror answers.
import { LRUCache } from 'lru-cache';
import type { Digest } from '../protocol/digest.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import type { BlobStore } from './blob-store.js';
import { metadataKeys } from './keys.js';
import type { MetadataStore } from './metadata-store.js';

export interface StoredManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

interface ManifestRecord {
  mediaType: string;
  size: number;
}

const MEMORY_CACHE_BYTES = 64 * 1024 * 1024;

export class ManifestStore {
  private readonly memory = new LRUCache<string, StoredManifest>({
    maxSize: MEMORY_CACHE_BYTES,
    sizeCalculation: (m) => m.bytes.byteLength + 256,
  });

  constructor(
    private readonly blobs: BlobStore,
    private readonly metadata: MetadataStore,
  ) {}

  private key(digest: Digest): string {
    return metadataKeys.manifest(digest);
  }

  /** The manifest if it is in memory (by digest text): no disk read, no promise. */
  peek(digest: string): StoredManifest | undefined {
    return this.memory.get(digest);
  }

  async get(digest: Digest): Promise<StoredManifest | undefined> {
    const cached = this.memory.get(digest.text);
    if (cached) return cached;
    const record = await this.metadata.get<ManifestRecord>(this.key(digest));
    if (!record) return undefined;
    const bytes = await this.blobs.readAll(digest, MAX_MANIFEST_BYTES);
    if (!bytes) return undefined;
    const manifest = { digest: digest.text, mediaType: record.mediaType, bytes };
    this.memory.set(digest.text, manifest);
    return manifest;
  }

  /** Stores a manifest under `digest`; the bytes must hash to it (the store verifies). */
  async put(digest: Digest, bytes: Buffer, mediaType: string): Promise<StoredManifest> {
    if (!(await this.blobs.stat(digest))) await this.blobs.put(digest, bytes);
    await this.metadata.put(this.key(digest), { mediaType, size: bytes.byteLength } satisfies ManifestRecord);
    const manifest = { digest: digest.text, mediaType, bytes };
    this.memory.set(digest.text, manifest);
    return manifest;
  }

  /** Drops the in-memory copy (the blob was evicted or deleted). */
  forget(digest: string): void {
    this.memory.delete(digest);
  }
}
