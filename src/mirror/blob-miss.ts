// The one blob path of the pull-through engine, for v2 blobs and v1 layers alike: serve the
// stored blob (touching it for the LRU), or follow the in-flight fetch of it (starting one if
// none runs), and try once more when a fetch committed between the lookup and the join.
// What differs between the two (how the digest is known, the upstream request, extra checks
// on the bytes, who may be served a stored copy) comes in with the request.
import type { Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { sendableBlob, type BlobStore, type SendableBlob } from '../storage/blob-store.js';
import { UpstreamBlobMissing, type FetchSource, type InflightBlobs } from './inflight.js';
import type { CacheOutcome } from './outcome.js';

/** A blob to send (hit: the stored file; miss: following the fetch) and how it was found. */
export interface BlobResult extends SendableBlob {
  outcome: CacheOutcome;
}

/** Where the mirror reports cache traffic, for the size bound (CacheIndex implements it). */
export interface CacheTracker {
  added(digest: string, size: number): void;
  touched(digest: string): void;
  forget(digest: string): void;
}

export interface BlobMiss {
  /** The in-flight key: the digest (v2 blobs), or "v1:<upstream>:<image id>" (v1 layers). */
  key: string;
  /** The upstream's name, for metrics. */
  upstream: string;
  /**
   * The digest the content is stored under, if known (v2: always; v1: once the layer was
   * stored). `round` 0 is the first look; later rounds follow a fetch that committed.
   */
  storedDigest(round: number): Promise<Digest | undefined>;
  /** Whether a stored copy may be served for this request (the private-digest guard). */
  mayServe?(digest: Digest): Promise<boolean>;
  source: FetchSource;
  /** The error when the upstream does not have it, or a stored copy may not be served. */
  missing(): Error;
  /** The error when it is not stored and offline mode is on. */
  offlineMiss(): Error;
}

export class BlobMisses {
  constructor(
    private readonly blobs: BlobStore,
    private readonly inflight: InflightBlobs,
    private readonly tracker: CacheTracker,
    private readonly offline: boolean,
  ) {}

  async serve(miss: BlobMiss): Promise<BlobResult> {
    // Two rounds at most: a fetch can commit between our store lookup and our join.
    for (let round = 0; round < 2; round++) {
      const digest = await miss.storedDigest(round);
      if (digest) {
        const stored = await this.openStored(digest, miss);
        if (stored) return stored;
      }
      if (this.offline) throw miss.offlineMiss();
      const following = await this.inflight.follow(miss.key, this.blobs, miss.source, miss.upstream).catch((error: unknown) => {
        throw error instanceof UpstreamBlobMissing ? miss.missing() : error;
      });
      if (following) return following;
    }
    throw new RegistryError('UNKNOWN', `${miss.key} vanished while being stored`);
  }

  private async openStored(digest: Digest, miss: BlobMiss): Promise<BlobResult | undefined> {
    const handle = await this.blobs.open(digest);
    if (!handle) {
      this.tracker.forget(digest.text); // evicted or collected: no longer counted
      return undefined;
    }
    let allowed = true;
    try {
      if (miss.mayServe) allowed = await miss.mayServe(digest);
    } catch (error) {
      await handle.close();
      throw error;
    }
    if (!allowed) {
      await handle.close();
      throw miss.missing();
    }
    this.tracker.touched(digest.text);
    return { ...sendableBlob(handle), outcome: 'hit' };
  }
}
