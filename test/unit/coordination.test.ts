// The in-process coordinator: the coordination contract, with several coordinators on one
// InProcessCluster playing the replicas. Its private and cache indexes are each process's own.
import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { InProcessCluster, inProcessCoordinator } from '../../src/coordination/in-process.js';
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
