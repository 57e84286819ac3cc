// The LRU bound over mirrored blobs, on the in-memory storage driver: recency lives in the
// index and its access-time records in the metadata store, never in file times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { pollUntil } from '../harness/wait.js';
import { memoryStorage, type TestStorage } from '../support/stores.js';

async function setUp(maxBytes: number | undefined, storage?: TestStorage<BlobStore>) {
  const ports = storage ?? (await memoryStorage());
  let clock = 1_000_000;
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const index = new InProcessCacheIndex({ ...ports, events: ports.coordinator.events, maxBytes, log, now: () => clock });
  const evicted: string[] = [];
  ports.coordinator.events.subscribe((event) => {
    if (event.type === 'removed' && event.reason === 'evicted') evicted.push(event.digest);
  });
  const store = async (size: number) => {
    const bytes = randomBytes(size);
    const digest = digestOf(bytes);
    await ports.blobs.put(parseDigest(digest), bytes);
    return { digest, bytes };
  };
  /** Adds through the index and waits until it counts the blob (its private check is async). */
  const add = async (item: { digest: string; bytes: Buffer }) => {
    index.added(item.digest, item.bytes.byteLength);
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { ports, blobs: ports.blobs, privateContent: ports.privateContent, index, evicted, logs, store, add, tick: (ms: number) => (clock += ms) };
}

const onDisk = async (blobs: BlobStore, digest: string) => (await blobs.stat(parseDigest(digest))) !== undefined;

test('the least recently used blob is evicted first, its file deleted, with a log line saying why', async () => {
  const { blobs, index, evicted, logs, store, add, tick } = await setUp(3000);
  const a = await store(1000);
  await add(a);
  const b = await store(1000);
  await add(b);
  const c = await store(1000);
  await add(c);
  tick(5000);
  index.touched(a.digest); // a is now more recent than b
  const d = await store(1000);
  await add(d);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'one eviction' });
  assert.deepEqual(evicted, [b.digest]);
  assert.equal(await onDisk(blobs, b.digest), false);
  const line = logs.find((l) => l.msg === 'evicted');
  assert.equal(line?.digest, b.digest);
  assert.equal(line?.size, 1000);
  assert.match(String(line?.reason), /least recently used/);
  for (const kept of [a, c, d]) assert.equal(await onDisk(blobs, kept.digest), true);
  assert.deepEqual((await index.stats()).mirrored, { bytes: 3000, objects: 3 });
  assert.equal((await index.stats()).evictions, 1);
  assert.deepEqual(await index.leastRecentFirst(), [c.digest, a.digest, d.digest]);
});

test('private blobs are not counted and never evicted, even when pinned after mirroring', async () => {
  const { blobs, privateContent, index, evicted, store, add } = await setUp(2000);
  const pushed = await store(1500);
  await privateContent.add(parseDigest(pushed.digest), 1500);
  await add(pushed); // ignored: private
  const mirrored = await store(1000);
  await add(mirrored);
  await privateContent.add(parseDigest(mirrored.digest), 1000); // pinned after the fact
  const next = await store(1500);
  await add(next); // pushes `mirrored` out of the index...
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(evicted, []);
  assert.equal(await onDisk(blobs, mirrored.digest), true, '...but its blob stays: it is pinned');
  assert.equal(await onDisk(blobs, pushed.digest), true);
  assert.deepEqual((await index.stats()).private, { bytes: 2500, objects: 2 });
});

test('rebuild restores recency from the recorded access times, so a restart keeps the order', async () => {
  const first = await setUp(undefined);
  const items = [await first.store(100), await first.store(100), await first.store(100)];
  for (const item of items) await first.add(item);
  // Accessed in the order 2, 0, 1 (oldest first).
  for (const i of [2, 0, 1]) {
    first.tick(2000);
    first.index.touched(items[i]!.digest);
  }
  await first.index.close(); // writes the access times
  const restarted = await setUp(200, first.ports);
  await restarted.index.rebuild();
  await pollUntil(() => Promise.resolve(restarted.evicted.length === 1), { timeoutMs: 2000, what: 'eviction down to the bound' });
  assert.deepEqual(restarted.evicted, [items[2]!.digest], 'the least recently used went first');
  assert.deepEqual(await restarted.index.leastRecentFirst(), [items[0]!.digest, items[1]!.digest]);
  await restarted.index.close();
});

test('a hit records its access time at most once a second, in the metadata store only', async () => {
  const { ports, index, store, add, tick } = await setUp(undefined);
  const a = await store(10);
  await add(a);
  await index.flush();
  const shard = metadataKeys.cacheAccessShard(parseDigest(a.digest));
  const accessOf = async () => (await ports.metadata.get<Record<string, number>>(shard))?.[parseDigest(a.digest).hex];
  const addedAt = await accessOf();
  assert.equal(addedAt, 1_000_000, 'recorded when added');
  tick(500);
  index.touched(a.digest);
  await index.flush();
  assert.equal(await accessOf(), addedAt, 'within a second: nothing new to write');
  tick(1000);
  index.touched(a.digest);
  await index.flush();
  assert.equal(await accessOf(), 1_001_500);
  index.forget(a.digest);
  await index.flush();
  assert.equal(await ports.metadata.get(shard), undefined, 'a forgotten blob leaves no record behind');
});

test('an evicted blob being read is not cut off: the reader finishes with the right bytes', async () => {
  const { blobs, evicted, store, add } = await setUp(1_500_000);
  const a = await store(1_000_000);
  await add(a);
  const handle = await blobs.open(parseDigest(a.digest));
  const reading = buffer(handle!.stream());
  const b = await store(1_000_000);
  await add(b);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction' });
  assert.equal(await onDisk(blobs, a.digest), false);
  assert.ok((await reading).equals(a.bytes));
});

test('a blob larger than the whole bound is not kept', async () => {
  const { blobs, index, evicted, store, add } = await setUp(1000);
  const huge = await store(5000);
  await add(huge);
  await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction' });
  assert.equal(await onDisk(blobs, huge.digest), false);
  assert.equal((await index.stats()).mirrored.objects, 0);
});
