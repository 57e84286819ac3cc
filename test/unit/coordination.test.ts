import { inProcessCoordinator } from '../../src/coordination/in-process.js';
import { coordinationContract } from '../support/coordination-contract.js';

coordinationContract('in-process', () => Promise.resolve(inProcessCoordinator()));
