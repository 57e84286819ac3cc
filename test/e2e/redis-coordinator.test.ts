// The Redis coordinator on a real redis-server: the coordination contract (one replica and
// two sharing one Redis), then what happens when Redis goes away and comes back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BlobEvent } from '../../src/coordination/ports.js';
import type { RedisCoordinator } from '../../src/coordination/redis.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { CoordinatedMetadataStore } from '../../src/storage/metadata-store.js';
import { startRedis, type RedisHandle } from '../harness/redis.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { coordinationContract } from '../support/coordination-contract.js';
import { redisCluster, redisDriver } from '../support/redis-coordination.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: RedisHandle | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
});

const running = (): RedisHandle => {
  if (!redis) throw new Error('redis-server did not start');
  return redis;
};

coordinationContract(redisDriver(running));

void describe('Redis coordinator when Redis goes away', () => {
  it('keeps every port working uncoordinated and counted while Redis is down; coordinates and rebuilds the indexes from the storage when an empty one returns', async (t) => {
    const server = running();
    const cluster = redisCluster(t, running, { keyPrefix: 'outage:' });
    const blobs = new MemoryBlobStore();
    await blobs.init();
    const metadataDriver = new MemoryMetadataDriver();
    const replica = async () => {
      const coordinator = (await cluster.coordinator()) as RedisCoordinator;
      const metadata = new CoordinatedMetadataStore(metadataDriver, coordinator.locks);
      const privateContent = await cluster.privateContent(coordinator, metadata);
      const index = await cluster.cacheIndex(coordinator, { blobs, metadata, privateContent, maxBytes: undefined, now: Date.now });
      onCleanup(t, () => index.close());
      const heard: BlobEvent[] = [];
      coordinator.events.subscribe((event) => heard.push(event));
      return { coordinator, metadata, privateContent, index, heard };
    };
    const [one, two] = [await replica(), await replica()];
    const before = parseDigest(digestOf(Buffer.from('pushed before the outage')));
    await one.privateContent.add(before, 10);
    const mirrored = await blobs.put(parseDigest(digestOf(Buffer.from('mirrored'))), Buffer.from('mirrored')).then(() => digestOf(Buffer.from('mirrored')));
    one.index.added(mirrored, 8);
    await pollUntil(async () => (await two.index.stats()).mirrored.objects === 1, { timeoutMs: 3000, what: 'the mirrored blob counted' });

    await server.stop();
    await pollUntil(() => Promise.resolve(!one.coordinator.status().connected && !two.coordinator.status().connected), { timeoutMs: 5000, what: 'both see Redis gone' });
    const started = Date.now();
    assert.equal(await one.coordinator.locks.withLock('k', () => Promise.resolve('ran')), 'ran', 'a lock runs uncoordinated');
    const lease = await one.coordinator.leases.tryAcquire('fetch:sha256:ee', 5000);
    assert.ok(lease, 'a lease is taken in-process');
    assert.equal(await one.coordinator.leases.tryAcquire('fetch:sha256:ee', 5000), undefined, 'and still excludes within the replica');
    await lease.release();
    const during: BlobEvent = { type: 'committed', digest: 'sha256:ee', size: 1, source: 'hub' };
    one.coordinator.events.publish(during);
    assert.deepEqual(one.heard.at(-1), during, 'events still reach this replica');
    assert.ok(await two.privateContent.has(before), 'a private mark is answered from the metadata store');
    const pushedDuring = parseDigest(digestOf(Buffer.from('pushed during the outage')));
    await two.privateContent.add(pushedDuring, 20);
    assert.ok(await one.privateContent.has(pushedDuring));
    assert.ok(Date.now() - started < 2000, 'nothing waits for the missing Redis');
    await pause(50);
    const counts = one.coordinator.status().uncoordinated;
    for (const port of ['locks', 'leases', 'events'] as const) assert.ok(counts[port] > 0, `${port} counted: ${JSON.stringify(counts)}`);
    assert.ok(two.coordinator.status().uncoordinated.privateContent > 0);

    await server.start(); // empty: nothing survives
    await pollUntil(() => Promise.resolve(one.coordinator.status().connected && two.coordinator.status().connected), { timeoutMs: 10_000, what: 'both reconnected' });
    await pollUntil(async () => (await two.privateContent.stats()).objects === 2, { timeoutMs: 5000, what: 'the private index rebuilt from the metadata store' });
    assert.deepEqual(await one.privateContent.stats(), { objects: 2, bytes: 30 });
    await pollUntil(async () => (await one.index.stats()).mirrored.objects === 1, { timeoutMs: 5000, what: 'the cache index rebuilt from the storage' });
    assert.deepEqual(await two.index.leastRecentFirst(), [mirrored]);
    const held = await one.coordinator.leases.tryAcquire('fetch:sha256:ff', 5000);
    assert.ok(held);
    assert.equal(await two.coordinator.leases.tryAcquire('fetch:sha256:ff', 5000), undefined, 'leases exclude across replicas again');
    await held.release();
    const after: BlobEvent = { type: 'removed', digest: 'sha256:ff', reason: 'collected' };
    // The subscriber resubscribes by itself; poll until its subscription is back.
    await pollUntil(
      () => {
        one.coordinator.events.publish(after);
        return Promise.resolve(two.heard.some((event) => event.digest === 'sha256:ff'));
      },
      { timeoutMs: 5000, intervalMs: 200, what: 'events crossing replicas again' },
    );
  });
});
