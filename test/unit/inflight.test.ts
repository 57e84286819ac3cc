// The tee and the coalescing point: one upstream body, many readers tailing the staged write.
// Runs on both blob store drivers: followers rely only on the port (readAt before the commit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { buffer } from 'node:stream/consumers';
import { digestOf, parseDigest, type Digest } from '../../src/protocol/digest.js';
import { InProcessLeases } from '../../src/coordination/in-process.js';
import { InflightBlobs, UpstreamBlobMissing } from '../../src/mirror/inflight.js';
import type { BlobStore, BlobWriter } from '../../src/storage/blob-store.js';
import type { UpstreamBlob } from '../../src/upstream/upstream.js';
import { terminateHashThreads } from '../../src/storage/file-hasher.js';
import { SCAVENGE_EVERY_BYTES, churnScavenges } from '../../src/util/buffer-churn.js';
import { deferred, type Deferred } from '../../src/util/deferred.js';
import { pollUntil } from '../harness/wait.js';
import { recordingSink } from '../support/recording-sink.js';
import { fsStorage, memoryStorage } from '../support/stores.js';

/** A v2-style fetch: by digest, verified against it. */
function joinDigest(inflight: InflightBlobs, digest: Digest, store: BlobStore, open: () => Promise<UpstreamBlob | undefined>) {
  return inflight.join(digest.text, store, { expected: digest, open });
}

/** Resolves with the first chunk a stream yields, without consuming the rest. */
function firstChunk(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    stream.once('data', (chunk: Buffer) => {
      stream.pause();
      resolve(chunk);
    });
    stream.once('error', reject);
  });
}

function settle(stream: Readable): Promise<{ bytes?: Buffer; error?: Error }> {
  return buffer(stream).then(
    (bytes) => ({ bytes }),
    (error: Error) => ({ error }),
  );
}

const CHUNK = 64 * 1024;

/** Writes `bytes` into `body` in 64 KiB chunks, four per turn of the event loop, then ends it. */
async function sendInTurns(body: PassThrough, bytes: Buffer): Promise<void> {
  for (let at = 0; at < bytes.byteLength; at += 4 * CHUNK) {
    for (let part = at; part < Math.min(at + 4 * CHUNK, bytes.byteLength); part += CHUNK) body.write(bytes.subarray(part, part + CHUNK));
    await new Promise((resolve) => setImmediate(resolve));
  }
  body.end();
}

function inflightSuite(driver: string, newStore: () => Promise<BlobStore>): void {
  test(`${driver}: concurrent requests share one upstream fetch and read bytes before it finishes`, async () => {
    const store = await newStore();
    const inflight = new InflightBlobs();
    const blob = randomBytes(3 * 1024 * 1024);
    const digest = parseDigest(digestOf(blob));
    const body = new PassThrough();
    let upstreamCalls = 0;
    const open = () => {
      upstreamCalls += 1;
      return Promise.resolve<UpstreamBlob>({ size: blob.byteLength, body });
    };

    const joins = Array.from({ length: 8 }, () => joinDigest(inflight, digest, store, open));
    assert.deepEqual(
      joins.map((j) => j.leader),
      [true, false, false, false, false, false, false, false],
    );
    assert.ok(joins.every((j) => j.fetch === joins[0]!.fetch));
    assert.equal(inflight.count, 1);

    body.write(blob.subarray(0, 1024 * 1024));
    await joins[0]!.fetch.ready;
    const readers = joins.map((j) => j.fetch.openReader());
    // Every reader, followers included, gets its first bytes while the upstream is mid-body.
    const firsts = await Promise.all(readers.map(firstChunk));
    for (const chunk of firsts) assert.ok(chunk.equals(blob.subarray(0, chunk.byteLength)));
    assert.equal(await store.stat(digest), undefined, 'nothing is in the cache before the digest is checked');

    readers.forEach((r) => r.resume());
    const results = readers.map((r, i) => buffer(r).then((rest) => Buffer.concat([firsts[i]!, rest])));
    body.end(blob.subarray(1024 * 1024));
    for (const bytes of await Promise.all(results)) assert.ok(bytes.equals(blob));
    assert.equal(upstreamCalls, 1);
    assert.equal((await store.stat(digest))?.size, blob.byteLength);
    assert.equal(inflight.count, 0);
  });

  test(`${driver}: the final byte is held back until the digest checks out`, async () => {
    const store = await newStore();
    const blob = randomBytes(4096);
    const body = new PassThrough();
    const { fetch } = joinDigest(new InflightBlobs(), parseDigest(digestOf(blob)), store, () => Promise.resolve({ size: blob.byteLength, body }));
    body.write(blob);
    await fetch.ready;
    const reader = fetch.openReader();
    const first = await firstChunk(reader);
    assert.equal(first.byteLength, blob.byteLength - 1);
    reader.resume();
    const rest = buffer(reader);
    body.end();
    assert.ok(Buffer.concat([first, await rest]).equals(blob));
  });

  test(`${driver}: a wrong body aborts every reader and caches nothing`, async () => {
    const store = await newStore();
    const inflight = new InflightBlobs();
    const blob = randomBytes(100_000);
    const digest = parseDigest(digestOf(blob));
    const wrong = Buffer.from(blob);
    wrong[500] = wrong[500]! ^ 0xff;
    const body = new PassThrough();
    const joins = [joinDigest(inflight, digest, store, () => Promise.resolve({ size: wrong.byteLength, body })), joinDigest(inflight, digest, store, () => Promise.reject(new Error('not called')))];
    await joins[0]!.fetch.ready;
    const results = joins.map((j) => settle(j.fetch.openReader()));
    body.end(wrong);
    for (const result of await Promise.all(results)) {
      assert.match(result.error?.message ?? '', /digest mismatch/);
      assert.ok((result.bytes?.byteLength ?? 0) < blob.byteLength);
    }
    assert.equal(await store.stat(digest), undefined);
    assert.equal(inflight.count, 0);

    // The next request starts afresh and succeeds.
    const { fetch, leader } = joinDigest(inflight, digest, store, () => Promise.resolve({ size: blob.byteLength, body: PassThrough.from([blob]) }));
    assert.ok(leader);
    await fetch.ready;
    assert.ok((await buffer(fetch.openReader())).equals(blob));
    assert.equal((await store.stat(digest))?.size, blob.byteLength);
  });

  test(`${driver}: an upstream body that breaks off fails the readers and leaves nothing staged`, async () => {
    const store = await newStore();
    const blob = randomBytes(50_000);
    const digest = parseDigest(digestOf(blob));
    const body = new PassThrough();
    const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: blob.byteLength, body }));
    body.write(blob.subarray(0, 20_000));
    await fetch.ready;
    const result = settle(fetch.openReader());
    body.destroy(new Error('socket hang up'));
    assert.match((await result).error?.message ?? '', /socket hang up/);
    assert.equal(await store.stat(digest), undefined);
    assert.equal(await store.sweepStaging({ olderThanMs: 0, now: Date.now() + 1000, dryRun: true }), 0, 'nothing left staged');
  });

  test(`${driver}: a short body with a Content-Length is a failure even if the bytes hash right`, async () => {
    const store = await newStore();
    const blob = randomBytes(1000);
    const digest = parseDigest(digestOf(blob));
    const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: blob.byteLength + 10, body: PassThrough.from([blob]) }));
    await fetch.ready;
    assert.match((await settle(fetch.openReader())).error?.message ?? '', /size mismatch/);
    assert.equal(await store.stat(digest), undefined);
  });

  test(`${driver}: ranges follow the download and end at their last byte`, async () => {
    const store = await newStore();
    const blob = randomBytes(2 * 1024 * 1024);
    const body = new PassThrough();
    const { fetch } = joinDigest(new InflightBlobs(), parseDigest(digestOf(blob)), store, () => Promise.resolve({ size: blob.byteLength, body }));
    body.write(blob.subarray(0, 1000));
    await fetch.ready;
    const ranged = buffer(fetch.openReader({ start: 1_500_000, end: 1_600_000 }));
    body.end(blob.subarray(1000));
    assert.ok((await ranged).equals(blob.subarray(1_500_000, 1_600_001)));
  });

  test(`${driver}: an upstream without the blob, or failing before the body, rejects ready`, async () => {
    const store = await newStore();
    const inflight = new InflightBlobs();
    const digest = parseDigest(digestOf(Buffer.from('missing')));
    const missing = joinDigest(inflight, digest, store, () => Promise.resolve(undefined));
    await assert.rejects(missing.fetch.ready, UpstreamBlobMissing);
    missing.fetch.leave();
    const failing = joinDigest(inflight, digest, store, () => Promise.reject(new Error('503 from upstream')));
    await assert.rejects(failing.fetch.ready, /503 from upstream/);
    failing.fetch.leave();
    assert.equal(inflight.count, 0);
  });

  test(`${driver}: a follower's writeTo sends every byte (whole, a range) in batched writes; a wrong body destroys the response`, async () => {
    const store = await newStore();
    const inflight = new InflightBlobs();
    const blob = randomBytes(2 * 1024 * 1024);
    const digest = parseDigest(digestOf(blob));
    const body = new PassThrough();
    const source = { expected: digest, open: () => Promise.resolve<UpstreamBlob>({ size: blob.byteLength, body }) };
    body.write(blob.subarray(0, CHUNK));
    const [whole, ranged] = await Promise.all([inflight.follow(digest.text, store, source, 'origin'), inflight.follow(digest.text, store, source, 'origin')]);
    assert.ok(whole?.writeTo !== undefined && ranged?.writeTo !== undefined, 'a blob of known length offers writeTo');
    const [wholeSink, rangedSink] = [recordingSink(), recordingSink()];
    const sent = [whole.writeTo(wholeSink.destination), ranged.writeTo(rangedSink.destination, { start: 100_000, end: 1_500_000 })];
    await sendInTurns(body, blob.subarray(CHUNK));
    await Promise.all(sent);
    assert.ok(wholeSink.received().equals(blob));
    assert.ok(rangedSink.received().equals(blob.subarray(100_000, 1_500_001)));
    assert.ok(wholeSink.finished() && rangedSink.finished());
    // 32 chunks came four per turn of the event loop: about one write per turn, not one per chunk.
    // (A reader behind reads the file back into a pooled buffer, one read per turn: 5-11 writes
    // here alone, up to 13 in the full suite; a write per chunk would be 32.)
    assert.ok(wholeSink.calls() <= 16, `${wholeSink.calls()} writes for 32 chunks`);

    const other = randomBytes(1024 * 1024);
    const otherDigest = parseDigest(digestOf(other));
    const wrong = Buffer.from(other);
    wrong[700_000] = wrong[700_000]! ^ 0x01;
    const wrongBody = new PassThrough();
    const follower = await (async () => {
      wrongBody.write(wrong.subarray(0, CHUNK));
      return inflight.follow(otherDigest.text, store, { expected: otherDigest, open: () => Promise.resolve<UpstreamBlob>({ size: wrong.byteLength, body: wrongBody }) }, 'origin');
    })();
    const wrongSink = recordingSink();
    const wrongSent = follower?.writeTo?.(wrongSink.destination);
    await sendInTurns(wrongBody, wrong.subarray(CHUNK));
    await wrongSent;
    assert.match(wrongSink.destination.errored?.message ?? '', /digest mismatch/);
    assert.ok(!wrongSink.finished(), 'never ends cleanly');
    assert.ok(wrongSink.received().byteLength < other.byteLength, 'the final byte is never sent');
    assert.equal(await store.stat(otherDigest), undefined);
  });

  test(`${driver}: followers far behind read the file back through pooled buffers, each reused only after its write's callback`, async () => {
    const store = await newStore();
    const inflight = new InflightBlobs();
    const blob = randomBytes(3 * 1024 * 1024 + 5);
    const digest = parseDigest(digestOf(blob));
    const body = new PassThrough();
    const source = { expected: digest, open: () => Promise.resolve<UpstreamBlob>({ size: blob.byteLength, body }) };
    body.write(blob.subarray(0, CHUNK));
    const followers = await Promise.all([0, 1, 2].map(() => inflight.follow(digest.text, store, source, 'origin')));
    // Every byte lands before anyone reads: the readers take it from the file, not the last chunk.
    await sendInTurns(body, blob.subarray(CHUNK));
    const received = await Promise.all(
      followers.map(async (follower, index) => {
        assert.ok(follower?.writeTo !== undefined);
        // A socket that copies late: other readers run in between, and a buffer given back
        // before this callback would be overwritten by their reads.
        const parts: Buffer[] = [];
        const destination = new Writable({
          highWaterMark: 1,
          write(chunk: Buffer, _encoding, callback) {
            setImmediate(() => {
              parts.push(Buffer.from(chunk));
              callback();
            });
          },
        });
        const range = index === 2 ? { start: 1000, end: 2 * 1024 * 1024 } : undefined;
        await Promise.all([follower.writeTo(destination, range), finished(destination)]);
        return { bytes: Buffer.concat(parts), expected: range ? blob.subarray(range.start, range.end + 1) : blob };
      }),
    );
    for (const { bytes, expected } of received) assert.ok(bytes.equals(expected), `${bytes.byteLength} bytes as sent`);
  });

  test(`${driver}: upstream bodies without a Content-Length stream until the end and are verified`, async () => {
    const store = await newStore();
    const blob = randomBytes(70_000);
    const digest = parseDigest(digestOf(blob));
    const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: undefined, body: PassThrough.from([blob.subarray(0, 30_000), blob.subarray(30_000)]) }));
    assert.deepEqual(await fetch.ready, { size: undefined });
    assert.ok((await buffer(fetch.openReader())).equals(blob));
    assert.equal((await store.stat(digest))?.size, blob.byteLength);
  });
}

inflightSuite('fs', async () => (await fsStorage()).blobs);
inflightSuite('memory', async () => (await memoryStorage()).blobs);

test('a fetch holds its cluster-wide lease while it runs; a lease held elsewhere is reported and the fetch goes ahead', async () => {
  const store = (await memoryStorage()).blobs;
  const leases = new InProcessLeases();
  const refused: string[] = [];
  const inflight = new InflightBlobs({ leaseRefused: (key) => refused.push(key) }, { leases, leaseTtlMs: 60_000 });
  const blob = randomBytes(10_000);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const { fetch } = joinDigest(inflight, digest, store, () => Promise.resolve({ size: blob.byteLength, body }));
  body.write(blob.subarray(0, 5000));
  await fetch.ready;
  assert.equal(await leases.tryAcquire(`fetch:${digest.text}`, 1000), undefined, 'taken while the fetch runs');
  const reading = buffer(fetch.openReader());
  body.end(blob.subarray(5000));
  assert.ok((await reading).equals(blob));
  await pollUntil(async () => {
    const lease = await leases.tryAcquire(`fetch:${digest.text}`, 1000);
    await lease?.release();
    return lease !== undefined;
  }, { timeoutMs: 2000, what: 'the lease released after the commit' });
  assert.deepEqual(refused, []);

  // Another replica holds the lease on a second blob: reported, and fetched all the same.
  const other = randomBytes(3000);
  const otherDigest = parseDigest(digestOf(other));
  const elsewhere = await leases.tryAcquire(`fetch:${otherDigest.text}`, 60_000);
  const second = joinDigest(inflight, otherDigest, store, () => Promise.resolve({ size: other.byteLength, body: PassThrough.from([other]) }));
  await second.fetch.ready;
  assert.ok((await buffer(second.fetch.openReader())).equals(other));
  assert.deepEqual(refused, [otherDigest.text]);
  await elsewhere?.release();
});

test('fs: a hash thread dying mid-fetch fails every reader with an error instead of leaving them hanging', { timeout: 20_000 }, async () => {
  const { blobs: store } = await fsStorage();
  const inflight = new InflightBlobs();
  const blob = randomBytes(4 * 1024 * 1024);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const joins = [0, 1].map(() => joinDigest(inflight, digest, store, () => Promise.resolve({ size: blob.byteLength, body })));
  body.write(blob.subarray(0, 2 * 1024 * 1024)); // past the inline-hash size: hashed by a thread
  await joins[0]!.fetch.ready;
  const results = joins.map((j) => settle(j.fetch.openReader()));
  await pollUntil(() => Promise.resolve(joins[0]!.fetch.received >= 2 * 1024 * 1024), { timeoutMs: 5000, what: 'the first half received' });
  await terminateHashThreads();
  body.end(blob.subarray(2 * 1024 * 1024));
  for (const result of await Promise.all(results)) {
    assert.match(result.error?.message ?? '', /hash worker thread exited/);
    assert.ok((result.bytes?.byteLength ?? 0) < blob.byteLength, 'the final byte was held back');
  }
  assert.equal(await store.stat(digest), undefined);
  assert.equal(inflight.count, 0);
});

/**
 * A writer whose commit is slow, as S3's is (the upload's last parts and its completion): the
 * commit verifies, then waits for `gate` before publishing; a rejected gate fails the commit.
 */
class SlowCommitWriter implements BlobWriter {
  readonly slowCommit = true;

  constructor(
    private readonly inner: BlobWriter,
    private readonly gate: Promise<void>,
  ) {}

  get expected(): Digest | undefined {
    return this.inner.expected;
  }

  get bytesWritten(): number {
    return this.inner.bytesWritten;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.inner.write(chunk);
  }

  readAt(position: number, length: number): Promise<Buffer> {
    return this.inner.readAt(position, length);
  }

  verify(expectedSize?: number): Promise<Digest> {
    return this.inner.verify(expectedSize);
  }

  async commit(expectedSize?: number): Promise<Digest> {
    await this.inner.verify(expectedSize);
    await this.gate;
    return this.inner.commit(expectedSize);
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  close(): void {
    this.inner.close();
  }
}

/** A memory store whose writers commit only when the returned gate resolves. */
async function slowCommitStore(): Promise<{ store: BlobStore; gate: Deferred<void> }> {
  const store = (await memoryStorage()).blobs;
  const gate = deferred<void>();
  const createWriter = store.createWriter.bind(store);
  store.createWriter = async (expected, options) => new SlowCommitWriter(await createWriter(expected, options), gate.promise);
  return { store, gate };
}

test('slow commit: followers get every byte once the digest is verified, before the commit; the fetch stays joinable until it commits', async () => {
  const { store, gate } = await slowCommitStore();
  const inflight = new InflightBlobs();
  const blob = randomBytes(3 * 1024 * 1024);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const joins = [0, 1].map(() => joinDigest(inflight, digest, store, () => Promise.resolve({ size: blob.byteLength, body })));
  body.write(blob.subarray(0, 1024 * 1024));
  await joins[0]!.fetch.ready;
  const readers = joins.map((j) => buffer(j.fetch.openReader()));
  body.end(blob.subarray(1024 * 1024));
  for (const bytes of await Promise.all(readers)) assert.ok(bytes.equals(blob));
  assert.equal(joins[0]!.fetch.committed, false, 'the responses ended before the commit');
  assert.equal(await store.stat(digest), undefined, 'not published before the commit');

  // A request arriving now follows the verified fetch from its staged bytes.
  assert.equal(inflight.count, 1);
  const late = joinDigest(inflight, digest, store, () => Promise.reject(new Error('upstream asked twice')));
  assert.equal(late.leader, false);
  assert.ok((await buffer(late.fetch.openReader())).equals(blob));

  gate.resolve();
  await pollUntil(() => Promise.resolve(inflight.count === 0), { timeoutMs: 2000, what: 'the fetch settled after the commit' });
  assert.equal(joins[0]!.fetch.committed, true);
  assert.equal((await store.stat(digest))?.size, blob.byteLength);
});

test('slow commit: a wrong body never delivers the final byte', async () => {
  const { store, gate } = await slowCommitStore();
  gate.resolve();
  const inflight = new InflightBlobs();
  const blob = randomBytes(100_000);
  const digest = parseDigest(digestOf(blob));
  const wrong = Buffer.from(blob);
  wrong[500] = wrong[500]! ^ 0xff;
  const { fetch } = joinDigest(inflight, digest, store, () => Promise.resolve({ size: wrong.byteLength, body: PassThrough.from([wrong]) }));
  await fetch.ready;
  const result = await settle(fetch.openReader());
  assert.match(result.error?.message ?? '', /digest mismatch/);
  assert.ok((result.bytes?.byteLength ?? 0) < blob.byteLength);
  assert.equal(await store.stat(digest), undefined);
  assert.equal(inflight.count, 0);
});

test('slow commit: a commit failing after the verify aborts a reader still reading and publishes nothing', async () => {
  const { store, gate } = await slowCommitStore();
  const inflight = new InflightBlobs();
  const blob = randomBytes(4 * 1024 * 1024);
  const digest = parseDigest(digestOf(blob));
  // Small chunks, so the paused reader's buffer fills long before the end.
  const chunks = Array.from({ length: 64 }, (_, index) => blob.subarray(index * 65_536, (index + 1) * 65_536));
  const joins = [0, 1].map(() => joinDigest(inflight, digest, store, () => Promise.resolve({ size: blob.byteLength, body: PassThrough.from(chunks) })));
  await joins[0]!.fetch.ready;
  const slow = joins[1]!.fetch.openReader();
  const first = await firstChunk(slow); // paused: far behind the end when the commit fails
  assert.ok((await buffer(joins[0]!.fetch.openReader())).equals(blob), 'a reader that kept up got every byte once verified');
  gate.reject(new Error('S3 CompleteMultipartUpload failed'));
  await pollUntil(() => Promise.resolve(joins[0]!.fetch.failed !== undefined), { timeoutMs: 2000, what: 'the fetch failed' });
  slow.resume();
  const rest = await settle(slow);
  assert.match(rest.error?.message ?? '', /CompleteMultipartUpload failed/);
  assert.ok(first.byteLength + (rest.bytes?.byteLength ?? 0) < blob.byteLength, 'the reader still reading was cut short');
  assert.equal(await store.stat(digest), undefined);
  assert.equal(inflight.count, 0);
});

/** A writer whose writes wait for a gate once `gatedFrom` bytes are in: a disk that fell behind. */
class GatedWriter extends SlowCommitWriter {
  constructor(
    inner: BlobWriter,
    private readonly writeGate: Promise<void>,
    private readonly gatedFrom: number,
  ) {
    super(inner, Promise.resolve());
  }

  override async write(chunk: Uint8Array): Promise<void> {
    const gated = this.bytesWritten >= this.gatedFrom;
    await super.write(chunk);
    if (gated) await this.writeGate;
  }
}

async function gatedStore(gatedFrom: number): Promise<{ store: BlobStore; gate: Deferred<void> }> {
  const store = (await memoryStorage()).blobs;
  const gate = deferred<void>();
  const createWriter = store.createWriter.bind(store);
  store.createWriter = async (expected, options) => new GatedWriter(await createWriter(expected, options), gate.promise, gatedFrom);
  return { store, gate };
}

test('a writer that falls behind pauses the upstream body, which resumes once it caught up', async () => {
  const { store, gate } = await gatedStore(1000);
  const blob = randomBytes(4000);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: blob.byteLength, body }));
  body.write(blob.subarray(0, 1000));
  await fetch.ready;
  const reading = buffer(fetch.openReader());
  body.write(blob.subarray(1000, 2000)); // its write waits for the gate
  body.write(blob.subarray(2000, 3000));
  body.end(blob.subarray(3000));
  await pollUntil(() => Promise.resolve(fetch.received === 2000), { timeoutMs: 2000, what: 'the second chunk taken' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(fetch.received, 2000, 'no chunk is taken while the writer is behind');
  assert.equal(body.isPaused(), true);
  gate.resolve();
  assert.ok((await reading).equals(blob));
  assert.equal((await store.stat(digest))?.size, blob.byteLength);
});

test('a fetch counts the upstream chunks it takes towards the early scavenges of buffer-churn', async () => {
  const store = (await memoryStorage()).blobs;
  const blob = randomBytes(3 * SCAVENGE_EVERY_BYTES + 5);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const before = churnScavenges();
  const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: blob.byteLength, body }));
  for (let offset = 0; offset < blob.byteLength; offset += 64 * 1024) body.write(blob.subarray(offset, offset + 64 * 1024));
  body.end();
  await fetch.ready;
  assert.ok((await buffer(fetch.openReader())).equals(blob));
  // Three thresholds' worth of chunks, plus what earlier tests left counted: three or four.
  const ran = churnScavenges() - before;
  assert.ok(ran === 3 || ran === 4, `${ran} scavenges for ${blob.byteLength} bytes`);
});

test('a write failing mid-body fails the readers, stops reading the upstream and stores nothing', async () => {
  const { store, gate } = await gatedStore(1000);
  const blob = randomBytes(3000);
  const digest = parseDigest(digestOf(blob));
  const body = new PassThrough();
  const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: blob.byteLength, body }));
  body.write(blob.subarray(0, 1000));
  await fetch.ready;
  const result = settle(fetch.openReader());
  body.write(blob.subarray(1000, 2000));
  gate.reject(new Error('ENOSPC: no space left on device'));
  assert.match((await result).error?.message ?? '', /ENOSPC/);
  assert.equal(body.destroyed, true, 'the upstream body is let go');
  assert.equal(await store.stat(digest), undefined);
});

for (const [driver, newStore] of [
  ['fs', async () => (await fsStorage()).blobs],
  ['memory', async () => (await memoryStorage()).blobs],
] as const) {
  test(`${driver}: an upstream body closed before its end without an error fails the fetch`, async () => {
    const store = await newStore();
    const blob = randomBytes(5000);
    const digest = parseDigest(digestOf(blob));
    const body = new PassThrough();
    const { fetch } = joinDigest(new InflightBlobs(), digest, store, () => Promise.resolve({ size: undefined, body }));
    body.write(blob.subarray(0, 2000));
    await fetch.ready;
    const result = settle(fetch.openReader());
    await pollUntil(() => Promise.resolve(fetch.received === 2000), { timeoutMs: 2000, what: 'the first chunk taken' });
    body.destroy();
    assert.match((await result).error?.message ?? '', /closed before its end/);
    assert.equal(await store.stat(digest), undefined);
  });
}
