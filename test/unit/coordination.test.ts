// The in-process coordinator: the coordination contract, with several coordinators on one
// InProcessCluster playing the replicas. Its private and cache indexes are each process's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { whileHoldingLease } from '../../src/coordination/held-lease.js';
import { InProcessCluster, InProcessLeases, inProcessCoordinator } from '../../src/coordination/in-process.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { onCleanup } from '../support/cleanup.js';
import { coordinationContract } from '../support/coordination-contract.js';

coordinationContract({
  name: 'in-process',
  mode: 'in-process',
  shared: true,
  sharedIndexes: false,
  cluster: (t) => {
    const cluster = new InProcessCluster();
    return Promise.resolve({
      coordinator: (options) => {
        const coordinator = inProcessCoordinator({ cluster, ...options });
        onCleanup(t, () => coordinator.close());
        return Promise.resolve(coordinator);
      },
      privateContent: async (_coordinator, metadata) => {
        const marks = new InProcessPrivateContent(metadata);
        await marks.load();
        return marks;
      },
      cacheIndex: (coordinator, setup) => Promise.resolve(new InProcessCacheIndex({ ...setup, events: coordinator.events, log: pino({ level: 'silent' }) })),
    });
  },
});

test('work under a held lease keeps it past its ttl while it runs, releases it after, and does not run while another holds it', async () => {
  const leases = new InProcessLeases();
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const seenDuring: boolean[] = [];
  // A ttl with room for a loaded machine's timer delays (renewed every 133 ms).
  const ran = await whileHoldingLease(leases, 'cache:evict', 400, async () => {
    for (let i = 0; i < 4; i += 1) {
      await pause(250); // 1 s in all: well past the ttl, kept by the renewals
      seenDuring.push((await leases.tryAcquire('cache:evict', 60)) === undefined);
    }
  });
  assert.equal(ran, true);
  assert.deepEqual(seenDuring, [true, true, true, true], 'held throughout');
  const after = await leases.tryAcquire('cache:evict', 60);
  assert.ok(after, 'released after the work');
  let ranWhileHeld = false;
  assert.equal(
    await whileHoldingLease(leases, 'cache:evict', 60, () => {
      ranWhileHeld = true;
      return Promise.resolve();
    }),
    false,
  );
  assert.equal(ranWhileHeld, false, 'not run while another holds the lease');
  await after.release();
  await assert.rejects(whileHoldingLease(leases, 'cache:evict', 60, () => Promise.reject(new Error('failed pass'))), /failed pass/);
  assert.ok(await leases.tryAcquire('cache:evict', 60), 'released when the work throws too');
});
