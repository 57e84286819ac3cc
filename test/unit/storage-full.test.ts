// A store that refuses writes (issue 14, point 10), by fault injection at the blob-store port:
// a miss is streamed to its client uncached and still verified, concurrent clients each get
// the blob, and a store with room again caches as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { InflightBlobs } from '../../src/mirror/inflight.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import type { UpstreamBlob } from '../../src/upstream/upstream.js';
import { fsStorage } from '../support/stores.js';

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, open'), { code: 'ENOSPC' });
}

/** The fs store with its free space switched by the test: createWriter refuses, or hasRoomFor says no. */
async function refusingStore(how: 'createWriter' | 'hasRoomFor'): Promise<{ store: BlobStore; full: { value: boolean } }> {
  const { blobs } = await fsStorage();
  const full = { value: true };
  const store: BlobStore = Object.assign(Object.create(blobs) as BlobStore, {
    createWriter: (...args: Parameters<BlobStore['createWriter']>) => (how === 'createWriter' && full.value ? Promise.reject(enospc()) : blobs.createWriter(...args)),
    hasRoomFor: (bytes: number | undefined) => (how === 'hasRoomFor' && full.value ? Promise.resolve(false) : blobs.hasRoomFor?.(bytes) ?? Promise.resolve(true)),
  });
  return { store, full };
}

function upstreamOf(bytes: Buffer, counter: { calls: number }, size: number | undefined = bytes.byteLength): () => Promise<UpstreamBlob> {
  return () => {
    counter.calls += 1;
    // Several chunks, so holding back the final one is visible.
    const chunks = [bytes.subarray(0, 1000), bytes.subarray(1000, 5000), bytes.subarray(5000)];
    return Promise.resolve({ size, body: Readable.from(chunks) });
  };
}

for (const how of ['createWriter', 'hasRoomFor'] as const) {
  test(`store refusing (${how}): a miss reaches its client uncached; once there is room it is cached`, async () => {
    const { store, full } = await refusingStore(how);
    const inflight = new InflightBlobs();
    const blob = randomBytes(20_000);
    const digest = parseDigest(digestOf(blob));
    const counter = { calls: 0 };
    const source = { expected: digest, open: upstreamOf(blob, counter) };

    const first = await inflight.follow(digest.text, store, source, 'hub');
    assert.ok(first);
    assert.equal(first.size, blob.byteLength);
    assert.ok((await buffer(first.open())).equals(blob));
    assert.equal(await store.stat(digest), undefined, 'not cached');
    assert.equal(inflight.count, 0);

    full.value = false;
    const second = await inflight.follow(digest.text, store, source, 'hub');
    assert.ok((await buffer(second!.open())).equals(blob));
    assert.equal((await store.stat(digest))?.size, blob.byteLength, 'cached once there is room');
    assert.equal(counter.calls, 2);
  });
}

test('store full: concurrent clients of one miss each get the whole blob (the joiners ask upstream again)', async () => {
  const { store } = await refusingStore('hasRoomFor');
  const inflight = new InflightBlobs();
  const blob = randomBytes(20_000);
  const digest = parseDigest(digestOf(blob));
  const counter = { calls: 0 };
  const source = { expected: digest, open: upstreamOf(blob, counter) };
  const blobs = await Promise.all(Array.from({ length: 3 }, () => inflight.follow(digest.text, store, source, 'hub')));
  for (const sendable of blobs) assert.ok((await buffer(sendable!.open())).equals(blob));
  assert.ok(counter.calls >= 2 && counter.calls <= 3, `${counter.calls} upstream requests`);
});

test('store full: wrong bytes from upstream end in an error before the final chunk; a range is cut to its bytes', async () => {
  const { store } = await refusingStore('hasRoomFor');
  const inflight = new InflightBlobs();
  const blob = randomBytes(20_000);
  const digest = parseDigest(digestOf(blob));
  const wrong = Buffer.from(blob);
  wrong[100] = (wrong[100] ?? 0) ^ 0xff;

  const corrupt = await inflight.follow(digest.text, store, { expected: digest, open: upstreamOf(wrong, { calls: 0 }) }, 'hub');
  const received: Buffer[] = [];
  const stream = corrupt!.open();
  stream.on('data', (chunk: Buffer) => received.push(chunk));
  await assert.rejects(new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject)), /digest mismatch/);
  assert.ok(Buffer.concat(received).byteLength < blob.byteLength, 'the final chunk was held back');

  const short = await inflight.follow(digest.text, store, { expected: digest, open: upstreamOf(blob.subarray(0, 15_000), { calls: 0 }, blob.byteLength) }, 'hub');
  await assert.rejects(buffer(short!.open()), /size mismatch/);

  const ranged = await inflight.follow(digest.text, store, { expected: digest, open: upstreamOf(blob, { calls: 0 }) }, 'hub');
  assert.ok((await buffer(ranged!.open({ start: 900, end: 5100 }))).equals(blob.subarray(900, 5101)));
});
