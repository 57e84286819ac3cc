import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { blobStoreContract } from '../support/blob-store-contract.js';

blobStoreContract('memory', async () => {
  const store = new MemoryBlobStore();
  await store.init();
  return store;
});
