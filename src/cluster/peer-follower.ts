// The follower side of a cluster-wide fetch: a replica refused the fetch lease asks the leader
// (the address in the lease) for the bytes of its download in progress, as they land, over an
// authenticated internal request. The leader holds back the final byte until it verified the
// digest; this side checks the digest (or the v1 checksum) again and holds back its own last
// chunk, so a client never receives a complete-looking wrong or short blob.
//
// One peer stream per blob per replica: the first client's follow writes the leader's bytes to
// a local copy (peer-copies.ts, a BlobFetch like an upstream fetch, but never published: the
// leader commits), and every client of this replica asking for that blob meanwhile reads the
// copy as it grows. Without one, 16 clients over 3 replicas made 10 requests to the leader,
// each with its own digest check on the event loop.
//
// A leader that dies or breaks off mid-stream is taken over: once its lease lapsed, the rest
// of the blob (from the offset reached) comes from wherever a new look finds it (the bucket,
// a fetch this replica now leads, or a new leader), and the digest is checked over the whole.
// Without a way to resume, or if that fails too, the client's response ends aborted.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Agent, request, type Dispatcher } from 'undici';
import type { Leases } from '../coordination/ports.js';
import type { BlobStore, ByteRange, SendableBlob } from '../storage/blob-store.js';
import { BlobFetch, followingBlob, passthroughBlob, verifiedPassthrough, type FetchHeldByPeer, type FetchSource } from '../mirror/inflight.js';
import type { UpstreamBlob } from '../upstream/upstream.js';
import { peerFetchUrl, type PeerToken } from './peer-protocol.js';

/** How a follow ended, for longshore_peer_follows_total. */
export type PeerFollowResult = 'completed' | 'failed' | 'not_in_flight';

export interface PeerMetrics {
  peerFollow(result: PeerFollowResult): void;
  leaseTakeover(): void;
}

/**
 * Finds the blob again after its leader was lost, and streams it from `offset` to the end.
 * Called once the dead leader's lease is no longer its own.
 */
export type ResumeFrom = (offset: number) => Promise<AsyncIterable<Buffer>>;

export type PeerFollow =
  /** The leader streams it: send this (it verifies as it goes). */
  | { kind: 'following'; blob: SendableBlob }
  /** The leader has no such fetch running (it committed, failed or ended): look again. */
  | { kind: 'not-in-flight' }
  /** The leader could not be asked (died, unreachable, refused us). */
  | { kind: 'unreachable'; error: Error };

export interface PeerFollowerOptions {
  token: PeerToken;
  leases: Leases;
  /** The fetch lease's ttl: how long a dead leader's lease can outlive it. */
  leaseTtlMs: number;
  metrics: PeerMetrics;
  log: Logger;
  /**
   * Where this replica keeps the copy that its clients share (PeerCopyStore, initialised).
   * Unset: every client follows the leader on a request of its own.
   */
  copies?: BlobStore;
}

// A leader on loopback or a LAN answers at once; one that does not is taken for dead.
const CONNECT_TIMEOUT_MS = 3_000;
const HEADERS_TIMEOUT_MS = 30_000;
// A leader whose upstream stalls sends nothing either; the leader's own upstream timeouts
// end such a fetch, this only bounds a leader that hangs.
const BODY_TIMEOUT_MS = 120_000;
const LAPSE_POLL_MS = 100;

/** The leader's answer, before anyone reads it: its bytes, or why there are none. */
type PeerStream = { kind: 'streaming'; blob: UpstreamBlob } | { kind: 'not-in-flight' } | { kind: 'unreachable'; error: Error };

/** Ends a shared follow that got no bytes, carrying the reason to each client waiting on it. */
class PeerStreamRefused extends Error {
  constructor(readonly outcome: Exclude<PeerStream, { kind: 'streaming' }>) {
    super(outcome.kind === 'unreachable' ? outcome.error.message : 'the fetch is not in flight on the leader');
    this.name = 'PeerStreamRefused';
  }
}

export class PeerFollower {
  private readonly agent: Dispatcher;
  /** The follows this replica runs into a local copy, by fetch key: one per blob. */
  private readonly shared = new Map<string, BlobFetch>();

  constructor(private readonly options: PeerFollowerOptions) {
    this.agent = new Agent({ connect: { timeout: CONNECT_TIMEOUT_MS }, headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: BODY_TIMEOUT_MS });
  }

  /**
   * The whole blob (or, through open(range), a part) from the leader named by `held`, checked
   * against `source`; `resume` takes over if the leader is lost mid-stream (blobs of a known
   * size only). Joins this replica's follow of that blob if one runs, else starts it; `alone`:
   * a request of its own (a takeover's resume, which must not wait on the follow it resumes).
   */
  async follow(held: FetchHeldByPeer, source: FetchSource, resume?: ResumeFrom, alone = false): Promise<PeerFollow> {
    const copies = this.options.copies;
    if (alone || !copies) return this.followAlone(held, source, resume);
    let fetch = this.shared.get(held.key);
    if (fetch) fetch.hold();
    else fetch = this.startShared(held, source, resume, copies);
    let size: number | undefined;
    try {
      ({ size } = await fetch.ready);
    } catch (error) {
      fetch.leave();
      if (error instanceof PeerStreamRefused) return error.outcome;
      throw error;
    }
    if (fetch.uncached) {
      // No room here for a copy: the first client gets the stream as it is, the others ask alone.
      fetch.leave();
      const claimed = fetch.claimPassthrough();
      if (!claimed) return this.followAlone(held, source, resume);
      return { kind: 'following', blob: passthroughBlob(claimed.upstream, source, held.key) };
    }
    return { kind: 'following', blob: followingBlob(fetch, size) };
  }

  /** A follow whose bytes land in a local copy that every client of this replica reads. */
  private startShared(held: FetchHeldByPeer, source: FetchSource, resume: ResumeFrom | undefined, copies: BlobStore): BlobFetch {
    const fetch: BlobFetch = new BlobFetch(held.key, () => {
      if (this.shared.get(held.key) === fetch) this.shared.delete(held.key);
    });
    fetch.hold(); // the caller's, besides the run's own
    this.shared.set(held.key, fetch);
    const verifier = source.verifier?.bind(source);
    const fromLeader: FetchSource = {
      ...(source.expected ? { expected: source.expected } : {}),
      ...(verifier ? { verifier } : {}),
      // The leader looked at the store and records the blob once committed (no `stored` here).
      alreadyStored: () => Promise.resolve(false),
      open: async () => {
        const stream = await this.openStream(held, resume);
        if (stream.kind !== 'streaming') throw new PeerStreamRefused(stream);
        return stream.blob;
      },
    };
    void fetch.run(copies, fromLeader).then(() => {
      const failure = fetch.failed;
      if (failure && !(failure instanceof PeerStreamRefused)) {
        this.options.log.warn({ fetch: held.key, peer: held.peerUrl, err: failure.message }, 'a fetch followed from another replica failed; its responses are aborted');
      }
    });
    return fetch;
  }

  /** One client's own request to the leader. */
  private async followAlone(held: FetchHeldByPeer, source: FetchSource, resume: ResumeFrom | undefined): Promise<PeerFollow> {
    const stream = await this.openStream(held, resume);
    if (stream.kind !== 'streaming') return stream;
    const { body, size } = stream.blob;
    let taken = false;
    const blob: SendableBlob = {
      size,
      open: (range) => {
        taken = true;
        if (range === undefined) return this.logged(Readable.from(verifiedPassthrough(stream.blob, source, undefined)), held);
        // A part of the blob: ask the leader for just that part (nothing to verify it against;
        // the leader verifies the whole download and holds back its end, as for local readers).
        body.destroy();
        return this.logged(Readable.from(this.withTakeover(this.rangeFromLeader(held, range), held, undefined, undefined)), held);
      },
      discard: () => {
        if (!taken) body.destroy();
        taken = true;
        return Promise.resolve();
      },
    };
    return { kind: 'following', blob };
  }

  /** Asks the leader for the whole blob; its body goes on from elsewhere if the leader is lost. */
  private async openStream(held: FetchHeldByPeer, resume: ResumeFrom | undefined): Promise<PeerStream> {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(peerFetchUrl(held.peerUrl, held.key), { dispatcher: this.agent, headers: { authorization: this.options.token.authorization } });
    } catch (error) {
      return this.unreachable(held, error);
    }
    if (response.statusCode === 404) {
      await response.body.dump();
      this.options.metrics.peerFollow('not_in_flight');
      return { kind: 'not-in-flight' };
    }
    if (response.statusCode !== 200) {
      const detail = (await response.body.text().catch(() => '')).slice(0, 200);
      return this.unreachable(held, new Error(`the leader answered ${response.statusCode}: ${detail}`));
    }
    const length = response.headers['content-length'];
    const size = typeof length === 'string' ? Number(length) : undefined;
    const fromLeader = response.body;
    const body = Readable.from(this.withTakeover(fromLeader, held, size, size === undefined ? undefined : resume));
    // Whoever drops the body (a client gone, a failed copy) hangs up on the leader too.
    body.once('close', () => fromLeader.destroy());
    return { kind: 'streaming', blob: { size, body } };
  }

  /**
   * Waits (bounded by the lease's ttl) until the lease on `held.key` is no longer the dead
   * leader's: it lapsed, was released, or someone else took it. Then a new attempt can lead.
   */
  async leaderGone(held: FetchHeldByPeer): Promise<void> {
    const deadline = Date.now() + this.options.leaseTtlMs + 1_000;
    while (Date.now() < deadline) {
      const holder = await this.options.leases.holder(`fetch:${held.key}`).catch(() => undefined);
      if (holder !== held.peerUrl) return;
      await sleep(LAPSE_POLL_MS);
    }
  }

  /** This replica leads a fetch whose previous leader could not be reached. */
  tookOver(key: string): void {
    this.options.metrics.leaseTakeover();
    this.options.log.warn({ fetch: key }, 'took over a fetch whose leader could not be reached');
  }

  /** Shutdown: no more peer requests; copies still being written are removed. */
  async close(): Promise<void> {
    await this.agent.close();
    await this.options.copies?.close();
  }

  private unreachable(held: FetchHeldByPeer, error: unknown): { kind: 'unreachable'; error: Error } {
    const cause = error instanceof Error ? error : new Error(String(error));
    this.options.metrics.peerFollow('failed');
    this.options.log.warn({ fetch: held.key, peer: held.peerUrl, err: cause.message }, 'could not follow the fetch from the replica leading it');
    return { kind: 'unreachable', error: cause };
  }

  private async *rangeFromLeader(held: FetchHeldByPeer, range: ByteRange): AsyncGenerator<Buffer> {
    const response = await request(peerFetchUrl(held.peerUrl, held.key), { dispatcher: this.agent, headers: { authorization: this.options.token.authorization, range: `bytes=${range.start}-${range.end}` } });
    if (response.statusCode !== 206) {
      await response.body.dump();
      throw new Error(`the leader answered ${response.statusCode} to a range request`);
    }
    const expected = range.end - range.start + 1;
    let received = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      received += chunk.byteLength;
      yield chunk;
    }
    if (received !== expected) throw new Error(`the leader sent ${received} of ${expected} bytes of a range`);
  }

  /**
   * The leader's bytes, counted by how the stream from it ended; if it broke off and `resume`
   * is given, the rest from wherever the blob is found once the leader's lease is gone.
   */
  private async *withTakeover(fromLeader: AsyncIterable<Buffer>, held: FetchHeldByPeer, size: number | undefined, resume: ResumeFrom | undefined): AsyncGenerator<Buffer> {
    let offset = 0;
    try {
      for await (const chunk of fromLeader) {
        offset += chunk.byteLength;
        yield chunk;
      }
      // A body that ended before its length is a leader lost, however the connection closed.
      if (size !== undefined && offset < size) throw new Error(`the leader's response ended at byte ${offset} of ${size}`);
      this.options.metrics.peerFollow('completed');
      return;
    } catch (error) {
      this.options.metrics.peerFollow('failed');
      if (!resume) throw error;
      this.options.log.warn({ fetch: held.key, peer: held.peerUrl, offset, err: (error as Error).message }, 'the replica leading a fetch broke off; taking over from the offset reached');
    }
    await this.leaderGone(held);
    yield* await resume(offset);
  }

  /** A follow that ends in an error (the leader lost, wrong bytes) is logged with the leader. */
  private logged(stream: Readable, held: FetchHeldByPeer): Readable {
    stream.once('error', (error) => {
      this.options.log.warn({ fetch: held.key, peer: held.peerUrl, err: error.message }, 'a fetch followed from another replica failed; the response is aborted');
    });
    return stream;
  }
}
