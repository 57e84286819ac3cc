// The pull-through policy, one place for every API: serve from the cache, fetch misses from
// the upstream (coalesced), keep tags fresh within their TTL, and serve stale when the
// upstream fails. Routes call this; it never sees HTTP.
import type { Logger } from 'pino';
import { parseDigest, digestOf, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { accepts, upstreamAcceptList } from '../protocol/media-types.js';
import { sendableBlob, type BlobStore, type SendableBlob } from '../storage/blob-store.js';
import type { ManifestStore, StoredManifest } from '../storage/manifest-store.js';
import { isStorageRefusal, StorageRefusalLog } from '../storage/refusal.js';
import { UpstreamError } from '../upstream/errors.js';
import { UpstreamBlobMissing, type InflightBlobs } from './inflight.js';
import type { CacheOutcome } from './outcome.js';
import type { MirrorTarget } from './router.js';
import { SingleFlight } from './single-flight.js';
import type { TagRecords, TagRecord } from './tag-records.js';

/** A blob to send (hit: the stored file; miss: following the fetch) and how it was found. */
export interface BlobResult extends SendableBlob {
  outcome: CacheOutcome;
}

export interface ManifestResult extends StoredManifest {
  outcome: CacheOutcome;
}

/** Where the mirror reports cache traffic, for the size bound (CacheIndex implements it). */
export interface CacheTracker {
  added(digest: string, size: number): void;
  touched(digest: string): void;
  forget(digest: string): void;
}

export interface MirrorOptions {
  /** Never contact an upstream: answer from the cache or with a 404. */
  offline: boolean;
  tracker: CacheTracker;
  /** Digests of private content (pushed here): never served as mirrored content on their own say-so. */
  isPrivate: (digest: string) => Promise<boolean>;
  now?: () => number;
}

export class PullThroughMirror {
  private readonly manifestFetches = new SingleFlight<StoredManifest | undefined>();
  private readonly tagChecks = new SingleFlight<StoredManifest | undefined>();

  private readonly offline: boolean;
  private readonly tracker: CacheTracker;
  private readonly isPrivate: (digest: string) => Promise<boolean>;
  private readonly now: () => number;
  private readonly storageRefusals: StorageRefusalLog;

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
    this.now = options.now ?? Date.now;
  }

  /**
   * The store is content-addressed and shared with private repositories. A digest that is
   * private content is served under a mirrored name only if the upstream confirms it has it
   * there (the bytes are then the same); otherwise knowing a digest would be enough to read
   * a private image through any mirrored name.
   */
  private async mayServeStored(target: MirrorTarget, digest: Digest, kind: 'blob' | 'manifest'): Promise<boolean> {
    if (!(await this.isPrivate(digest.text))) return true;
    if (this.offline) return false;
    const found =
      kind === 'blob'
        ? await target.upstream.headBlob(target.repository, digest.text)
        : await target.upstream.headManifest(target.repository, digest.text, upstreamAcceptList([]));
    return found !== undefined;
  }

  private offlineMiss(code: 'BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN' | 'NAME_UNKNOWN', what: string): RegistryError {
    return new RegistryError(code, `${what} is not cached, and offline mode is on (no upstream is asked)`);
  }

  // ---- blobs ---------------------------------------------------------------------------

  async getBlob(target: MirrorTarget, digestText: string): Promise<BlobResult> {
    const digest = parseDigest(digestText);
    // Two rounds at most: a fetch can commit between our store lookup and our join.
    for (let round = 0; round < 2; round++) {
      const handle = await this.blobs.open(digest);
      if (handle) {
        let allowed: boolean;
        try {
          allowed = await this.mayServeStored(target, digest, 'blob');
        } catch (error) {
          await handle.close();
          throw this.blobError(error, target, digest);
        }
        if (!allowed) {
          await handle.close();
          throw this.blobError(new UpstreamBlobMissing(digest.text), target, digest);
        }
        this.tracker.touched(digest.text);
        return { ...sendableBlob(handle), outcome: 'hit' };
      }
      this.tracker.forget(digest.text);
      if (this.offline) throw this.offlineMiss('BLOB_UNKNOWN', `blob ${digest.text}`);
      const source = { expected: digest, open: () => target.upstream.fetchBlob(target.repository, digest.text) };
      const following = await this.inflight.follow(digest.text, this.blobs, source, target.upstream.name).catch((error: unknown) => {
        throw this.blobError(error, target, digest);
      });
      if (following) return following;
    }
    throw new RegistryError('UNKNOWN', `blob ${digest.text} vanished while being stored`);
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
    return toRegistryError(error);
  }

  // ---- manifests -----------------------------------------------------------------------

  async getManifestByDigest(target: MirrorTarget, digestText: string, accept: readonly string[]): Promise<ManifestResult> {
    const digest = parseDigest(digestText);
    const stored = await this.manifests.get(digest);
    if (stored && accepts(accept, stored.mediaType)) {
      const allowed = await this.mayServeStored(target, digest, 'manifest').catch((error: unknown) => {
        throw toRegistryError(error);
      });
      if (!allowed) throw manifestUnknown(target, digest.text);
      this.tracker.touched(stored.digest);
      return { ...stored, outcome: 'hit' };
    }
    if (this.offline) throw this.offlineMiss('MANIFEST_UNKNOWN', `manifest ${target.repository}@${digest.text}${stored ? ' in an accepted media type' : ''}`);
    // Not cached, or cached in a type this client cannot take: ask upstream with its list.
    const { promise, shared } = this.manifestFetches.run(`${target.upstream.name}|${digest.text}|${accept.join(',')}`, () =>
      this.fetchManifest(target, digest.text, accept, digest),
    );
    const fetched = await promise.catch((error: unknown) => {
      throw toRegistryError(error);
    });
    if (!fetched) throw manifestUnknown(target, digest.text);
    return { ...fetched, outcome: shared ? 'coalesced' : 'miss' };
  }

  /**
   * A tag within its TTL is answered from cache with no upstream request. Past the TTL we
   * revalidate with HEAD (free against Docker Hub's pull limit) and GET only if the digest
   * moved. If the upstream fails, the last known manifest is served stale.
   */
  async getManifestByTag(target: MirrorTarget, tag: string, accept: readonly string[]): Promise<ManifestResult> {
    const { upstream, repository } = target;
    const record = await this.tags.get(upstream.name, repository, tag);
    const known = record ? await this.manifests.get(parseDigest(record.digest)) : undefined;
    const fresh = record !== undefined && this.now() - record.checkedAt < upstream.tagTtlMs;
    if (known && (fresh || this.offline)) {
      if (accepts(accept, known.mediaType)) {
        this.tracker.touched(known.digest);
        return { ...known, outcome: fresh ? 'hit' : 'stale' };
      }
      if (!this.offline) return this.passThroughTag(target, tag, accept);
    }
    if (this.offline) throw this.offlineMiss('MANIFEST_UNKNOWN', `manifest ${target.repository}:${tag}${known ? ' in an accepted media type' : ''}`);

    const { promise, shared } = this.tagChecks.run(`${upstream.name}|${repository}|${tag}`, () => this.refreshTag(target, tag, record, known));
    let manifest: StoredManifest | undefined;
    try {
      manifest = await promise;
    } catch (error) {
      if (known && error instanceof UpstreamError && error.isTransient) {
        this.log.warn({ upstream: upstream.name, repository, tag, digest: known.digest, err: error.message }, 'upstream failed; serving stale tag');
        if (accepts(accept, known.mediaType)) return { ...known, outcome: 'stale' };
      }
      throw toRegistryError(error);
    }
    if (!manifest) throw manifestUnknown(target, tag);
    if (!accepts(accept, manifest.mediaType)) return this.passThroughTag(target, tag, accept);
    const outcome: CacheOutcome = shared ? 'coalesced' : known?.digest === manifest.digest ? 'hit' : 'miss';
    return { ...manifest, outcome };
  }

  private async refreshTag(target: MirrorTarget, tag: string, record: TagRecord | undefined, known: StoredManifest | undefined): Promise<StoredManifest | undefined> {
    const { upstream, repository } = target;
    const acceptList = upstreamAcceptList([]);
    if (record && known) {
      const head = await upstream.headManifest(repository, tag, acceptList);
      if (!head) {
        await this.recordTag(this.tags.delete(upstream.name, repository, tag), target, tag);
        return undefined;
      }
      if (head.digest === known.digest) {
        await this.recordTag(this.tags.put(upstream.name, repository, tag, { ...record, checkedAt: this.now() }), target, tag);
        return known;
      }
    }
    const fetched = await this.fetchManifest(target, tag, []);
    if (!fetched) {
      if (record) await this.recordTag(this.tags.delete(upstream.name, repository, tag), target, tag);
      return undefined;
    }
    await this.recordTag(this.tags.put(upstream.name, repository, tag, { digest: fetched.digest, mediaType: fetched.mediaType, checkedAt: this.now() }), target, tag);
    return fetched;
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
    const fetched = await this.fetchManifest(target, tag, accept, undefined, true).catch((error: unknown) => {
      throw toRegistryError(error);
    });
    if (!fetched || !accepts(accept, fetched.mediaType)) {
      throw new RegistryError('MANIFEST_UNKNOWN', `no manifest of an accepted type for ${target.repository}:${tag}`, {
        detail: { tag, accept },
      });
    }
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
    try {
      const stored = await this.manifests.put(parseDigest(actual), fetched.bytes, fetched.mediaType);
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
      throw toRegistryError(error);
    }
  }
}

function manifestUnknown(target: MirrorTarget, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest ${target.repository}:${reference} not found in ${target.upstream.name}`, {
    detail: { name: target.repository, reference },
  });
}

/** Upstream failures in the client's terms: 429 stays 429, anything else unreachable is 502/503. */
export function toRegistryError(error: unknown): unknown {
  if (!(error instanceof UpstreamError)) return error;
  switch (error.kind) {
    case 'rate-limited':
      return new RegistryError('TOOMANYREQUESTS', error.message, {
        headers: error.options.retryAfterSeconds !== undefined ? { 'retry-after': String(error.options.retryAfterSeconds) } : {},
        cause: error,
      });
    case 'denied':
      // Docker Hub answers 401 for repositories that do not exist; to a mirror client both
      // mean "not here", and a 404 lets docker and containerd fall back to the next source.
      return new RegistryError('NAME_UNKNOWN', error.message, { cause: error });
    case 'unavailable':
      return new RegistryError('UNAVAILABLE', error.message, { status: 502, cause: error });
    case 'invalid':
      return new RegistryError('UNKNOWN', error.message, { status: 502, cause: error });
  }
}
