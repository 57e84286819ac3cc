// What every coordinator (in-process, Redis) guarantees through its ports. A coordinator's test
// file calls `coordinationContract(driver)`. A driver hands out one "cluster" per test: every
// coordinator it creates shares one backend (for Redis: one server, one key prefix; in-process:
// one InProcessCluster), so a shared driver also runs the multi-replica cases: coordinators
// exclude each other, hear each other's events and circuit changes, find each other's upload
// sessions, and (sharedIndexes) share the private index and the cache index.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { LoginLimiter } from '../../src/auth/login-limiter.js';
import { zeroPerPort, type BlobEvent, type CacheIndex, type CircuitChange, type CoordinationStatus, type Coordinator, type PrivateContent } from '../../src/coordination/ports.js';
import type { RegistryError } from '../../src/protocol/errors.js';
import { digestOf, parseDigest, type Digest } from '../../src/protocol/digest.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import type { MetadataDriver } from '../../src/storage/metadata-store.js';
import { CoordinatedMetadataStore, type MetadataStore } from '../../src/storage/metadata-store.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { pollUntil } from '../harness/wait.js';

export interface CacheIndexSetup {
  blobs: MemoryBlobStore;
  metadata: MetadataStore;
  privateContent: PrivateContent;
  maxBytes: number | undefined;
  now: () => number;
}

/** What a replica's configuration gives its coordinator (cluster.advertiseUrl, storage.uploadTimeout). */
export interface ReplicaOptions {
  uploads?: { advertiseUrl: string; idleTimeoutMs: number };
}

/** The coordination of one storage, as one test sees it. */
export interface CoordinationCluster {
  /** A new replica's coordinator on the cluster's backend. Closed by the driver after the test. */
  coordinator(options?: ReplicaOptions): Promise<Coordinator>;
  privateContent(coordinator: Coordinator, metadata: MetadataStore): Promise<PrivateContent>;
  cacheIndex(coordinator: Coordinator, setup: CacheIndexSetup): Promise<CacheIndex>;
}

export interface CoordinationDriver {
  name: string;
  /** What its coordinators' status() says they are. */
  mode: CoordinationStatus['mode'];
  /** Whether coordinators of one cluster coordinate with each other (several replicas). */
  shared: boolean;
  /**
   * Whether the private index and the cache index built on two coordinators of one cluster are
   * one index (Redis). In-process ones are each process's own, loaded from the storage.
   */
  sharedIndexes: boolean;
  cluster(t: TestContext): Promise<CoordinationCluster>;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One replica's view of a shared storage: its coordinator, and the metadata store over its locks. */
async function replica(cluster: CoordinationCluster, blobs: MemoryBlobStore, driver: MetadataDriver, maxBytes: number | undefined, clock: { now: number }) {
  const coordinator = await cluster.coordinator();
  const metadata = new CoordinatedMetadataStore(driver, coordinator.locks);
  const privateContent = await cluster.privateContent(coordinator, metadata);
  const index = await cluster.cacheIndex(coordinator, { blobs, metadata, privateContent, maxBytes, now: () => clock.now });
  const evicted: string[] = [];
  coordinator.events.subscribe((event) => {
    if (event.type === 'removed' && event.reason === 'evicted') evicted.push(event.digest);
  });
  return { coordinator, metadata, privateContent, index, evicted };
}

async function storeBlob(blobs: MemoryBlobStore, size: number) {
  const bytes = randomBytes(size);
  const digest = digestOf(bytes);
  await blobs.put(parseDigest(digest), bytes);
  return { digest, size };
}

const stored = async (blobs: MemoryBlobStore, digest: string) => (await blobs.stat(parseDigest(digest))) !== undefined;

/** Waits until the index counts `objects` mirrored blobs (its notifications are fire-and-forget). */
async function counted(index: CacheIndex, objects: number): Promise<void> {
  await pollUntil(async () => (await index.stats()).mirrored.objects === objects, { timeoutMs: 3000, intervalMs: 10, what: `${objects} blobs counted` });
}

export function coordinationContract(driver: CoordinationDriver): void {
  const { name } = driver;

  test(`${name} coordinator: one holder per lock key at a time, in order; other keys run alongside`, async (t) => {
    const { locks } = await (await driver.cluster(t)).coordinator();
    const trace: string[] = [];
    const hold = (key: string, label: string) =>
      locks.withLock(key, async () => {
        trace.push(`start ${label}`);
        await pause(10);
        trace.push(`end ${label}`);
        return label;
      });
    const results = await Promise.all([hold('a', 'a1'), hold('a', 'a2'), hold('b', 'b1')]);
    assert.deepEqual(results, ['a1', 'a2', 'b1']);
    assert.ok(trace.indexOf('end a1') < trace.indexOf('start a2'), 'a2 waits for a1');
    assert.ok(trace.indexOf('start b1') < trace.indexOf('end a1'), 'b1 does not wait for a1');
    // A failing holder releases the lock too.
    await assert.rejects(locks.withLock('a', () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await locks.withLock('a', () => Promise.resolve('free')), 'free');
  });

  test(`${name} coordinator: a lease has one holder until released or lapsed; renew keeps it`, async (t) => {
    const { leases } = await (await driver.cluster(t)).coordinator();
    // Generous ttls: a real Redis expires keys on its own clock, and a loaded machine may
    // delay this process by a few hundred milliseconds between two commands.
    const first = await leases.tryAcquire('fetch:sha256:aa', 1500);
    assert.ok(first);
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 1500), undefined, 'held');
    assert.ok(await leases.tryAcquire('fetch:sha256:bb', 1500), 'other keys are free');
    await pause(900);
    assert.equal(await first.renew(), true);
    await pause(900);
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 1500), undefined, 'renewed: still held');
    await first.release();
    const second = await leases.tryAcquire('fetch:sha256:aa', 50, 'http://holder.test:5000');
    assert.ok(second, 'released: free');
    await pause(80);
    assert.equal(await leases.holder('fetch:sha256:aa'), undefined, 'a lapsed lease has no holder');
    assert.equal(await second.renew(), false, 'a lapsed lease cannot be renewed');
    const third = await leases.tryAcquire('fetch:sha256:aa', 5000);
    assert.ok(third, 'lapsed: free');
    await second.release(); // releasing a lapsed lease must not free someone else's
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 5000), undefined);
    await third.release();
  });

  test(`${name} coordinator: blob events reach every subscriber until it unsubscribes; a failing one does not stop the rest`, async (t) => {
    const { events } = await (await driver.cluster(t)).coordinator();
    const seen: BlobEvent[][] = [[], []];
    const unsubscribe = events.subscribe((event) => seen[0]!.push(event));
    events.subscribe(() => {
      throw new Error('a broken listener');
    });
    events.subscribe((event) => seen[1]!.push(event));
    const committed: BlobEvent = { type: 'committed', digest: 'sha256:aa', size: 3, source: 'hub' };
    events.publish(committed);
    unsubscribe();
    const removed: BlobEvent = { type: 'removed', digest: 'sha256:aa', reason: 'evicted' };
    events.publish(removed);
    await pause(50); // delivery may be asynchronous, and must not repeat
    assert.deepEqual(seen[0], [committed]);
    assert.deepEqual(seen[1], [committed, removed]);
  });

  test(`${name} coordinator: private marks count bytes once, are written to the metadata store, and can be removed`, async (t) => {
    const cluster = await driver.cluster(t);
    const coordinator = await cluster.coordinator();
    const driverBelow = new MemoryMetadataDriver();
    const metadata = new CoordinatedMetadataStore(driverBelow, coordinator.locks);
    const marks = await cluster.privateContent(coordinator, metadata);
    const a = parseDigest(digestOf(Buffer.from('a')));
    const b = parseDigest(digestOf(Buffer.from('b')));
    await marks.add(a, 100);
    await marks.add(a, 100);
    await marks.add(b, 50);
    assert.ok(await marks.has(a));
    assert.ok(await marks.has(b.text));
    assert.ok(!(await marks.has(digestOf(Buffer.from('c')))));
    assert.deepEqual(await marks.stats(), { objects: 2, bytes: 150 });
    await marks.remove(a);
    assert.ok(!(await marks.has(a)));
    assert.deepEqual(await marks.stats(), { objects: 1, bytes: 50 });
    const listed = [];
    for await (const entry of marks.list()) listed.push(entry);
    assert.deepEqual(listed, [{ digest: b.text, size: 50 }]);
    assert.deepEqual(await driverBelow.list('private/blobs/sha256'), [b.hex], 'the metadata store holds the marks (the truth)');
  });

  test(`${name} coordinator: private marks changed by another process (gc, import) are seen after reload, or at once when shared`, async (t) => {
    const cluster = await driver.cluster(t);
    const driverBelow = new MemoryMetadataDriver();
    const serving = await cluster.coordinator();
    const marks = await cluster.privateContent(serving, new CoordinatedMetadataStore(driverBelow, serving.locks));
    const [a, b, c] = ['a', 'b', 'c'].map((text) => parseDigest(digestOf(Buffer.from(text)))) as [Digest, Digest, Digest];
    await marks.add(a, 10);
    await marks.add(b, 20);
    // The other process opens the same storage with a coordinator of its own configuration.
    const other = await cluster.coordinator();
    const otherMarks = await cluster.privateContent(other, new CoordinatedMetadataStore(driverBelow, other.locks));
    await otherMarks.remove(a);
    await otherMarks.add(c, 30);
    await marks.reload?.(); // what the cache-change notice triggers in the serving process
    assert.equal(await marks.has(a), false, 'removed elsewhere');
    assert.equal(await marks.has(c), true, 'added elsewhere');
    assert.deepEqual(await marks.stats(), { objects: 2, bytes: 50 });
    const listed: string[] = [];
    for await (const entry of marks.list()) listed.push(entry.digest);
    assert.deepEqual(listed.sort(), [b.text, c.text].sort());
  });

  test(`${name} coordinator: the cache index evicts the least recently used mirrored blob, never a private one`, async (t) => {
    const cluster = await driver.cluster(t);
    const blobs = new MemoryBlobStore();
    await blobs.init();
    const clock = { now: 1_000_000 };
    const one = await replica(cluster, blobs, new MemoryMetadataDriver(), 3000, clock);
    t.after(() => one.index.close());
    const pushed = await storeBlob(blobs, 1500);
    await one.privateContent.add(parseDigest(pushed.digest), pushed.size);
    one.index.added(pushed.digest, pushed.size); // ignored: private
    const [a, b, c] = [await storeBlob(blobs, 1000), await storeBlob(blobs, 1000), await storeBlob(blobs, 1000)];
    for (const [i, item] of [a, b, c].entries()) {
      clock.now += 10;
      one.index.added(item.digest, item.size);
      await counted(one.index, i + 1);
    }
    clock.now += 5000;
    one.index.touched(a.digest); // a is now more recent than b
    await pause(20);
    const d = await storeBlob(blobs, 1000);
    clock.now += 10;
    one.index.added(d.digest, d.size);
    await pollUntil(() => Promise.resolve(one.evicted.length === 1), { timeoutMs: 3000, what: 'one eviction' });
    assert.deepEqual(one.evicted, [b.digest]);
    assert.equal(await stored(blobs, b.digest), false);
    for (const kept of [a, c, d, pushed]) assert.equal(await stored(blobs, kept.digest), true);
    const stats = await one.index.stats();
    assert.deepEqual(stats.mirrored, { bytes: 3000, objects: 3 });
    assert.deepEqual(stats.private, { bytes: 1500, objects: 1 });
    assert.equal(stats.evictions, 1);
    assert.deepEqual(await one.index.leastRecentFirst(), [c.digest, a.digest, d.digest]);
    // A blob larger than the whole bound is not kept.
    const huge = await storeBlob(blobs, 5000);
    one.index.added(huge.digest, huge.size);
    await pollUntil(async () => !(await stored(blobs, huge.digest)), { timeoutMs: 3000, what: 'the huge blob deleted' });
    assert.deepEqual((await one.index.stats()).mirrored, { bytes: 3000, objects: 3 });
  });

  test(`${name} coordinator: rescan brings the cache index in line with a storage that another process changed (gc, import)`, async (t) => {
    const cluster = await driver.cluster(t);
    const blobs = new MemoryBlobStore();
    await blobs.init();
    const one = await replica(cluster, blobs, new MemoryMetadataDriver(), undefined, { now: 1_000_000 });
    t.after(() => one.index.close());
    const [a, b] = [await storeBlob(blobs, 1000), await storeBlob(blobs, 2000)];
    one.index.added(a.digest, a.size);
    one.index.added(b.digest, b.size);
    await counted(one.index, 2);
    // Behind the index's back, as gc and import do from another process:
    await blobs.delete(parseDigest(a.digest));
    const imported = await storeBlob(blobs, 3000);
    const pushed = await storeBlob(blobs, 500);
    await one.privateContent.add(parseDigest(pushed.digest), pushed.size);
    assert.deepEqual((await one.index.stats()).mirrored, { bytes: 3000, objects: 2 }, 'stale before the rescan');
    await one.index.rescan();
    await pollUntil(async () => (await one.index.stats()).mirrored.bytes === 5000, { timeoutMs: 3000, intervalMs: 10, what: 'the rescanned figures' });
    assert.deepEqual((await one.index.stats()).mirrored, { bytes: 5000, objects: 2 });
    assert.deepEqual((await one.index.leastRecentFirst()).sort(), [b.digest, imported.digest].sort());
  });

  test(`${name} coordinator: counters count per key within a window that closes by itself`, async (t) => {
    const { counters } = await (await driver.cluster(t)).coordinator();
    assert.equal(await counters.peek('login:user:a'), undefined);
    assert.equal(await counters.add('login:user:a', -1, 200), undefined, 'taking back opens no window');
    assert.equal((await counters.add('login:user:a', 1, 200))?.count, 1);
    const second = await counters.add('login:user:a', 1, 200);
    assert.ok(second);
    assert.equal(second.count, 2);
    assert.ok(second.remainingMs > 0 && second.remainingMs <= 200, `remaining ${second.remainingMs}`);
    assert.equal((await counters.add('login:user:b', 1, 200))?.count, 1, 'keys count apart');
    assert.equal((await counters.peek('login:user:a'))?.count, 2);
    assert.equal((await counters.add('login:user:b', -1, 200))?.count, 0, 'taken back');
    assert.equal((await counters.add('login:user:b', -1, 200))?.count, 0, 'never below zero');
    await pause(250);
    assert.equal(await counters.peek('login:user:a'), undefined, 'the window closed');
    assert.equal((await counters.add('login:user:a', 1, 200))?.count, 1, 'a new window starts at one');
  });

  test(`${name} coordinator: status says which coordinator it is, that it is reachable, and that nothing ran uncoordinated`, async (t) => {
    const coordinator = await (await driver.cluster(t)).coordinator();
    await coordinator.locks.withLock('k', () => coordinator.leases.tryAcquire('fetch:sha256:st', 1000).then((lease) => lease?.release()));
    const status = coordinator.status();
    assert.equal(status.mode, driver.mode);
    assert.equal(status.connected, true);
    assert.deepEqual(status.uncoordinated, zeroPerPort(), 'every port counted, none uncoordinated');
  });

  test(`${name} coordinator: a circuit change is remembered until closed or lapsed, and never delivered back to its sender`, async (t) => {
    const { circuits } = await (await driver.cluster(t)).coordinator();
    const heard: CircuitChange[] = [];
    circuits.subscribe((change) => heard.push(change));
    assert.equal(await circuits.openUntil('v2:hub'), undefined, 'closed until someone opens it');
    const open = { circuit: 'v2:hub', openUntil: Date.now() + 60_000 };
    circuits.publish(open);
    // publish is fire-and-forget: a shared store may take a moment to have it.
    await pollUntil(async () => (await circuits.openUntil('v2:hub')) === open.openUntil, { timeoutMs: 3000, intervalMs: 10, what: 'the open circuit recorded' });
    assert.equal(await circuits.openUntil('v2:other'), undefined, 'circuits are apart');
    circuits.publish({ circuit: 'v2:hub', openUntil: undefined });
    await pollUntil(async () => (await circuits.openUntil('v2:hub')) === undefined, { timeoutMs: 3000, intervalMs: 10, what: 'the closed circuit cleared' });
    circuits.publish({ circuit: 'v2:past', openUntil: Date.now() - 1000 }); // a retry time already past: closed
    circuits.publish({ circuit: 'v2:sentinel', openUntil: Date.now() + 60_000 }); // after the one above
    await pollUntil(async () => (await circuits.openUntil('v2:sentinel')) !== undefined, { timeoutMs: 3000, intervalMs: 10, what: 'the sentinel recorded' });
    assert.equal(await circuits.openUntil('v2:past'), undefined);
    await pause(50); // delivery may be asynchronous
    assert.deepEqual(heard, [], "a replica's own changes are not delivered back to it");
  });

  if (!driver.shared) return;

  test(`${name} coordinator, two replicas: failed-login limits hold across replicas`, async (t) => {
    const cluster = await driver.cluster(t);
    const [one, two] = [await cluster.coordinator(), await cluster.coordinator()];
    const settings = { perAddress: 0, perUser: 3, windowMs: 60_000 };
    const [limiterOne, limiterTwo] = [new LoginLimiter(settings, Date.now, one.counters), new LoginLimiter(settings, Date.now, two.counters)];
    // A begun login counts as failed unless it succeeds.
    await limiterOne.begin('10.0.0.1', 'alice');
    await limiterTwo.begin('10.0.0.2', 'alice');
    await limiterOne.begin('10.0.0.9', 'alice');
    await limiterOne.succeeded('10.0.0.9', 'alice'); // taken back on both replicas
    await limiterTwo.begin('10.0.0.3', 'alice'); // the third failure
    for (const limiter of [limiterOne, limiterTwo]) {
      await assert.rejects(limiter.check('10.0.0.4', 'alice'), (error: RegistryError) => error.code === 'TOOMANYREQUESTS', 'the third failure, on either replica, blocks the name on both');
    }
    await limiterOne.check('10.0.0.4', 'bob');
  });

  test(`${name} coordinator, two replicas: locks and leases exclude each other across coordinators`, async (t) => {
    const cluster = await driver.cluster(t);
    const [one, two] = [await cluster.coordinator(), await cluster.coordinator()];
    const trace: string[] = [];
    const hold = (coordinator: Coordinator, label: string) =>
      coordinator.locks.withLock('shared', async () => {
        trace.push(`start ${label}`);
        await pause(30);
        trace.push(`end ${label}`);
      });
    await Promise.all([hold(one, 'one'), hold(two, 'two'), hold(one, 'one again')]);
    for (let i = 0; i < trace.length; i += 2) {
      assert.equal(trace[i]!.replace('start ', ''), trace[i + 1]!.replace('end ', ''), `no overlap: ${trace.join(', ')}`);
    }
    const lease = await one.leases.tryAcquire('fetch:sha256:cc', 5000, 'http://one.test:5000');
    assert.ok(lease);
    assert.equal(await two.leases.tryAcquire('fetch:sha256:cc', 5000), undefined, 'held by the other replica');
    assert.equal(await two.leases.holder('fetch:sha256:cc'), 'http://one.test:5000', "the other replica reads the holder's address");
    assert.equal(await lease.renew(), true, 'a lease with a holder renews');
    await lease.release();
    assert.equal(await two.leases.holder('fetch:sha256:cc'), undefined, 'released: no holder');
    const taken = await two.leases.tryAcquire('fetch:sha256:cc', 5000);
    assert.ok(taken, 'released: the other replica takes it');
    assert.equal(await one.leases.holder('fetch:sha256:cc'), undefined, 'taken without a holder: none recorded');
    await lease.release(); // the old holder's second release must not free it
    assert.equal(await one.leases.tryAcquire('fetch:sha256:cc', 5000), undefined);
    await taken.release();
  });

  test(`${name} coordinator, two replicas: each hears the other's blob events, once`, async (t) => {
    const cluster = await driver.cluster(t);
    const [one, two] = [await cluster.coordinator(), await cluster.coordinator()];
    const heard: Array<[string, BlobEvent]> = [];
    one.events.subscribe((event) => heard.push(['one', event]));
    two.events.subscribe((event) => heard.push(['two', event]));
    const committed: BlobEvent = { type: 'committed', digest: 'sha256:dd', size: 7, source: 'hub' };
    const removed: BlobEvent = { type: 'removed', digest: 'sha256:dd', reason: 'collected' };
    one.events.publish(committed);
    two.events.publish(removed);
    await pollUntil(() => Promise.resolve(heard.length >= 4), { timeoutMs: 3000, intervalMs: 10, what: 'both events on both replicas' });
    await pause(50);
    const sorted = (list: Array<[string, BlobEvent]>) => list.map(([who, e]) => `${who} ${e.type}`).sort();
    assert.deepEqual(sorted(heard), ['one committed', 'one removed', 'two committed', 'two removed']);
  });

  test(`${name} coordinator, two replicas: a circuit change reaches every other replica, never its sender; a failing listener does not stop the rest`, async (t) => {
    const cluster = await driver.cluster(t);
    const replicas = [await cluster.coordinator(), await cluster.coordinator(), await cluster.coordinator()] as const;
    const heard: CircuitChange[][] = [[], [], []];
    // A broken listener, subscribed first: the publisher does not fail, the rest still hear.
    for (const replica of replicas) {
      replica.circuits.subscribe(() => {
        throw new Error('a broken listener');
      });
    }
    const unsubscribe = replicas.map((replica, i) => replica.circuits.subscribe((change) => heard[i]!.push(change)));
    const open: CircuitChange = { circuit: 'v2:hub', openUntil: Date.now() + 60_000 };
    replicas[0].circuits.publish(open);
    await pollUntil(() => Promise.resolve(heard[1]!.length > 0 && heard[2]!.length > 0), { timeoutMs: 3000, intervalMs: 10, what: 'the opening heard by the others' });
    unsubscribe[2]!();
    const closed: CircuitChange = { circuit: 'v2:hub', openUntil: undefined };
    replicas[1].circuits.publish(closed);
    await pollUntil(() => Promise.resolve(heard[0]!.length > 0), { timeoutMs: 3000, intervalMs: 10, what: 'the closing heard by the first replica' });
    await pause(100); // nothing more may arrive
    assert.deepEqual(heard[0], [closed], 'the sender of the opening hears only the closing');
    assert.deepEqual(heard[1], [open], 'the sender of the closing hears only the opening');
    assert.deepEqual(heard[2], [open], 'unsubscribed before the closing');
  });

  test(`${name} coordinator, two replicas: an open circuit is read by a replica started later until it lapses; a close clears it everywhere`, async (t) => {
    const cluster = await driver.cluster(t);
    const one = await cluster.coordinator();
    // Long enough for a loaded machine to start the second replica before it lapses.
    const short: CircuitChange = { circuit: 'v2:short', openUntil: Date.now() + 3000 };
    const long: CircuitChange = { circuit: 'v2:long', openUntil: Date.now() + 60_000 };
    one.circuits.publish(long);
    one.circuits.publish(short);
    const later = await cluster.coordinator();
    await pollUntil(async () => (await later.circuits.openUntil('v2:short')) === short.openUntil, { timeoutMs: 2500, intervalMs: 10, what: 'the open circuit read by the later replica' });
    assert.equal(await later.circuits.openUntil('v2:long'), long.openUntil);
    one.circuits.publish({ circuit: 'v2:long', openUntil: undefined });
    await pollUntil(async () => (await later.circuits.openUntil('v2:long')) === undefined, { timeoutMs: 3000, intervalMs: 10, what: 'the closed circuit cleared for the later replica' });
    assert.equal(await one.circuits.openUntil('v2:long'), undefined);
    await pause(Math.max(0, short.openUntil! - Date.now()));
    // A shared store expires it on its own clock, a little after the retry time at most.
    await pollUntil(async () => (await later.circuits.openUntil('v2:short')) === undefined, { timeoutMs: 2000, intervalMs: 20, what: 'the lapsed circuit forgotten' });
    assert.equal(await one.circuits.openUntil('v2:short'), undefined);
  });

  test(`${name} coordinator, two replicas: an upload session's holder is found by the others, not by itself, while its claims keep it`, async (t) => {
    const cluster = await driver.cluster(t);
    // Margins for a loaded machine: the checks come 1 s before and after an expiry.
    const idleTimeoutMs = 2500;
    const [one, two] = [
      await cluster.coordinator({ uploads: { advertiseUrl: 'http://one.test:5000', idleTimeoutMs } }),
      await cluster.coordinator({ uploads: { advertiseUrl: 'http://two.test:5000', idleTimeoutMs } }),
    ];
    assert.equal((await cluster.coordinator()).uploadOwners, undefined, 'without an advertiseUrl every session is its own: no look-ups');
    const [ownersOne, ownersTwo] = [one.uploadOwners, two.uploadOwners];
    assert.ok(ownersOne && ownersTwo);
    assert.equal(await ownersTwo.ownerElsewhere('session-a'), undefined, 'unknown: answered here');
    await ownersOne.claim('session-a');
    assert.equal(await ownersOne.ownerElsewhere('session-a'), undefined, 'the claimant is not elsewhere to itself');
    assert.equal(await ownersTwo.ownerElsewhere('session-a'), 'http://one.test:5000');
    assert.equal(await ownersTwo.ownerElsewhere('session-b'), undefined, 'sessions are apart');
    await pause(1500);
    const renewedAt = Date.now();
    await ownersOne.claim('session-a'); // a chunk taken: renewed
    await pause(1500);
    assert.equal(await ownersTwo.ownerElsewhere('session-a'), 'http://one.test:5000', 'renewed: still held, past the idle timeout of the first claim');
    await pollUntil(async () => (await ownersTwo.ownerElsewhere('session-a')) === undefined, { timeoutMs: 4000, intervalMs: 20, what: 'the idle claim lapsed' });
    const idleFor = Date.now() - renewedAt;
    assert.ok(idleFor >= idleTimeoutMs, `lapsed ${idleFor} ms after the last claim: not before the idle timeout`);
    await ownersTwo.claim('session-c');
    await ownersOne.claim('session-c'); // the latest claim holds it
    assert.equal(await ownersTwo.ownerElsewhere('session-c'), 'http://one.test:5000');
    assert.equal(await ownersOne.ownerElsewhere('session-c'), undefined);
  });

  test(`${name} coordinator, two replicas: read-modify-writes of one record through each replica's metadata store lose nothing`, async (t) => {
    const cluster = await driver.cluster(t);
    const shared = new MemoryMetadataDriver();
    const stores = [new CoordinatedMetadataStore(shared, (await cluster.coordinator()).locks), new CoordinatedMetadataStore(shared, (await cluster.coordinator()).locks)];
    await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        stores[i % 2]!.update<{ ids: number[] }>('v1/repositories/ns/app/_index', async (current) => {
          // A pause between read and write: without a lock shared by the replicas, updates would overwrite each other.
          await pause(2);
          return { ids: [...(current?.ids ?? []), i] };
        }),
      ),
    );
    const final = await stores[0]!.get<{ ids: number[] }>('v1/repositories/ns/app/_index');
    assert.deepEqual([...(final?.ids ?? [])].sort((a, b) => a - b), Array.from({ length: 16 }, (_, i) => i));
    const created = await Promise.all(Array.from({ length: 8 }, (_, i) => stores[i % 2]!.putIfAbsent('v1/images/abc', { writer: i })));
    assert.equal(created.filter(Boolean).length, 1, 'one replica created it');
    assert.deepEqual(await stores[1]!.get('v1/images/abc'), { writer: created.indexOf(true) });
  });

  if (!driver.sharedIndexes) return;

  test(`${name} coordinator, two replicas: the private index and the cache index are shared; one eviction, by one replica`, async (t) => {
    const cluster = await driver.cluster(t);
    const blobs = new MemoryBlobStore();
    await blobs.init();
    const metadataDriver = new MemoryMetadataDriver();
    const clock = { now: 2_000_000 };
    const one = await replica(cluster, blobs, metadataDriver, 2000, clock);
    const two = await replica(cluster, blobs, metadataDriver, 2000, clock);
    t.after(() => Promise.all([one.index.close(), two.index.close()]));
    const pushed = await storeBlob(blobs, 700);
    await one.privateContent.add(parseDigest(pushed.digest), pushed.size);
    assert.ok(await two.privateContent.has(pushed.digest), 'a mark made by one replica is seen by the other');
    assert.deepEqual(await two.privateContent.stats(), { objects: 1, bytes: 700 });

    const a = await storeBlob(blobs, 1000);
    one.index.added(a.digest, a.size);
    await counted(two.index, 1);
    clock.now += 10;
    const b = await storeBlob(blobs, 1000);
    two.index.added(b.digest, b.size);
    await counted(one.index, 2);
    clock.now += 5000;
    two.index.touched(a.digest); // the other replica's hit makes a the most recent
    await pause(20);
    clock.now += 10;
    const c = await storeBlob(blobs, 500);
    one.index.added(c.digest, c.size);
    two.index.added(c.digest, c.size); // both replicas hear a commit: counted once
    await pollUntil(() => Promise.resolve(one.evicted.length + two.evicted.length >= 2), { timeoutMs: 3000, what: 'the eviction announced on both replicas' });
    await pause(100);
    assert.deepEqual(one.evicted, [b.digest], 'the other replica touched a: b goes');
    assert.deepEqual(two.evicted, [b.digest], 'announced once to each replica: one eviction');
    assert.equal(await stored(blobs, b.digest), false);
    for (const stats of [await one.index.stats(), await two.index.stats()]) {
      assert.deepEqual(stats.mirrored, { bytes: 1500, objects: 2 });
      assert.equal(stats.evictions, 1);
    }
    assert.deepEqual(await two.index.leastRecentFirst(), [a.digest, c.digest]);
  });
}
