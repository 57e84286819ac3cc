// The follower side of a cluster-wide fetch: a replica refused the fetch lease asks the leader
// (the address in the lease) for the bytes of its download in progress, as they land, over an
// authenticated internal request. The leader holds back the final byte until it verified the
// digest; this side checks the digest (or the v1 checksum) again and holds back its own last
// chunk, so a client never receives a complete-looking wrong or short blob.
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
import type { ByteRange, SendableBlob } from '../storage/blob-store.js';
import { verifiedPassthrough, type FetchHeldByPeer, type FetchSource } from '../mirror/inflight.js';
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
}

// A leader on loopback or a LAN answers at once; one that does not is taken for dead.
const CONNECT_TIMEOUT_MS = 3_000;
const HEADERS_TIMEOUT_MS = 30_000;
// A leader whose upstream stalls sends nothing either; the leader's own upstream timeouts
// end such a fetch, this only bounds a leader that hangs.
const BODY_TIMEOUT_MS = 120_000;
const LAPSE_POLL_MS = 100;

export class PeerFollower {
  private readonly agent: Dispatcher;

  constructor(private readonly options: PeerFollowerOptions) {
    this.agent = new Agent({ connect: { timeout: CONNECT_TIMEOUT_MS }, headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: BODY_TIMEOUT_MS });
  }

  /**
   * Asks the leader named by `held` for the whole blob, checked against `source`; `resume`
   * takes over if the leader is lost mid-stream (whole-blob reads of a known size only).
   */
  async follow(held: FetchHeldByPeer, source: FetchSource, resume?: ResumeFrom): Promise<PeerFollow> {
    const url = peerFetchUrl(held.peerUrl, held.key);
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { dispatcher: this.agent, headers: { authorization: this.options.token.authorization } });
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
    const body = response.body;
    let taken = false;
    const blob: SendableBlob = {
      size,
      open: (range) => {
        taken = true;
        if (range === undefined) {
          const bytes = Readable.from(this.withTakeover(body, held, size, size === undefined ? undefined : resume));
          return this.logged(Readable.from(verifiedPassthrough({ body: bytes, size }, source, undefined)), held);
        }
        // A part of the blob: ask the leader for just that part (nothing to verify it against;
        // the leader verifies the whole download and holds back its end, as for local readers).
        body.destroy();
        return this.logged(Readable.from(this.withTakeover(this.rangeFromLeader(url, range), held, undefined, undefined)), held);
      },
      discard: () => {
        if (!taken) body.destroy();
        taken = true;
        return Promise.resolve();
      },
    };
    return { kind: 'following', blob };
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

  async close(): Promise<void> {
    await this.agent.close();
  }

  private unreachable(held: FetchHeldByPeer, error: unknown): PeerFollow {
    const cause = error instanceof Error ? error : new Error(String(error));
    this.options.metrics.peerFollow('failed');
    this.options.log.warn({ fetch: held.key, peer: held.peerUrl, err: cause.message }, 'could not follow the fetch from the replica leading it');
    return { kind: 'unreachable', error: cause };
  }

  private async *rangeFromLeader(url: string, range: ByteRange): AsyncGenerator<Buffer> {
    const response = await request(url, { dispatcher: this.agent, headers: { authorization: this.options.token.authorization, range: `bytes=${range.start}-${range.end}` } });
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
