// The peer pieces of a cluster-wide fetch, in one process: the token, the lease naming the
// leader, the leader's route (fastify inject) and the follower against a hostile leader (an
// in-process fake: wrong bytes, a short body), which real replicas cannot be made to be.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import Fastify from 'fastify';
import pino from 'pino';
import { handleError } from '../../src/api/errors.js';
import { PEER_COPIES_DIR, openPeerCopies } from '../../src/cluster/peer-copies.js';
import { PeerFollower, type PeerFollowResult } from '../../src/cluster/peer-follower.js';
import { PeerToken } from '../../src/cluster/peer-protocol.js';
import { peerRoutes } from '../../src/cluster/peer-route.js';
import { InProcessLeases } from '../../src/coordination/in-process.js';
import { BlobMisses, type BlobMiss } from '../../src/mirror/blob-miss.js';
import { FetchHeldByPeer, InflightBlobs } from '../../src/mirror/inflight.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { deferred } from '../../src/util/deferred.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { freePort, listenOnLoopback } from '../harness/ports.js';
import { makeTempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { memoryStorage } from '../support/stores.js';

const silent = pino({ level: 'silent' });

function settle(stream: Readable): Promise<{ bytes?: Buffer; error?: Error }> {
  return buffer(stream).then(
    (bytes) => ({ bytes }),
    (error: Error) => ({ error }),
  );
}

function recordingMetrics() {
  const follows: PeerFollowResult[] = [];
  let takeovers = 0;
  return {
    follows,
    takeovers: () => takeovers,
    peerFollow: (result: PeerFollowResult) => follows.push(result),
    leaseTakeover: () => {
      takeovers += 1;
    },
  };
}

test('the peer token is derived from the secret: the same on every replica, refused with another secret, scheme or none', () => {
  const one = new PeerToken(Buffer.from('a shared secret of enough length'));
  const two = new PeerToken(Buffer.from('a shared secret of enough length'));
  const stranger = new PeerToken(Buffer.from('some other secret of enough length'));
  assert.ok(two.accepts(one.authorization));
  assert.ok(!one.accepts(stranger.authorization));
  assert.ok(!one.accepts(undefined));
  assert.ok(!one.accepts(one.authorization.replace(/^\S+/, 'Bearer')));
  assert.ok(!one.accepts(`${one.authorization}x`));
  assert.ok(!one.authorization.includes('a shared secret'), 'the secret itself never travels');
});

test('a replica refused the fetch lease is told who leads it, and does not ask the upstream', async () => {
  const store = (await memoryStorage()).blobs;
  const leases = new InProcessLeases();
  const leader = new InflightBlobs({}, { leases, advertiseUrl: 'http://leader.test:5000' });
  const refused: Array<[string, string | undefined]> = [];
  const follower = new InflightBlobs({ leaseRefused: (key, peer) => refused.push([key, peer]) }, { leases, advertiseUrl: 'http://follower.test:5000' });
  const blob = randomBytes(20_000);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const led = leader.join(digest.text, store, { expected: digest, open: () => Promise.resolve({ size: blob.byteLength, body }) });
  body.write(blob.subarray(0, 10_000));
  await led.fetch.ready;

  let upstreamCalls = 0;
  const source = {
    expected: digest,
    open: () => {
      upstreamCalls += 1;
      return Promise.resolve({ size: blob.byteLength, body: PassThrough.from([blob]) });
    },
  };
  const held = await follower.follow(digest.text, store, source, 'hub').then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(held instanceof FetchHeldByPeer, String(held));
  assert.equal(held.peerUrl, 'http://leader.test:5000');
  assert.equal(upstreamCalls, 0);
  assert.deepEqual(refused, [[digest.text, 'http://leader.test:5000']]);
  assert.equal(follower.count, 0, 'nothing left in flight on the follower');

  // The leader's route serves its fetch in progress (followRunning), never starts one.
  assert.equal(await follower.followRunning(digest.text), undefined);
  const running = await leader.followRunning(digest.text);
  assert.ok(running);
  const reading = settle(running.open());
  body.end(blob.subarray(10_000));
  assert.ok((await reading).bytes?.equals(blob));
  led.fetch.leave();
});

test('the peer route: the cluster token or 401 in the OCI envelope; 404 for no fetch in flight; the bytes and ranges of one that is', async (t) => {
  const store = (await memoryStorage()).blobs;
  const inflight = new InflightBlobs();
  const token = new PeerToken(Buffer.from('a shared secret of enough length'));
  const app = Fastify();
  app.setErrorHandler(handleError); // the app's, as longshoreApp sets it around every route
  await app.register(peerRoutes(inflight, token));
  onCleanup(t, () => app.close());
  const blob = randomBytes(50_000);
  const digest = parseDigest(digestOf(blob));
  const path = `/_longshore/peer/fetches/${encodeURIComponent(digest.text)}`;

  for (const authorization of [undefined, 'LongshorePeer wrong', new PeerToken(Buffer.from('another secret of enough length')).authorization]) {
    const refused = await app.inject({ method: 'GET', url: path, headers: authorization === undefined ? {} : { authorization } });
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'UNAUTHORIZED');
  }
  const idle = await app.inject({ method: 'GET', url: path, headers: { authorization: token.authorization } });
  assert.equal(idle.statusCode, 404);
  assert.equal(idle.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'BLOB_UNKNOWN');

  const body = new PassThrough();
  const led = inflight.join(digest.text, store, { expected: digest, open: () => Promise.resolve({ size: blob.byteLength, body }) });
  const whole = app.inject({ method: 'GET', url: path, headers: { authorization: token.authorization } });
  const part = app.inject({ method: 'GET', url: path, headers: { authorization: token.authorization, range: 'bytes=100-199' } });
  body.end(blob);
  const [wholeResponse, partResponse] = await Promise.all([whole, part]);
  assert.equal(wholeResponse.statusCode, 200);
  assert.equal(wholeResponse.headers['content-length'], String(blob.byteLength));
  assert.ok(wholeResponse.rawPayload.equals(blob));
  assert.equal(partResponse.statusCode, 206);
  assert.ok(partResponse.rawPayload.equals(blob.subarray(100, 200)));
  led.fetch.leave();
});

test('the follower checks the bytes itself: a leader sending wrong or short bytes ends the response aborted, never complete', async (t) => {
  const blob = randomBytes(40_000);
  const digest = parseDigest(digestOf(blob));
  const wrong = Buffer.from(blob);
  wrong.writeUInt8(wrong.readUInt8(0) ^ 0xff, 0);
  let answer: 'wrong' | 'short' | 'gone' = 'wrong';
  const server = createServer((request, response) => {
    if (answer === 'gone') {
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"x"}]}');
      return;
    }
    // Chunked, so the client itself cannot tell a short body from a whole one.
    response.writeHead(200, { 'content-type': 'application/octet-stream' });
    response.end(answer === 'wrong' ? wrong : blob.subarray(0, 30_000));
  });
  const url = await listenOnLoopback(server);
  onCleanup(t, () => new Promise((resolve) => server.close(resolve)));
  const metrics = recordingMetrics();
  const token = new PeerToken(Buffer.from('a shared secret of enough length'));
  const follower = new PeerFollower({ token, leases: new InProcessLeases(), leaseTtlMs: 1000, metrics, log: silent });
  onCleanup(t, () => follower.close());
  const held = new FetchHeldByPeer(digest.text, url);
  const source = { expected: digest, open: () => Promise.reject(new Error('the upstream must not be asked')) };

  for (const kind of ['wrong', 'short'] as const) {
    answer = kind;
    const follow = await follower.follow(held, source);
    assert.equal(follow.kind, 'following', kind);
    assert.ok(follow.kind === 'following');
    const result = await settle(follow.blob.open());
    assert.ok(result.error, `${kind}: aborted`);
  }
  assert.deepEqual(metrics.follows, ['completed', 'completed'], 'the leader ended its responses; the follower found them wrong');

  answer = 'gone';
  assert.equal((await follower.follow(held, source)).kind, 'not-in-flight');
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  const unreachable = await follower.follow(held, source);
  assert.equal(unreachable.kind, 'unreachable');
  assert.deepEqual(metrics.follows, ['completed', 'completed', 'not_in_flight', 'failed']);
});

test('clients of one replica share one follow of the leader: one peer request, a local copy every client reads live, checked, never published, deleted once read', async (t) => {
  const blob = randomBytes(3 * 1024 * 1024);
  const digest = parseDigest(digestOf(blob));
  const wrong = Buffer.from(blob);
  wrong.writeUInt8(wrong.readUInt8(wrong.byteLength - 1) ^ 0xff, wrong.byteLength - 1);
  let requests = 0;
  const leader: { sendRest?: () => void } = {};
  const sendRest = (): void => {
    assert.ok(leader.sendRest, 'the leader answered');
    leader.sendRest();
  };
  let answer: Buffer = blob;
  // Half the blob at once, the rest when the test says: clients must have bytes before the end.
  const server = createServer((_request, response) => {
    requests += 1;
    const bytes = answer;
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) });
    response.write(bytes.subarray(0, bytes.byteLength / 2));
    leader.sendRest = () => response.end(bytes.subarray(bytes.byteLength / 2));
  });
  const url = await listenOnLoopback(server);
  onCleanup(t, () => new Promise((resolve) => server.close(resolve)));
  const work = await makeTempDir('peer-copies');
  onCleanup(t, () => work.remove());
  const copies = await openPeerCopies(work.path);
  const metrics = recordingMetrics();
  const token = new PeerToken(Buffer.from('a shared secret of enough length'));
  const follower = new PeerFollower({ token, leases: new InProcessLeases(), leaseTtlMs: 1000, metrics, log: silent, copies });
  onCleanup(t, () => follower.close());
  const held = new FetchHeldByPeer(digest.text, url);
  const source = { expected: digest, open: () => Promise.reject(new Error('the upstream must not be asked')) };
  const copyFiles = () => readdir(path.join(work.path, PEER_COPIES_DIR, 'tmp'));

  // Five clients: one request to the leader; each has half the blob before the leader sends the rest.
  const received = Array.from({ length: 5 }, () => 0);
  const reading = await Promise.all(
    received.map(async (_, i) => {
      const follow = await follower.follow(held, source);
      assert.ok(follow.kind === 'following');
      assert.equal(follow.blob.size, blob.byteLength);
      const stream = follow.blob.open();
      stream.on('data', (chunk: Buffer) => (received[i] = (received[i] ?? 0) + chunk.byteLength));
      return { settled: settle(stream) }; // not awaited here: the leader sends the rest later
    }),
  );
  await pollUntil(() => Promise.resolve(received.every((bytes) => bytes >= blob.byteLength / 2)), { timeoutMs: 10_000, what: 'every client reading the first half' });
  assert.equal(requests, 1, 'one peer request for five clients');
  assert.equal((await copyFiles()).length, 1, 'one local copy');
  sendRest();
  for (const result of await Promise.all(reading.map((one) => one.settled))) assert.ok(result.bytes?.equals(blob), result.error?.message);
  assert.equal(await copies.stat(digest), undefined, 'the copy is never published');
  await pollUntil(async () => (await copyFiles()).length === 0, { timeoutMs: 5_000, what: 'the copy deleted once read' });
  assert.deepEqual(metrics.follows, ['completed']);

  // Wrong bytes from the leader: every client's response is aborted, none ends complete.
  answer = wrong;
  delete leader.sendRest;
  const wrongFollows = await Promise.all(
    [0, 1, 2].map(async () => {
      const follow = await follower.follow(held, source);
      assert.ok(follow.kind === 'following');
      return { settled: settle(follow.blob.open()) };
    }),
  );
  await pollUntil(() => Promise.resolve(leader.sendRest !== undefined), { timeoutMs: 10_000, what: 'the leader answering' });
  sendRest();
  const wrongReads = await Promise.all(wrongFollows.map((one) => one.settled));
  assert.equal(requests, 2);
  for (const result of wrongReads) assert.ok(result.error, 'aborted');
  await pollUntil(async () => (await copyFiles()).length === 0, { timeoutMs: 5_000, what: 'the wrong copy deleted' });
});

test('a leader whose store cannot take the blob (full or read-only: its one client gets it uncached) while another replica waits on it: that replica gets the whole blob from a fetch of its own, no hang, no short body', async (t) => {
  const blob = randomBytes(200_000);
  const digest = parseDigest(digestOf(blob));
  const leases = new InProcessLeases();
  const token = new PeerToken(Buffer.from('a shared secret of enough length'));
  const upstreamAnswers = deferred<void>();
  let upstreamOpens = 0;
  const source = {
    expected: digest,
    open: async () => {
      upstreamOpens += 1;
      if (upstreamOpens === 1) await upstreamAnswers.promise; // the leader's: the follower asks meanwhile
      return { size: blob.byteLength, body: Readable.from([blob]) };
    },
  };

  // The leader: a store with no room, its peer route on loopback.
  const leaderStore = (await memoryStorage()).blobs;
  const full = Object.assign(Object.create(leaderStore) as BlobStore, { hasRoomFor: () => Promise.resolve(false) });
  const port = await freePort();
  const leaderUrl = `http://127.0.0.1:${port}`;
  const leader = new InflightBlobs({}, { leases, advertiseUrl: leaderUrl });
  const app = Fastify();
  app.setErrorHandler(handleError);
  let peerRequests = 0;
  app.addHook('onRequest', (_request, _reply, done) => {
    peerRequests += 1;
    done();
  });
  await app.register(peerRoutes(leader, token));
  await app.listen({ host: '127.0.0.1', port });
  onCleanup(t, () => app.close());

  // The follower: its own store, the same leases, sharing follows through a local copy.
  const work = await makeTempDir('peer-copies');
  onCleanup(t, () => work.remove());
  const metrics = recordingMetrics();
  const peers = new PeerFollower({ token, leases, leaseTtlMs: 1000, metrics, log: silent, copies: await openPeerCopies(work.path) });
  onCleanup(t, () => peers.close());
  const followerStore = (await memoryStorage()).blobs;
  const followerInflight = new InflightBlobs({}, { leases, advertiseUrl: 'http://127.0.0.1:1' });
  const tracker = { added: () => undefined, touched: () => undefined, forget: () => undefined };
  const misses = new BlobMisses(followerStore, followerInflight, tracker, false, peers);
  const miss: BlobMiss = {
    key: digest.text,
    upstream: 'hub',
    storedDigest: () => Promise.resolve(digest),
    source,
    missing: () => new Error('missing'),
    offlineMiss: () => new Error('offline'),
  };

  const leading = leader.follow(digest.text, full, source, 'hub');
  const following = misses.serve(miss);
  await pollUntil(() => Promise.resolve(peerRequests === 1), { timeoutMs: 5_000, what: 'the follower asking the leader' });
  upstreamAnswers.resolve();

  const leaderBlob = await leading;
  assert.ok(leaderBlob);
  const [leaderRead, followerRead] = await Promise.all([settle(leaderBlob.open()), following.then((result) => settle(result.open()))]);
  assert.ok(leaderRead.bytes?.equals(blob), "the leader's client gets the blob uncached");
  assert.ok(followerRead.bytes?.equals(blob), `the follower's client gets the whole blob: ${followerRead.error?.message}`);
  assert.deepEqual(metrics.follows, ['not_in_flight'], 'the leader said it has no fetch to follow');
  assert.equal(upstreamOpens, 2, 'the follower fetched it itself');
  assert.equal(await leaderStore.stat(digest), undefined);
  await pollUntil(async () => (await followerStore.stat(digest)) !== undefined, { timeoutMs: 5_000, what: "the follower's fetch committed" });
});
