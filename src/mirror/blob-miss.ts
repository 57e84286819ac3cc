// The one blob path of the pull-through engine, for v2 blobs and v1 layers alike: serve the
// stored blob (touching it for the LRU), or follow the in-flight fetch of it (starting one if
// none runs), and try once more when a fetch committed between the lookup and the join.
// With several replicas, a replica refused the fetch lease follows the leader's download over
// a peer request instead (src/cluster/peer-follower.ts: one per replica, its clients share it); when the leader cannot be reached, or
// breaks off mid-stream, it waits for the dead leader's lease to lapse and looks again: the
// blob is in the store, or it leads the fetch itself (a takeover), or follows a new leader.
// What differs between the two (how the digest is known, the upstream request, extra checks
// on the bytes, who may be served a stored copy) comes in with the request.
import type { Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { Readable } from 'node:stream';
import { sendableBlob, type BlobStore, type SendableBlob } from '../storage/blob-store.js';
import type { PeerFollower } from '../cluster/peer-follower.js';
import { FetchHeldByPeer, UpstreamBlobMissing, type FetchSource, type InflightBlobs } from './inflight.js';
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

// A fetch can commit between our store lookup and our join (one more round); with peers, the
// leader can also finish or die between our join and our request to it (one more each).
const ROUNDS = 2;
const ROUNDS_WITH_PEERS = 4;

export class BlobMisses {
  constructor(
    private readonly blobs: BlobStore,
    private readonly inflight: InflightBlobs,
    private readonly tracker: CacheTracker,
    private readonly offline: boolean,
    /** Set with several replicas: how a replica refused the fetch lease follows the leader. */
    private readonly peers?: PeerFollower,
  ) {}

  /** `leaderLost`: a follower looks again after the leader it followed broke off. */
  async serve(miss: BlobMiss, leaderLost = false): Promise<BlobResult> {
    const rounds = this.peers ? ROUNDS_WITH_PEERS : ROUNDS;
    for (let round = 0; round < rounds; round++) {
      const digest = await miss.storedDigest(round);
      if (digest) {
        const stored = await this.openStored(digest, miss);
        if (stored) return stored;
      }
      if (this.offline) throw miss.offlineMiss();
      let following: BlobResult | undefined;
      try {
        following = await this.inflight.follow(miss.key, this.blobs, miss.source, miss.upstream);
      } catch (error) {
        if (error instanceof UpstreamBlobMissing) throw miss.missing();
        if (!(error instanceof FetchHeldByPeer) || !this.peers) throw error;
        // Clients of this replica share one follow of the leader; a look after a leader was lost
        // (a takeover resuming that shared follow) asks on its own, or it would wait on itself.
        const fromPeer = await this.peers.follow(error, miss.source, (offset) => this.resume(miss, offset), leaderLost);
        if (fromPeer.kind === 'following') return { ...fromPeer.blob, outcome: 'coalesced' };
        if (fromPeer.kind === 'unreachable') {
          leaderLost = true;
          await this.peers.leaderGone(error);
        }
        continue; // not in flight there any more: it committed (the store has it) or failed
      }
      if (following) {
        if (leaderLost && following.outcome === 'miss') this.peers?.tookOver(miss.key);
        return following;
      }
    }
    throw new RegistryError('UNKNOWN', `${miss.key} vanished while being stored`);
  }

  /** The rest of a blob from `offset`, found afresh after the leader being followed was lost. */
  private async resume(miss: BlobMiss, offset: number): Promise<Readable> {
    const again = await this.serve(miss, true);
    if (again.size === undefined || offset > again.size) {
      await again.discard();
      throw new RegistryError('UNKNOWN', `${miss.key}: cannot resume at byte ${offset} of a blob of ${again.size ?? 'unknown'} bytes`);
    }
    if (offset === again.size) {
      await again.discard();
      return Readable.from([]);
    }
    return again.open({ start: offset, end: again.size - 1 });
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
