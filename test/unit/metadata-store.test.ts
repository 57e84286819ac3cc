import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { metadataStoreContract } from '../support/metadata-store-contract.js';
import { fsMetadataDriver } from '../support/stores.js';

metadataStoreContract('fs', fsMetadataDriver);
metadataStoreContract('memory', () => Promise.resolve(new MemoryMetadataDriver()));
