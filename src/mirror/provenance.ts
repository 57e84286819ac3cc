// Where mirrored content came from. The blob store is content-addressed and shared with
// private repositories, so a digest alone says nothing about who may read it under which
// name. Each manifest and blob the mirror fetched (or an upstream confirmed) is recorded
// with the upstream and repository it came from; the guard that keeps private digests from
// leaking through mirrored names asks this first, so a promoted image (a mirrored one also
// pushed privately) is still served under its upstream's names from the cache, offline and
// with that upstream down, and costs no upstream request.
//
// Tags carry their provenance in their key (upstream, repository, tag), v1 image records in
// theirs (storage/v1-image-store.ts); this covers the digests.
import { growingLru } from '../util/growing-lru.js';
import { parseDigest, type Digest } from '../protocol/digest.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';

export interface Origin {
  upstream: string;
  /** The repository as the upstream names it (the first one it was fetched under). */
  repository: string;
}

/** The port: a shared driver (Redis, the bucket) implements the same two calls. */
export interface ProvenanceIndex {
  /** Remembers that `digest` came from `origin.upstream`. Idempotent; must not lose other upstreams' entries. */
  record(digest: Digest | string, origin: Origin): Promise<void>;
  /** Whether the mirror got `digest` from this upstream (fetched, or confirmed by it). */
  fetchedFrom(digest: Digest | string, upstream: string): Promise<boolean>;
}

/** Per digest: upstream name → repository. Bounded by the number of configured upstreams. */
type ProvenanceRecord = Record<string, string>;

const MEMORY_ENTRIES = 50_000;

/**
 * Provenance in the metadata store (keys.ts: provenance/<algorithm>/<hex>), with an LRU in
 * front. Entries are only ever added, so a cached "yes" stays true; a "no" is re-read.
 */
export class MetadataProvenance implements ProvenanceIndex {
  private readonly memory = growingLru<string, ProvenanceRecord>(MEMORY_ENTRIES);

  constructor(private readonly metadata: MetadataStore) {}

  private async read(digest: Digest, upstream: string): Promise<ProvenanceRecord> {
    const cached = this.memory.get(digest.text);
    // Another replica (or an earlier run) may have added this upstream since we cached.
    if (cached?.[upstream] !== undefined) return cached;
    const stored = (await this.metadata.get<ProvenanceRecord>(metadataKeys.provenance(digest))) ?? {};
    this.memory.set(digest.text, stored);
    return stored;
  }

  async record(digestOrText: Digest | string, origin: Origin): Promise<void> {
    const digest = typeof digestOrText === 'string' ? parseDigest(digestOrText) : digestOrText;
    if (this.memory.get(digest.text)?.[origin.upstream] !== undefined) return;
    // Under the key's lock (the coordinator's): another upstream's entry is never lost.
    const updated = await this.metadata.update<ProvenanceRecord>(metadataKeys.provenance(digest), (current) =>
      current?.[origin.upstream] !== undefined ? undefined : { ...current, [origin.upstream]: origin.repository },
    );
    if (updated) this.memory.set(digest.text, updated);
  }

  async fetchedFrom(digestOrText: Digest | string, upstream: string): Promise<boolean> {
    const digest = typeof digestOrText === 'string' ? parseDigest(digestOrText) : digestOrText;
    return (await this.read(digest, upstream))[upstream] !== undefined;
  }
}
