// Coalesced upstream blob fetches. The first request for a missing blob starts one upstream
// GET whose bytes are written to a temp file and hashed as they arrive; every request for
// that blob (the first one included) reads the temp file as it grows. Readers never wait
// for the whole blob, the upstream is asked once, and the cache only ever gains the blob
// through BlobWriter.commit(), after its digest checked out.
//
// Readers hold back the final byte until the commit: a client whose fetch turns out to be
// corrupt sees an aborted response, never a complete-looking wrong one. With a writer whose
// commit is slow (BlobWriter.slowCommit: S3) they get it once the digest is verified, and the
// fetch stays joinable until the commit; a commit that fails then still fails the fetch.
//
// v2 blobs are fetched by digest and verified against it. v1 layers are fetched by image id:
// their digest is learned on commit, and a FetchSource may add its own check (the v1 payload
// checksum) that must pass before anything is stored.
import { Readable, type Writable } from 'node:stream';
import type { Leases } from '../coordination/ports.js';
import { createDigester, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { DigestMismatchError, SizeMismatchError, type BlobStore, type BlobWriter, type ByteRange, type SendableBlob } from '../storage/blob-store.js';
import { FollowingReader, receiveBody, writeFollowing, type FollowedBlob } from '../storage/growing-blob.js';
import { isStorageRefusal } from '../storage/refusal.js';
import type { CacheOutcome } from './outcome.js';
import type { UpstreamBlob } from '../upstream/upstream.js';
import { noteBufferChurn } from '../util/buffer-churn.js';
import { ChangeSignal, deferred } from '../util/deferred.js';

/** Where a fetch gets its bytes and how they are checked. */
export interface FetchSource {
  /** The digest the bytes must have (v2 blobs); undefined: learned on commit (v1 layers). */
  expected?: Digest;
  open(): Promise<UpstreamBlob | undefined>;
  /** Whether the content landed meanwhile (default: the expected digest is in the store). */
  alreadyStored?(): Promise<boolean>;
  /** An extra check over every byte, run before the commit; throws to reject the bytes. */
  verifier?(): { update(chunk: Buffer): void; check(size: number): void };
  /**
   * Runs after the commit and before anyone can miss the fetch: records where the bytes went.
   * Must not throw: the bytes are verified and stored by then, whatever the bookkeeping does.
   */
  stored?(digest: Digest, size: number): Promise<void>;
}

/** Raised to a joiner when the blob landed in the store between its lookup and its join. */
export class BlobAlreadyStored extends Error {
  constructor(digest: string) {
    super(`blob ${digest} is already stored`);
    this.name = 'BlobAlreadyStored';
  }
}

/**
 * Raised (instead of fetching) when another replica leads the fetch cluster-wide: its lease
 * names where it can be reached, and the bytes are to be followed from there.
 */
export class FetchHeldByPeer extends Error {
  constructor(
    readonly key: string,
    /** The leader's cluster.advertiseUrl. */
    readonly peerUrl: string,
  ) {
    super(`the fetch of ${key} is led by the replica at ${peerUrl}`);
    this.name = 'FetchHeldByPeer';
  }
}

/** Raised when the upstream says the blob does not exist. */
export class UpstreamBlobMissing extends Error {
  constructor(digest: string) {
    super(`blob ${digest} not found upstream`);
    this.name = 'UpstreamBlobMissing';
  }
}

type FetchState = 'starting' | 'streaming' | 'verified' | 'committed' | 'failed' | 'passthrough';

export interface InflightObserver {
  /**
   * Called once per fetch with the bytes received from `source` (the upstream) and the result:
   * the stored digest on success, the fetch's key on failure.
   */
  fetchFinished?(digest: string, bytes: number, error: Error | undefined, source: string): void;
  /**
   * Someone else holds the fetch lease. `peerUrl`: the leader, to be followed; undefined: it
   * named no address (or lapsed meanwhile), and this fetch goes ahead uncoordinated.
   */
  leaseRefused?(key: string, peerUrl: string | undefined): void;
}

export interface InflightOptions {
  /**
   * Cluster-wide claims on fetches: the leader holds `fetch:<key>` (renewed while it runs)
   * with its address (`advertiseUrl`), so a replica refused the lease follows the leader's
   * download (FetchHeldByPeer) instead of asking the upstream again.
   */
  leases?: Leases;
  /** Short, so the fetch of a leader that died is free again within seconds; renewed every third. */
  leaseTtlMs?: number;
  /** This replica's address for the other replicas (cluster.advertiseUrl), recorded with its leases. */
  advertiseUrl?: string;
}

/**
 * The fetch lease's default ttl, renewed every third of it while the fetch runs: short, so the
 * fetch of a leader that died (kill -9) is free again within seconds for a request on any replica.
 */
export const FETCH_LEASE_TTL_MS = 5_000;

export class BlobFetch implements FollowedBlob {
  private state: FetchState = 'starting';
  private failure: Error | undefined;
  private writer: BlobWriter | undefined;
  // The running fetch plus every joined request hold the fetch; the temp file's descriptor
  // closes when the last one leaves, so a small blob that lands before a joiner opens its
  // reader is still readable by it.
  private holds = 1;
  private readonly progress = new ChangeSignal();
  /** Resolves once bytes can be read (the upstream answered); rejects if the fetch fails first. */
  readonly ready: Promise<{ size: number | undefined }>;
  private readonly readyControl = deferred<{ size: number | undefined }>();
  size: number | undefined;
  /** Bytes that arrived from upstream, whether or not the fetch succeeded. */
  received = 0;
  /**
   * The chunk written last. Readers that keep up take their bytes from it instead of reading
   * the file back: no copy and no allocation per chunk on the hot path of a cold pull.
   */
  recent: { start: number; chunk: Buffer } | undefined;

  /** The digest the bytes were stored under, once committed. */
  storedDigest: Digest | undefined;
  /**
   * Set when the store cannot take the blob (full or read-only disk): the upstream body, for
   * one client to receive uncached. Whoever takes it first (the leader) gets it; others retry.
   */
  private passthrough: { upstream: UpstreamBlob; source: FetchSource } | undefined;

  constructor(
    /** What the fetch is for: a digest's text, or e.g. "v1:<upstream>:<image id>". */
    readonly key: string,
    // Called synchronously when the fetch commits or fails, so no request can join a
    // finished fetch: it finds the blob in the store, or starts afresh.
    private readonly onSettled: () => void,
  ) {
    this.ready = this.readyControl.promise;
    // A fetch nobody awaits (every client went away) must not crash the process.
    this.ready.catch(() => undefined);
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  get committed(): boolean {
    return this.state === 'committed';
  }

  /** Every byte is in and checked (committed, or verified with the commit still running). */
  get verified(): boolean {
    return this.state === 'verified' || this.state === 'committed';
  }

  /** The store could not take the blob: it goes to one client without being cached. */
  get uncached(): boolean {
    return this.state === 'passthrough';
  }

  async run(store: BlobStore, source: FetchSource): Promise<void> {
    let upstream: UpstreamBlob | undefined;
    try {
      const expected = source.expected;
      const stored = source.alreadyStored ? await source.alreadyStored() : expected !== undefined && (await store.stat(expected)) !== undefined;
      if (stored) throw new BlobAlreadyStored(this.key);
      upstream = await source.open();
      if (!upstream) throw new UpstreamBlobMissing(this.key);
      const writer = await this.stagingWriter(store, expected, upstream.size);
      if (!writer) {
        // Settled at once: later requests start their own fetch, which may find room again.
        this.passthrough = { upstream, source };
        this.state = 'passthrough';
        this.onSettled();
        this.readyControl.resolve({ size: upstream.size });
        return;
      }
      const verifier = source.verifier?.();
      this.writer = writer;
      this.size = upstream.size;
      this.state = 'streaming';
      this.readyControl.resolve({ size: upstream.size });
      await this.receive(upstream, writer, verifier);
      verifier?.check(writer.bytesWritten);
      if (writer.slowCommit) {
        // Readers may end now; nothing is published until the commit below succeeds.
        await writer.verify(upstream.size);
        this.state = 'verified';
        this.notify();
      }
      this.storedDigest = await writer.commit(upstream.size);
      this.size = writer.bytesWritten;
      await source.stored?.(this.storedDigest, this.size);
      this.state = 'committed';
      this.onSettled();
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error));
      this.state = 'failed';
      this.onSettled();
      this.readyControl.reject(this.failure);
      upstream?.body.destroy();
      await this.writer?.abort().catch(() => undefined);
    } finally {
      this.notify();
      this.leave();
    }
  }

  /** The upstream body into the writer, each chunk counted, checked and offered to readers. */
  private receive(upstream: UpstreamBlob, writer: BlobWriter, verifier: { update(chunk: Buffer): void } | undefined): Promise<void> {
    return receiveBody(upstream.body, writer, `upstream body of ${this.key}`, (start, chunk) => {
      this.received += chunk.byteLength;
      noteBufferChurn(chunk.byteLength);
      if (upstream.size !== undefined && start + chunk.byteLength > upstream.size) {
        throw new Error(`upstream sent more than its Content-Length of ${upstream.size} bytes for ${this.key}`);
      }
      verifier?.update(chunk);
      this.recent = { start, chunk };
      this.notify();
    });
  }

  /** A writer for the blob, or undefined when the store has no room or refuses writes. */
  private async stagingWriter(store: BlobStore, expected: Digest | undefined, size: number | undefined): Promise<BlobWriter | undefined> {
    if (store.hasRoomFor && !(await store.hasRoomFor(size))) return undefined;
    try {
      return await store.createWriter(expected);
    } catch (error) {
      if (isStorageRefusal(error)) return undefined;
      throw error;
    }
  }

  /**
   * Claims the upstream body of a fetch the store could not take, for one client; undefined
   * if another request claimed it first. Send it through `passthroughStream`.
   */
  claimPassthrough(): { upstream: UpstreamBlob; source: FetchSource } | undefined {
    const claimed = this.passthrough;
    this.passthrough = undefined;
    return claimed;
  }

  /** Registers one more participant; balanced by leave() or by the reader it opens. */
  hold(): void {
    this.holds += 1;
  }

  leave(): void {
    this.holds -= 1;
    if (this.holds === 0) this.writer?.close();
  }

  /**
   * A stream of the blob (or a range of it) that follows the download as it lands. Takes
   * over the caller's hold: the reader leaves the fetch when it is destroyed.
   */
  openReader(range?: ByteRange): Readable {
    if (!this.writer) throw new Error(`reader opened before fetch of ${this.key} was ready`);
    return new FollowingReader(this, this.writer, range);
  }

  /** openReader() written into `destination` without a stream in between (writeFollowing). */
  writeTo(destination: Writable, range?: ByteRange): Promise<void> {
    if (!this.writer) throw new Error(`writeTo before fetch of ${this.key} was ready`);
    return writeFollowing(this, this.writer, destination, range);
  }

  /** Resolves at the next progress or state change. */
  changed(): Promise<void> {
    return this.progress.next();
  }

  private notify(): void {
    this.progress.fire();
  }
}

/**
 * An upstream body for one client as it is, uncached (a store without room), checked on the
 * way (verifiedPassthrough); discard() hangs up on the upstream if it was never opened.
 */
export function passthroughBlob(upstream: UpstreamBlob, source: FetchSource, key: string): SendableBlob {
  let taken = false;
  return {
    size: upstream.size,
    open: (range) => {
      if (taken) throw new Error(`passthrough body of ${key} was opened twice`);
      taken = true;
      return Readable.from(verifiedPassthrough(upstream, source, range));
    },
    discard: () => {
      if (!taken) upstream.body.destroy();
      taken = true;
      return Promise.resolve();
    },
  };
}

/** A held, ready fetch as a blob to send: its reader takes over the hold, or discard() leaves. */
export function followingBlob(fetch: BlobFetch, size: number | undefined): SendableBlob {
  let taken = false;
  return {
    size,
    open: (range) => {
      taken = true;
      return fetch.openReader(range);
    },
    discard: () => {
      if (!taken) fetch.leave();
      taken = true;
      return Promise.resolve();
    },
    // With a known length, GETs are written straight into the response (writeFollowing): the
    // chunks that land in one poll of the event loop leave in one writev, where a piped stream
    // made a write per 64 KiB chunk, and bytes read back from the file go through pooled buffers.
    ...(size === undefined
      ? {}
      : {
          writeTo: (destination: Writable, range?: ByteRange) => {
            taken = true;
            return fetch.writeTo(destination, range);
          },
        }),
  };
}

/** The fetches in progress, by key (digest, or v1 image): the coalescing point for both APIs. */
export class InflightBlobs {
  private readonly fetches = new Map<string, BlobFetch>();

  constructor(
    private readonly observer: InflightObserver = {},
    private readonly options: InflightOptions = {},
  ) {}

  get count(): number {
    return this.fetches.size;
  }

  /**
   * Joins (or starts) the fetch for `key` and answers a blob that reads it as it lands;
   * undefined when the content reached the store meanwhile (look there again). The one path
   * v2 blobs and v1 layers take on a miss.
   */
  async follow(key: string, store: BlobStore, source: FetchSource, sourceName: string, retried = false): Promise<(SendableBlob & { outcome: CacheOutcome }) | undefined> {
    const { fetch, leader } = this.join(key, store, source, sourceName, retried);
    let size: number | undefined;
    try {
      ({ size } = await fetch.ready);
    } catch (error) {
      fetch.leave();
      if (error instanceof BlobAlreadyStored) return undefined;
      throw error;
    }
    if (fetch.uncached) return this.passThrough(fetch, size, key, store, source, sourceName, retried);
    return { ...followingBlob(fetch, size), outcome: leader ? 'miss' : 'coalesced' };
  }

  /**
   * The store could not take the blob: the leader streams the upstream body straight to its
   * client, uncached; a request that joined it asks upstream once more for itself.
   */
  private async passThrough(
    fetch: BlobFetch,
    size: number | undefined,
    key: string,
    store: BlobStore,
    source: FetchSource,
    sourceName: string,
    retried: boolean,
  ): Promise<(SendableBlob & { outcome: CacheOutcome }) | undefined> {
    fetch.leave();
    const claimed = fetch.claimPassthrough();
    if (!claimed) {
      // Cannot happen to a fetch of our own (`retried`); guarded against a loop all the same.
      if (retried) throw new RegistryError('UNAVAILABLE', `blob ${key} cannot be cached now (storage full); retry`, { headers: { 'retry-after': '1' } });
      return this.follow(key, store, source, sourceName, true);
    }
    return { ...passthroughBlob(claimed.upstream, claimed.source, key), size, outcome: 'miss' };
  }

  /**
   * Joins the fetch in progress for `key`, or starts one (`leader`). The caller holds the
   * fetch until it calls `fetch.leave()` or hands the hold to `fetch.openReader()`.
   */
  join(key: string, store: BlobStore, source: FetchSource, sourceName = 'upstream', alone = false): { fetch: BlobFetch; leader: boolean } {
    const existing = alone ? undefined : this.fetches.get(key);
    if (existing) {
      existing.hold();
      return { fetch: existing, leader: false };
    }
    // `alone`: a fetch for one client that nobody joins (a retry after a full store sent the
    // shared one to another client).
    const fetch = new BlobFetch(key, () => {
      if (this.fetches.get(key) === fetch) this.fetches.delete(key);
    });
    fetch.hold();
    if (!alone) this.fetches.set(key, fetch);
    void this.runClaimed(fetch, store, source).then(() => {
      // Handed to a peer: no fetch happened here.
      if (!(fetch.failed instanceof FetchHeldByPeer)) this.observer.fetchFinished?.(fetch.storedDigest?.text ?? key, fetch.received, fetch.failed, sourceName);
    });
    return { fetch, leader: true };
  }

  /**
   * Follows the fetch of `key` in progress here, for another replica (the peer route); never
   * starts one. Undefined when none runs (it committed, failed or never started here), or when
   * it was handed on itself.
   */
  async followRunning(key: string): Promise<SendableBlob | undefined> {
    const fetch = this.fetches.get(key);
    if (!fetch) return undefined;
    fetch.hold();
    let size: number | undefined;
    try {
      ({ size } = await fetch.ready);
    } catch {
      fetch.leave();
      return undefined;
    }
    if (fetch.uncached) {
      fetch.leave();
      return undefined;
    }
    return followingBlob(fetch, size);
  }

  /** Runs the fetch holding its lease (when there is a lease port), renewed until it settles. */
  private async runClaimed(fetch: BlobFetch, store: BlobStore, source: FetchSource): Promise<void> {
    const leases = this.options.leases;
    if (!leases) return fetch.run(store, source);
    const ttlMs = this.options.leaseTtlMs ?? FETCH_LEASE_TTL_MS;
    const self = this.options.advertiseUrl;
    const leaseKey = `fetch:${fetch.key}`;
    const lease = await leases.tryAcquire(leaseKey, ttlMs, self).catch(() => undefined);
    let peerUrl: string | undefined;
    if (!lease) {
      peerUrl = await leases.holder(leaseKey).catch(() => undefined);
      if (peerUrl === self) peerUrl = undefined; // our own `alone` fetch: nothing to follow
      this.observer.leaseRefused?.(fetch.key, peerUrl);
    }
    // Followers ask the leader, not the upstream, at once: the caller looked in the store just
    // before, and a leader that committed meanwhile answers "not in flight" (look again).
    const leader = peerUrl;
    const claimedSource: FetchSource =
      leader === undefined ? source : { ...source, alreadyStored: () => Promise.resolve(false), open: () => Promise.reject(new FetchHeldByPeer(fetch.key, leader)) };
    const renewal = lease ? setInterval(() => void lease.renew().catch(() => undefined), ttlMs / 3) : undefined;
    renewal?.unref();
    try {
      await fetch.run(store, claimedSource);
    } finally {
      clearInterval(renewal);
      await lease?.release().catch(() => undefined);
    }
  }
}

/**
 * The bytes of an upstream blob for one client, checked as the cache would check them: the
 * digest (or the source's own verifier) and the stated size, with the final chunk held back
 * until they pass, so a corrupt blob ends in an aborted response, never a complete wrong one.
 * A range ends at its last byte without reading the rest (as a following reader would).
 */
export async function* verifiedPassthrough(upstream: UpstreamBlob, source: FetchSource, range: ByteRange | undefined): AsyncGenerator<Buffer> {
  const hash = source.expected ? createDigester(source.expected.algorithm) : undefined;
  const verifier = source.verifier?.();
  const first = range?.start ?? 0;
  const last = range?.end ?? Number.POSITIVE_INFINITY;
  let position = 0;
  let held: Buffer | undefined;
  try {
    for await (const chunk of upstream.body as AsyncIterable<Buffer>) {
      hash?.update(chunk);
      verifier?.update(chunk);
      const from = Math.max(first - position, 0);
      const to = Math.min(last + 1 - position, chunk.byteLength);
      position += chunk.byteLength;
      if (upstream.size !== undefined && position > upstream.size) throw new SizeMismatchError(source.expected?.text ?? 'blob', upstream.size, position);
      if (held) yield held;
      held = to > from ? chunk.subarray(from, to) : undefined;
      if (position > last) {
        if (held) yield held;
        return;
      }
    }
    if (upstream.size !== undefined && position !== upstream.size) throw new SizeMismatchError(source.expected?.text ?? 'blob', upstream.size, position);
    if (source.expected && hash) {
      const hex = hash.digest('hex');
      if (hex !== source.expected.hex) throw new DigestMismatchError(source.expected.text, `${source.expected.algorithm}:${hex}`, position);
    }
    verifier?.check(position);
    if (held) yield held;
  } finally {
    upstream.body.destroy();
  }
}
