// The in-process cache index: the CacheIndex contract on both storage drivers, and where it
// keeps recency (metadata records, never file times).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { cacheIndexContract, type CacheIndexFactory } from '../support/cache-index-contract.js';
import { fsStorage, memoryStorage, type TestStorage } from '../support/stores.js';

function inProcess(storage: TestStorage<BlobStore>, options: { maxBytes: number | undefined; now: () => number }): InProcessCacheIndex {
  return new InProcessCacheIndex({ ...storage, events: storage.coordinator.events, log: pino({ level: 'silent' }), ...options });
}

// Its notifications take effect after one private-content check (a resolved promise).
const factory: CacheIndexFactory = (storage, options) => ({ index: inProcess(storage, options), settle: () => new Promise((resolve) => setImmediate(resolve)) });
cacheIndexContract('in-process on memory', memoryStorage, factory);
cacheIndexContract('in-process on fs', fsStorage, factory);

test('a hit records its access time at most once a second, in the metadata store only', async () => {
  const ports = await memoryStorage();
  let clock = 1_000_000;
  const index = inProcess(ports, { maxBytes: undefined, now: () => clock });
  const tick = (ms: number) => (clock += ms);
  const bytes = randomBytes(10);
  const a = { digest: digestOf(bytes) };
  await ports.blobs.put(parseDigest(a.digest), bytes);
  index.added(a.digest, bytes.byteLength);
  await new Promise((resolve) => setImmediate(resolve));
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

