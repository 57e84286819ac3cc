// The in-process cache index: the CacheIndex contract on both storage drivers, and where it
// keeps recency (metadata records, never file times).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { pollUntil } from '../harness/wait.js';
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

test('an eviction is logged with the digest, its size and why', async () => {
  const ports = await memoryStorage();
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const index = new InProcessCacheIndex({ ...ports, events: ports.coordinator.events, maxBytes: 1500, log });
  const items = [randomBytes(1000), randomBytes(1000), randomBytes(5000)];
  for (const bytes of items) {
    await ports.blobs.put(parseDigest(digestOf(bytes)), bytes);
    index.added(digestOf(bytes), bytes.byteLength);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await pollUntil(() => Promise.resolve(logs.filter((l) => l.msg === 'evicted').length === 2), { timeoutMs: 2000, what: 'two evictions logged' });
  const evictions = logs.filter((l) => l.msg === 'evicted');
  const first = evictions.find((l) => l.digest === digestOf(items[0]!));
  assert.equal(first?.size, 1000);
  assert.match(String(first?.reason), /least recently used/);
  const huge = evictions.find((l) => l.digest === digestOf(items[2]!));
  assert.equal(huge?.size, 5000);
  assert.match(String(huge?.reason), /larger than storage.cache.maxBytes/);
});

test('the in-process private index reloads the marks another process changed (gc removed one, a push added one)', async () => {
  const ports = await memoryStorage();
  const server = new InProcessPrivateContent(ports.metadata);
  const tool = new InProcessPrivateContent(ports.metadata);
  const [kept, collected, added] = [randomBytes(10), randomBytes(20), randomBytes(40)].map((bytes) => parseDigest(digestOf(bytes)));
  await server.add(kept!, 10);
  await server.add(collected!, 20);
  await tool.load();
  await tool.remove(collected!);
  await tool.add(added!, 40);
  assert.deepEqual(await server.stats(), { objects: 2, bytes: 30 }, 'stale until told');
  await server.reload();
  assert.deepEqual(await server.stats(), { objects: 2, bytes: 50 });
  assert.equal(await server.has(collected!), false);
  assert.equal(await server.has(added!), true);
});
