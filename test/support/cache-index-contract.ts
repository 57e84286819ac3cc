// The contract of the CacheIndex port (the LRU bound over mirrored blobs), for every
// implementation: in-process now, a shared one (Redis) next. The factory builds an index on the
// given storage ports; `settle()` waits until notifications sent so far have taken effect
// (they are fire-and-forget on the port).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import type { CacheIndex } from '../../src/coordination/ports.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { pollUntil } from '../harness/wait.js';
import type { TestStorage } from './stores.js';

export interface CacheIndexUnderTest {
  index: CacheIndex;
  settle: () => Promise<void>;
}

/** May be async: a shared index loads itself from the storage before it takes notifications. */
export type CacheIndexFactory = (storage: TestStorage<BlobStore>, options: { maxBytes: number | undefined; now: () => number }) => CacheIndexUnderTest | Promise<CacheIndexUnderTest>;

export function cacheIndexContract(name: string, newStorage: () => Promise<TestStorage<BlobStore>>, create: CacheIndexFactory): void {
  async function setUp(maxBytes: number | undefined, storage?: TestStorage<BlobStore>) {
    const ports = storage ?? (await newStorage());
    let clock = 1_000_000;
    const { index, settle } = await create(ports, { maxBytes, now: () => clock });
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
    const add = async (item: { digest: string; bytes: Buffer }) => {
      index.added(item.digest, item.bytes.byteLength);
      await settle();
    };
    const touch = async (digest: string) => {
      index.touched(digest);
      await settle();
    };
    return { ports, blobs: ports.blobs, privateContent: ports.privateContent, index, evicted, store, add, touch, tick: (ms: number) => (clock += ms) };
  }

  const onDisk = async (blobs: BlobStore, digest: string) => (await blobs.stat(parseDigest(digest))) !== undefined;

  test(`${name}: the least recently used blob is evicted first and deleted from the store`, async () => {
    const { blobs, index, evicted, store, add, touch, tick } = await setUp(3000);
    const a = await store(1000);
    await add(a);
    const b = await store(1000);
    await add(b);
    const c = await store(1000);
    await add(c);
    tick(5000);
    await touch(a.digest); // a is now more recent than b
    const d = await store(1000);
    await add(d);
    await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'one eviction' });
    assert.deepEqual(evicted, [b.digest]);
    assert.equal(await onDisk(blobs, b.digest), false);
    for (const kept of [a, c, d]) assert.equal(await onDisk(blobs, kept.digest), true);
    assert.deepEqual((await index.stats()).mirrored, { bytes: 3000, objects: 3 });
    assert.equal((await index.stats()).evictions, 1);
    assert.deepEqual(await index.leastRecentFirst(), [c.digest, a.digest, d.digest]);
  });

  test(`${name}: private blobs are not counted and never evicted, even when pinned after mirroring`, async () => {
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

  test(`${name}: rebuild restores recency from the recorded access times, so a restart keeps the order`, async () => {
    const first = await setUp(undefined);
    const items = [await first.store(100), await first.store(100), await first.store(100)];
    for (const item of items) await first.add(item);
    // Accessed in the order 2, 0, 1 (oldest first).
    for (const i of [2, 0, 1]) {
      first.tick(2000);
      await first.touch(items[i]!.digest);
    }
    await first.index.close(); // writes the access times
    const restarted = await setUp(200, first.ports);
    await restarted.index.rebuild();
    await pollUntil(() => Promise.resolve(restarted.evicted.length === 1), { timeoutMs: 2000, what: 'eviction down to the bound' });
    assert.deepEqual(restarted.evicted, [items[2]!.digest], 'the least recently used went first');
    assert.deepEqual(await restarted.index.leastRecentFirst(), [items[0]!.digest, items[1]!.digest]);
    await restarted.index.close();
  });

  test(`${name}: an evicted blob being read is not cut off: the reader finishes with the right bytes`, async () => {
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

  test(`${name}: a blob larger than the whole bound is not kept`, async () => {
    const { blobs, index, evicted, store, add } = await setUp(1000);
    const huge = await store(5000);
    await add(huge);
    await pollUntil(() => Promise.resolve(evicted.length === 1), { timeoutMs: 2000, what: 'eviction' });
    assert.equal(await onDisk(blobs, huge.digest), false);
    assert.equal((await index.stats()).mirrored.objects, 0);
  });
}
