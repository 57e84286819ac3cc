// The pull-through policy, one place for every API: serve from the cache, fetch misses from
// the upstream (coalesced), keep tags fresh within their TTL, and serve stale when the
// upstream fails. Routes call this; it never sees HTTP.
import type { PeerFollower } from '../cluster/peer-follower.js';
import type { Logger } from 'pino';
import { parseDigest, digestOf, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { accepts, upstreamAcceptList } from '../protocol/media-types.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { ManifestStore, StoredManifest } from '../storage/manifest-store.js';
import { isStorageRefusal, StorageRefusalLog } from '../storage/refusal.js';
import { UpstreamError } from '../upstream/errors.js';
import { UpstreamBlobMissing, type InflightBlobs } from './inflight.js';
import { BlobMisses, type BlobResult, type CacheTracker } from './blob-miss.js';
import { CachedLookup, type CachedEntry } from './cached-lookup.js';
import { ExpectedBlobSizes } from './expected-sizes.js';
import type { KeyedLocks } from '../coordination/ports.js';
import type { CacheOutcome } from './outcome.js';
import type { Origin, ProvenanceIndex } from './provenance.js';
import type { MirrorTarget } from './router.js';
import type { TagRecords, TagRecord } from './tag-records.js';

export type { BlobResult, CacheTracker } from './blob-miss.js';

/** A mirrored tag: what we last learned of it, and the manifest it points at. */
interface TaggedManifest {
  record: TagRecord;
  manifest: StoredManifest;
}

export interface ManifestResult extends StoredManifest {
  outcome: CacheOutcome;
}

export interface MirrorOptions {
  /** Never contact an upstream: answer from the cache or with a 404. */
  offline: boolean;
  tracker: CacheTracker;
  /** Digests of private content (pushed here): never served as mirrored content on their own say-so. */
  isPrivate: (digest: string) => Promise<boolean>;
  /** Which upstream each fetched digest came from: private digests are served under those upstreams' names. */
  provenance: ProvenanceIndex;
  /** The coordinator's locks: a tag is refreshed by one replica at a time, cluster-wide. */
  locks?: KeyedLocks;
  /** With several replicas: follows a fetch another replica leads. */
  peers?: PeerFollower;
  now?: () => number;
}

export class PullThroughMirror {

  private readonly offline: boolean;
  private readonly tracker: CacheTracker;
  private readonly isPrivate: (digest: string) => Promise<boolean>;
  private readonly provenance: ProvenanceIndex;
  private readonly now: () => number;
  private readonly storageRefusals: StorageRefusalLog;
  private readonly lookups: CachedLookup;
  /** Blob sizes from the mirrored manifests served: they bound a blob body sent without Content-Length. */
  private readonly expectedSizes = new ExpectedBlobSizes();
  /** The one blob path, shared with the v1 engine's layers. */
  readonly blobMisses: BlobMisses;

  constructor(
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
    private readonly tags: TagRecords,
    private readonly inflight: InflightBlobs,
    private readonly log: Logger,
    options: MirrorOptions,
  ) {
    this.offline = options.offline;
    this.tracker = options.tracker;
    this.storageRefusals = new StorageRefusalLog(log);
    this.isPrivate = options.isPrivate;
    this.provenance = options.provenance;
    this.now = options.now ?? Date.now;
    this.lookups = new CachedLookup({ offline: this.offline, now: this.now, locks: options.locks }, log);
    this.blobMisses = new BlobMisses(blobs, inflight, this.tracker, this.offline, options.peers);
  }

  /**
   * The store is content-addressed and shared with private repositories. A digest that is
   * private content is served under an upstream's names only if the mirror got it from that
   * upstream (provenance: fetched, or confirmed before), or the upstream confirms it has it
   * there now (the bytes are then the same); otherwise knowing a digest would be enough to
   * read a private image through any mirrored name.
   */
  private async mayServeStored(target: MirrorTarget, digest: Digest, kind: 'blob' | 'manifest'): Promise<boolean> {
    if (!(await this.isPrivate(digest.text))) return true;
    if (await this.provenance.fetchedFrom(digest, target.upstream.name)) return true;
    if (this.offline) return false;
    const found =
      kind === 'blob'
        ? await target.upstream.headBlob(target.repository, digest.text)
        : await target.upstream.headManifest(target.repository, digest.text, upstreamAcceptList([]));
    if (found === undefined) return false;
    await this.recordOrigin(digest, target);
    return true;
  }

  /** Provenance is bookkeeping: failing to write it costs an upstream confirmation later, never a request. */
  private async recordOrigin(digest: Digest, target: MirrorTarget): Promise<void> {
    const origin: Origin = { upstream: target.upstream.name, repository: target.repository };
    await this.provenance.record(digest, origin).catch((error: unknown) => {
      this.log.warn({ digest: digest.text, upstream: origin.upstream, err: (error as Error).message }, 'could not record where a digest came from');
    });
  }

  private offlineMiss(code: 'BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN' | 'NAME_UNKNOWN', what: string): RegistryError {
    return new RegistryError(code, `${what} is not cached, and offline mode is on (no upstream is asked)`);
  }

  // ---- blobs ---------------------------------------------------------------------------

  async getBlob(target: MirrorTarget, digestText: string): Promise<BlobResult> {
    const digest = parseDigest(digestText);
    return this.blobMisses
      .serve({
        key: digest.text,
        upstream: target.upstream.name,
        storedDigest: () => Promise.resolve(digest),
        mayServe: () => this.mayServeStored(target, digest, 'blob'),
        source: {
          expected: digest,
          open: () => target.upstream.fetchBlob(target.repository, digest.text, this.expectedSizes.sizeOf(target.upstream.name, digest.text)),
          stored: (stored) => this.recordOrigin(stored, target),
        },
        missing: () => new UpstreamBlobMissing(digest.text),
        offlineMiss: () => this.offlineMiss('BLOB_UNKNOWN', `blob ${digest.text}`),
      })
      .catch((error: unknown) => {
        throw this.blobError(error, target, digest);
      });
  }

  /** Size and presence without fetching the body. */
  async statBlob(target: MirrorTarget, digestText: string): Promise<{ size: number | undefined; outcome: CacheOutcome }> {
    const digest = parseDigest(digestText);
    try {
      const stored = await this.blobs.stat(digest);
      if (stored) {
        if (await this.mayServeStored(target, digest, 'blob')) return { size: stored.size, outcome: 'hit' };
        throw new UpstreamBlobMissing(digest.text);
      }
      if (this.offline) throw this.offlineMiss('BLOB_UNKNOWN', `blob ${digest.text}`);
      const head = await target.upstream.headBlob(target.repository, digest.text);
      if (!head) throw new UpstreamBlobMissing(digest.text);
      return { size: head.size, outcome: 'miss' };
    } catch (error) {
      throw this.blobError(error, target, digest);
    }
  }

  private blobError(error: unknown, target: MirrorTarget, digest: Digest): unknown {
    if (error instanceof UpstreamBlobMissing) {
      return new RegistryError('BLOB_UNKNOWN', `blob ${digest.text} not found in ${target.upstream.name}/${target.repository}`, {
        detail: { digest: digest.text },
      });
    }
    return error;
  }

  // ---- manifests -----------------------------------------------------------------------

  async getManifestByDigest(target: MirrorTarget, digestText: string, accept: readonly string[]): Promise<ManifestResult> {
    const digest = parseDigest(digestText);
    let stored: StoredManifest | undefined;
    const found = await this.lookups.get<StoredManifest>({
      key: `v2-manifest|${target.upstream.name}|${digest.text}|${accept.join(',')}`,
      ttlMs: Number.POSITIVE_INFINITY, // content-addressed: never changes
      cached: async () => {
        stored = await this.manifests.get(digest);
        return stored && accepts(accept, stored.mediaType) ? { value: stored, fetchedAt: 0 } : undefined;
      },
      // Not cached, or cached in a type this client cannot take: ask upstream with its list.
      refresh: () => this.fetchManifest(target, digest.text, accept, digest),
    });
    if (!found) {
      if (this.offline) throw this.offlineMiss('MANIFEST_UNKNOWN', `manifest ${target.repository}@${digest.text}${stored ? ' in an accepted media type' : ''}`);
      throw manifestUnknown(target, digest.text);
    }
    if (found.outcome === 'hit') {
      if (!(await this.mayServeStored(target, digest, 'manifest'))) throw manifestUnknown(target, digest.text);
      this.tracker.touched(found.value.digest);
    }
    this.expectedSizes.learn(target.upstream.name, found.value);
    return { ...found.value, outcome: found.outcome };
  }

  /**
   * A tag within its TTL is answered from cache with no upstream request. Past the TTL we
   * revalidate with HEAD (free against Docker Hub's pull limit) and GET only if the digest
   * moved. If the upstream fails, the last known manifest is served stale.
   */
  async getManifestByTag(target: MirrorTarget, tag: string, accept: readonly string[]): Promise<ManifestResult> {
    const { upstream, repository } = target;
    const found = this.tagFromMemory(target, tag) ?? (await this.lookups
      .get<TaggedManifest>({
        key: `v2-tag|${upstream.name}|${repository}|${tag}`,
        ttlMs: upstream.tagTtlMs,
        cached: async () => this.taggedManifest(await this.tags.get(upstream.name, repository, tag)),
        latest: async () => this.taggedManifest(await this.tags.reload(upstream.name, repository, tag)),
        refresh: (previous) => this.refreshTag(target, tag, previous?.value),
        same: (known, fresh) => known.manifest.digest === fresh.manifest.digest,
        context: { upstream: upstream.name, repository, tag },
        describe: (known) => ({ digest: known.manifest.digest }),
      }));
    if (!found) throw this.offline ? this.offlineMiss('MANIFEST_UNKNOWN', `manifest ${repository}:${tag}`) : manifestUnknown(target, tag);
    const { manifest } = found.value;
    if (accepts(accept, manifest.mediaType)) {
      this.tracker.touched(manifest.digest);
      this.expectedSizes.learn(upstream.name, manifest);
      return { ...manifest, outcome: found.outcome };
    }
    if (this.offline) throw this.offlineMiss('MANIFEST_UNKNOWN', `manifest ${repository}:${tag} in an accepted media type`);
    return this.passThroughTag(target, tag, accept);
  }

  /**
   * The common case, a tag within its TTL whose record and manifest are in memory, answered
   * synchronously: the same rule as the cached lookup (servedFromCache) without building a
   * Lookup, its closures and three awaits per request. Anything else goes the full way.
   */
  private tagFromMemory(target: MirrorTarget, tag: string): { value: TaggedManifest; outcome: CacheOutcome } | undefined {
    const record = this.tags.peek(target.upstream.name, target.repository, tag);
    const manifest = record && this.manifests.peek(record.digest);
    const outcome = record && manifest && this.lookups.servedFromCache(record.checkedAt, target.upstream.tagTtlMs);
    return outcome ? { value: { record, manifest }, outcome } : undefined;
  }

  private async taggedManifest(record: TagRecord | undefined): Promise<CachedEntry<TaggedManifest> | undefined> {
    const manifest = record ? await this.manifests.get(parseDigest(record.digest)) : undefined;
    return record && manifest ? { value: { record, manifest }, fetchedAt: record.checkedAt } : undefined;
  }

  private async refreshTag(target: MirrorTarget, tag: string, known: TaggedManifest | undefined): Promise<TaggedManifest | undefined> {
    const { upstream, repository } = target;
    const acceptList = upstreamAcceptList([]);
    if (known) {
      const head = await upstream.headManifest(repository, tag, acceptList);
      if (!head) {
        await this.recordTag(this.tags.delete(upstream.name, repository, tag), target, tag);
        return undefined;
      }
      if (head.digest === known.manifest.digest) {
        const record = { ...known.record, checkedAt: this.now() };
        await this.recordTag(this.tags.put(upstream.name, repository, tag, record), target, tag);
        return { record, manifest: known.manifest };
      }
    }
    const fetched = await this.fetchManifest(target, tag, []);
    if (!fetched) {
      if (known) await this.recordTag(this.tags.delete(upstream.name, repository, tag), target, tag);
      return undefined;
    }
    const record: TagRecord = { digest: fetched.digest, mediaType: fetched.mediaType, checkedAt: this.now() };
    await this.recordTag(this.tags.put(upstream.name, repository, tag, record), target, tag);
    return { record, manifest: fetched };
  }

  /** A tag record that a full or read-only disk refuses is skipped: the answer is still right. */
  private async recordTag(write: Promise<void>, target: MirrorTarget, tag: string): Promise<void> {
    await write.catch((error: unknown) => {
      if (!isStorageRefusal(error)) throw error;
      this.storageRefusals.refused(error, `tag ${target.repository}:${tag}`);
    });
  }

  /**
   * A client that cannot take the tag's real manifest type (say, only schema2 for a list)
   * gets what the upstream gives for its own Accept list. Cached by digest, not as the tag.
   */
  private async passThroughTag(target: MirrorTarget, tag: string, accept: readonly string[]): Promise<ManifestResult> {
    const fetched = await this.fetchManifest(target, tag, accept, undefined, true);
    if (!fetched || !accepts(accept, fetched.mediaType)) {
      throw new RegistryError('MANIFEST_UNKNOWN', `no manifest of an accepted type for ${target.repository}:${tag}`, {
        detail: { tag, accept },
      });
    }
    this.expectedSizes.learn(target.upstream.name, fetched);
    return { ...fetched, outcome: 'miss' };
  }

  /** GETs a manifest upstream, verifies it, and stores it by digest. */
  private async fetchManifest(
    target: MirrorTarget,
    reference: string,
    clientAccept: readonly string[],
    expected?: Digest,
    exactAccept = false,
  ): Promise<StoredManifest | undefined> {
    const acceptList = exactAccept && clientAccept.length > 0 ? clientAccept : upstreamAcceptList(clientAccept);
    const fetched = await target.upstream.getManifest(target.repository, reference, acceptList);
    if (!fetched) return undefined;
    const actual = digestOf(fetched.bytes, expected?.algorithm ?? 'sha256');
    const claimed = expected?.text ?? fetched.statedDigest;
    if (claimed !== undefined && claimed.startsWith(`${expected?.algorithm ?? 'sha256'}:`) && claimed !== actual) {
      throw new UpstreamError(target.upstream.name, 'invalid', `manifest ${target.repository}:${reference} has digest ${actual}, expected ${claimed}`);
    }
    const digest = parseDigest(actual);
    try {
      const stored = await this.manifests.put(digest, fetched.bytes, fetched.mediaType);
      await this.recordOrigin(digest, target);
      this.tracker.added(stored.digest, stored.bytes.byteLength);
      return stored;
    } catch (error) {
      // A full or read-only disk: the client still gets the verified manifest, uncached.
      if (!isStorageRefusal(error)) throw error;
      this.storageRefusals.refused(error, `manifest ${target.repository}@${actual}`);
      return { digest: actual, mediaType: fetched.mediaType, bytes: fetched.bytes };
    }
  }

  // ---- tags ----------------------------------------------------------------------------

  async listTags(target: MirrorTarget): Promise<{ tags: string[]; outcome: CacheOutcome }> {
    if (this.offline) {
      const known = await this.tags.list(target.upstream.name, target.repository);
      if (known.length === 0) throw this.offlineMiss('NAME_UNKNOWN', `repository ${target.repository}`);
      return { tags: known, outcome: 'stale' };
    }
    try {
      const tags = await target.upstream.listTags(target.repository);
      if (!tags) throw new RegistryError('NAME_UNKNOWN', `repository ${target.repository} not found in ${target.upstream.name}`);
      return { tags, outcome: 'miss' };
    } catch (error) {
      if (error instanceof UpstreamError && error.isTransient) {
        const known = await this.tags.list(target.upstream.name, target.repository);
        if (known.length > 0) return { tags: known, outcome: 'stale' };
      }
      throw error;
    }
  }
}

function manifestUnknown(target: MirrorTarget, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest ${target.repository}:${reference} not found in ${target.upstream.name}`, {
    detail: { name: target.repository, reference },
  });
}
