// What every coordinator (in-process now, Redis next) guarantees through its ports. A
// coordinator's test file calls `coordinationContract(name, create)`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlobEvent, Coordinator } from '../../src/coordination/ports.js';

export function coordinationContract(name: string, create: () => Promise<Coordinator>): void {
  test(`${name} coordinator: one holder per lock key at a time, in order; other keys run alongside`, async () => {
    const { locks } = await create();
    const trace: string[] = [];
    const hold = (key: string, label: string) =>
      locks.withLock(key, async () => {
        trace.push(`start ${label}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
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

  test(`${name} coordinator: a lease has one holder until released or lapsed; renew keeps it`, async () => {
    const { leases } = await create();
    const first = await leases.tryAcquire('fetch:sha256:aa', 200);
    assert.ok(first);
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 200), undefined, 'held');
    assert.ok(await leases.tryAcquire('fetch:sha256:bb', 200), 'other keys are free');
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal(await first.renew(), true);
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 200), undefined, 'renewed: still held');
    await first.release();
    const second = await leases.tryAcquire('fetch:sha256:aa', 50);
    assert.ok(second, 'released: free');
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.equal(await second.renew(), false, 'a lapsed lease cannot be renewed');
    const third = await leases.tryAcquire('fetch:sha256:aa', 1000);
    assert.ok(third, 'lapsed: free');
    await second.release(); // releasing a lapsed lease must not free someone else's
    assert.equal(await leases.tryAcquire('fetch:sha256:aa', 1000), undefined);
    await third.release();
  });

  test(`${name} coordinator: blob events reach every subscriber until it unsubscribes; a failing one does not stop the rest`, async () => {
    const { events } = await create();
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
    await new Promise((resolve) => setTimeout(resolve, 20)); // delivery may be asynchronous
    assert.deepEqual(seen[0], [committed]);
    assert.deepEqual(seen[1], [committed, removed]);
  });
}
