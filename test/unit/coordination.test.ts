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

test('work under a held lease keeps it past its ttl while it runs, releases it after, and does not run while another holds it', async (t) => {
  // Mocked interval timers and a clock of the test's own: the renewals happen on cue, however
  // loaded the machine is.
  t.mock.timers.enable({ apis: ['setInterval'] });
  let now = 0;
  const leases = new InProcessLeases(() => now);
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  let finishWork!: () => void;
  const running = whileHoldingLease(leases, 'cache:evict', 300, () => new Promise<void>((resolve) => (finishWork = resolve)));
  await settle();
  for (let elapsed = 100; elapsed <= 1000; elapsed += 100) {
    now = elapsed;
    t.mock.timers.tick(100); // a renewal every 100 ms: a third of the ttl
    await settle();
    assert.equal(await leases.tryAcquire('cache:evict', 300), undefined, `held at ${elapsed} ms, past its 300 ms ttl`);
  }
  finishWork();
  assert.equal(await running, true);
  const after = await leases.tryAcquire('cache:evict', 300);
  assert.ok(after, 'released after the work');
  let ranWhileHeld = false;
  assert.equal(
    await whileHoldingLease(leases, 'cache:evict', 300, () => {
      ranWhileHeld = true;
      return Promise.resolve();
    }),
    false,
  );
  assert.equal(ranWhileHeld, false, 'not run while another holds the lease');
  await after.release();
  await assert.rejects(whileHoldingLease(leases, 'cache:evict', 300, () => Promise.reject(new Error('failed pass'))), /failed pass/);
  assert.ok(await leases.tryAcquire('cache:evict', 300), 'released when the work throws too');
});
