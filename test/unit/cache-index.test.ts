import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pino } from 'pino';
import { CacheIndex } from '../../src/mirror/cache-index.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { FsMetadataStore } from '../../src/storage/fs-metadata-store.js';
import { PrivateBlobs } from '../../src/storage/private-blobs.js';
import { pollUntil } from '../harness/wait.js';

async function setUp(maxBytes: number | undefined) {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ls-index-'));
  const blobs = new FsBlobStore(root);
  await blobs.init();
  const privateBlobs = new PrivateBlobs(new FsMetadataStore(path.join(root, 'meta'), path.join(root, 'tmp')));
  let clock = 1_000_000;
  const index = new CacheIndex(blobs, privateBlobs, maxBytes, pino({ level: 'silent' }), () => clock);
  const evicted: string[] = [];
  index.onEvicted = (digest) => evicted.push(digest);
  const store = async (size: number) => {
    const bytes = randomBytes(size);
    const digest = digestOf(bytes);
    await blobs.put(parseDigest(digest), bytes);
    return { digest, bytes };
  };
  return { root, blobs, privateBlobs, index, evicted, store, tick: (ms: number) => (clock += ms) };
}

const onDisk = async (blobs: FsBlobStore, digest: string) => (await blobs.stat(parseDigest(digest))) !== undefined;

test('the least recently used blob is evicted first, its file deleted', async () => {
  const { blobs, index, evicted, store, tick } = await setUp(3000);
  const a = await store(1000);
  index.added(a.digest, 1000);
  const b = await store(1000);
  index.added(b.digest, 1000);
  const c = await store(1000);
  index.added(c.digest, 1000);
  tick(5000);
  index.touched(a.digest); // a is now more recent than b
  const d = await store(1000);
  index.added(d.digest, 1000);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'one eviction' });
  assert.deepEqual(evicted, [b.digest]);
  assert.equal(await onDisk(blobs, b.digest), false);
  for (const kept of [a, c, d]) assert.equal(await onDisk(blobs, kept.digest), true);
  assert.deepEqual(index.stats().mirrored, { bytes: 3000, objects: 3 });
  assert.equal(index.stats().evictions, 1);
  assert.deepEqual(index.leastRecentFirst(), [c.digest, a.digest, d.digest]);
});

test('private blobs are not counted and never evicted, even when pinned after mirroring', async () => {
  const { blobs, privateBlobs, index, evicted, store } = await setUp(2000);
  const pushed = await store(1500);
  await privateBlobs.add(parseDigest(pushed.digest), 1500);
  index.added(pushed.digest, 1500); // ignored: private
  const mirrored = await store(1000);
  index.added(mirrored.digest, 1000);
  await privateBlobs.add(parseDigest(mirrored.digest), 1000); // pinned after the fact
  const next = await store(1500);
  index.added(next.digest, 1500); // pushes `mirrored` out of the index...
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(evicted, []);
  assert.equal(await onDisk(blobs, mirrored.digest), true, '...but its file stays: it is pinned');
  assert.equal(await onDisk(blobs, pushed.digest), true);
  assert.deepEqual(index.stats().private, { bytes: 2500, objects: 2 });
});

test('rebuild restores recency from file mtimes, so a restart keeps the order', async () => {
  const { root, blobs, privateBlobs, store } = await setUp(undefined);
  const items = [await store(100), await store(100), await store(100)];
  // Accessed in the order 2, 0, 1 (oldest first).
  const times = [2000, 3000, 1000];
  for (const [i, item] of items.entries()) {
    const seconds = times[i]!;
    await utimes(blobs.blobPath(parseDigest(item.digest)), seconds, seconds);
  }
  const restarted = new CacheIndex(new FsBlobStore(root), privateBlobs, 200, pino({ level: 'silent' }));
  const evicted: string[] = [];
  restarted.onEvicted = (digest) => evicted.push(digest);
  await restarted.rebuild();
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction down to the bound' });
  assert.deepEqual(evicted, [items[2]!.digest], 'the least recently used (oldest mtime) went first');
  assert.deepEqual(restarted.leastRecentFirst(), [items[0]!.digest, items[1]!.digest]);
});

test('a hit bumps the file mtime, at most once a second', async () => {
  const { blobs, index, store, tick } = await setUp(undefined);
  const a = await store(10);
  index.added(a.digest, 10);
  await utimes(blobs.blobPath(parseDigest(a.digest)), 100, 100);
  tick(500);
  index.touched(a.digest);
  await new Promise((resolve) => setTimeout(resolve, 30));
  const { stat } = await import('node:fs/promises');
  assert.equal((await stat(blobs.blobPath(parseDigest(a.digest)))).mtimeMs, 100_000, 'within a second: no write');
  tick(1000);
  index.touched(a.digest);
  await pollUntil(async () => (await stat(blobs.blobPath(parseDigest(a.digest)))).mtimeMs > 100_000, { timeoutMs: 2000, what: 'mtime bump' });
});

test('an evicted blob being read is not cut off: the reader finishes with the right bytes', async () => {
  const { blobs, index, evicted, store } = await setUp(1_500_000);
  const a = await store(1_000_000);
  index.added(a.digest, 1_000_000);
  const handle = await blobs.open(parseDigest(a.digest));
  const reading = buffer(handle!.stream());
  const b = await store(1_000_000);
  index.added(b.digest, 1_000_000);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction' });
  assert.equal(await onDisk(blobs, a.digest), false);
  assert.ok((await reading).equals(a.bytes));
});

test('a blob larger than the whole bound is not kept', async () => {
  const { blobs, index, evicted, store } = await setUp(1000);
  const huge = await store(5000);
  index.added(huge.digest, 5000);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction' });
  assert.equal(await onDisk(blobs, huge.digest), false);
  assert.equal(index.stats().mirrored.objects, 0);
});
