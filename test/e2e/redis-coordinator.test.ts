// The Redis coordinator on a real redis-server: the coordination contract (one replica and
// two sharing one Redis), the cache index contract, then what happens when Redis goes away and
// comes back.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { BlobEvent, CircuitChange } from '../../src/coordination/ports.js';
import type { RedisCoordinator } from '../../src/coordination/redis.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { CoordinatedMetadataStore } from '../../src/storage/metadata-store.js';
import { sha256Digest } from '../harness/digests.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import { startRedis, type RedisHandle } from '../harness/redis.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { coordinationContract } from '../support/coordination-contract.js';
import { startInProcess } from '../support/in-process.js';
import { metricValue } from '../support/prometheus-text.js';
import { redisCluster, redisDriver, silentLog } from '../support/redis-coordination.js';
import { cacheIndexContract } from '../support/cache-index-contract.js';
import { RedisCacheIndex } from '../../src/coordination/redis-cache-index.js';
import { openRedisCoordinator } from '../../src/coordination/redis.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';

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

// The cache index contract on memory storage whose coordinator is a Redis one (a fresh key
// prefix each: an empty cluster), closed when the file ends.
const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const each of opened.reverse()) await each.close();
});
cacheIndexContract(
  'redis',
  async () => {
    const coordinator = await openRedisCoordinator({ url: running().url, log: silentLog, keyPrefix: `index-${randomBytes(6).toString('hex')}:` });
    opened.push(coordinator);
    const blobs = new MemoryBlobStore();
    await blobs.init();
    const metadata = new CoordinatedMetadataStore(new MemoryMetadataDriver(), coordinator.locks);
    const privateContent = new InProcessPrivateContent(metadata);
    await privateContent.load();
    return { blobs, metadata, coordinator, privateContent };
  },
  async (storage, options) => {
    const index = new RedisCacheIndex({ ...storage, ...options, events: storage.coordinator.events, leases: storage.coordinator.leases, connection: (storage.coordinator as RedisCoordinator).connection, log: silentLog });
    opened.push(index);
    await index.rebuild(); // as at start-up: the index is loaded from the storage before it is used
    return { index, settle: () => index.settled() };
  },
);

void describe('Redis pub/sub between replicas', () => {
  it("drops malformed messages and the replica's own, logging the malformed ones, and delivers every well-formed one from another replica", async (t) => {
    const keyPrefix = `pubsub-${randomBytes(6).toString('hex')}:`;
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push((JSON.parse(line) as { msg: string }).msg) });
    const cluster = redisCluster(t, running, { keyPrefix, log });
    const listener = (await cluster.coordinator()) as RedisCoordinator;
    const sender = (await cluster.coordinator()) as RedisCoordinator;
    const events: BlobEvent[] = [];
    const circuits: CircuitChange[] = [];
    listener.events.subscribe((event) => events.push(event));
    listener.circuits.subscribe((change) => circuits.push(change));
    const raw = (channel: string, text: string) => sender.connection.client.publish(`${keyPrefix}${channel}`, text);
    const from = (origin: string, payload: unknown) => JSON.stringify({ origin, payload });
    const committed: BlobEvent = { type: 'committed', digest: 'sha256:aa', size: 1, source: 'hub' };
    const last: BlobEvent = { type: 'removed', digest: 'sha256:ff', reason: 'evicted' };
    const malformed = [
      ['events', 'not json'],
      ['events', JSON.stringify(committed)], // a message of an older version: no envelope
      ['events', from('another', { type: 'committed', digest: 'sha256:aa' })], // fields missing
      ['events', from('another', { ...committed, extra: true })], // fields unknown
      ['events', from('another', { type: 'removed', digest: 'sha256:aa', reason: 'because' })],
      ['circuits', from('another', { circuit: 5 })],
      ['circuits', from('another', { circuit: 'v2:hub', openUntil: 'soon' })],
    ] as const;
    for (const [channel, text] of malformed) await raw(channel, text);
    await raw('events', from(listener.connection.instanceId, committed)); // its own: not delivered back
    await raw('events', from('another', committed));
    await raw('circuits', from('another', { circuit: 'v2:hub' }));
    await raw('events', from('another', last));
    await pollUntil(() => Promise.resolve(events.some((event) => event.digest === last.digest) && circuits.length > 0), { timeoutMs: 3000, intervalMs: 10, what: 'the well-formed messages' });
    await pause(50);
    assert.deepEqual(events, [committed, last], 'exactly the well-formed messages of other replicas, in order');
    assert.deepEqual(circuits, [{ circuit: 'v2:hub', openUntil: undefined }]);
    // Both replicas listen (and share the log): each logs each malformed message once.
    assert.equal(warnings.filter((msg) => msg === 'ignored a malformed message from Redis').length, 2 * malformed.length, 'each malformed message logged');
  });
});

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

void describe('Redis coordinator on a Redis that stops answering', () => {
  it('falls back after the command timeout instead of hanging, and coordinates again once it answers', async (t) => {
    const server = running();
    const cluster = redisCluster(t, running, { keyPrefix: 'hung:' });
    const coordinator = (await cluster.coordinator()) as RedisCoordinator;
    const child = server.process?.child;
    assert.ok(child);
    child.kill('SIGSTOP'); // the socket stays open; nothing answers
    onCleanup(t, () => child.kill('SIGCONT'));
    const started = Date.now();
    const lease = await coordinator.leases.tryAcquire('fetch:sha256:hh', 5000);
    const waited = Date.now() - started;
    assert.ok(lease, 'an uncoordinated lease');
    assert.ok(waited < 4000, `waited ${waited} ms`);
    assert.equal(coordinator.status().uncoordinated.leases, 1);
    await lease.release();
    child.kill('SIGCONT');
    const other = await cluster.coordinator();
    await pollUntil(async () => (await coordinator.leases.tryAcquire('fetch:sha256:ii', 5000)) !== undefined && (await other.leases.tryAcquire('fetch:sha256:ii', 5000)) === undefined, {
      timeoutMs: 5000,
      what: 'leases excluding across coordinators again',
    });
  });
});

void describe('Redis coordinator started while Redis is down', () => {
  it('opens after its bounded wait, works uncoordinated, and joins the others once Redis is up', async (t) => {
    const server = running();
    await server.stop();
    onCleanup(t, async () => {
      if (!server.process) await server.start(); // leave Redis running for the next test
    });
    const cluster = redisCluster(t, running, { keyPrefix: 'late:', connectTimeoutMs: 500 });
    const started = Date.now();
    const late = (await cluster.coordinator()) as RedisCoordinator;
    assert.ok(Date.now() - started < 3000, `start-up waited ${Date.now() - started} ms`);
    assert.equal(late.status().connected, false);
    assert.ok(await late.leases.tryAcquire('fetch:sha256:ab', 1000), 'uncoordinated lease');
    await server.start();
    await pollUntil(() => Promise.resolve(late.status().connected), { timeoutMs: 10_000, what: 'the late coordinator connected' });
    const other = await cluster.coordinator();
    const heard: BlobEvent[] = [];
    late.events.subscribe((event) => heard.push(event));
    await pollUntil(
      () => {
        other.events.publish({ type: 'removed', digest: 'sha256:ab', reason: 'collected' });
        return Promise.resolve(heard.length > 0);
      },
      { timeoutMs: 5000, intervalMs: 200, what: "the late coordinator hearing the other's events" },
    );
  });
});

void describe('a server with cluster.redis', () => {
  it('pulls through while Redis is down (logged, counted in metrics) and coordinates again once it returns', async (t) => {
    const server = running();
    const upstream = await startFakeUpstream();
    onCleanup(t, () => upstream.close());
    const mirror = await startInProcess({
      cluster: { redis: server.url, advertiseUrl: 'http://127.0.0.1:1' },
      auth: { secret: 'a-shared-secret-of-enough-length' },
      upstreams: [{ name: 'fake', url: upstream.url, default: true }],
    });
    onCleanup(t, () => mirror.stop());
    const blobs = [randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(64 * 1024)];
    for (const blob of blobs) upstream.setBlob(sha256Digest(blob), blob);
    const pull = async (blob: Buffer) => {
      const response = await request(`${mirror.url}/v2/app/blobs/${sha256Digest(blob)}`);
      assert.equal(response.statusCode, 200);
      assert.ok(Buffer.from(await response.body.arrayBuffer()).equals(blob));
    };
    const scrape = async () => (await request(`${mirror.url}/metrics`)).body.text();

    await pull(blobs[0]!);
    assert.equal(metricValue(await scrape(), 'longshore_coordination_connected', { mode: 'redis' }), 1);
    await server.stop();
    await pollUntil(async () => metricValue(await scrape(), 'longshore_coordination_connected', { mode: 'redis' }) === 0, { timeoutMs: 5000, what: 'the metric to show Redis gone' });
    await pull(blobs[0]!); // a hit
    await pull(blobs[1]!); // a miss, fetched uncoordinated
    const down = await scrape();
    assert.ok(metricValue(down, 'longshore_coordination_uncoordinated_total', { port: 'leases' }) >= 1, 'the uncoordinated fetch is counted');
    assert.ok(mirror.logs.some((line) => line.level === 40 && String(line.msg).startsWith('Redis unreachable')), 'and logged as a warning');

    await server.start();
    await pollUntil(async () => metricValue(await scrape(), 'longshore_coordination_connected', { mode: 'redis' }) === 1, { timeoutMs: 10_000, what: 'the metric to show Redis back' });
    const leasesBefore = metricValue(await scrape(), 'longshore_coordination_uncoordinated_total', { port: 'leases' });
    await pull(blobs[2]!);
    assert.equal(metricValue(await scrape(), 'longshore_coordination_uncoordinated_total', { port: 'leases' }), leasesBefore, 'the next fetch is coordinated');
    assert.ok(mirror.logs.some((line) => line.msg === 'Redis reachable again: coordinating'));
    assert.equal(upstream.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length, 3, 'one upstream GET per blob: the hit during the outage came from the cache');
  });
});
