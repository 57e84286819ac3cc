import { pino } from 'pino';
import { InProcessCacheIndex } from '../../src/coordination/cache-index.js';
import { inProcessCoordinator } from '../../src/coordination/in-process.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { coordinationContract } from '../support/coordination-contract.js';

coordinationContract({
  name: 'in-process',
  shared: false,
  cluster: () =>
    Promise.resolve({
      coordinator: () => Promise.resolve(inProcessCoordinator()),
      privateContent: async (_coordinator, metadata) => {
        const marks = new InProcessPrivateContent(metadata);
        await marks.load();
        return marks;
      },
      cacheIndex: (coordinator, setup) => Promise.resolve(new InProcessCacheIndex({ ...setup, events: coordinator.events, log: pino({ level: 'silent' }) })),
    }),
});
