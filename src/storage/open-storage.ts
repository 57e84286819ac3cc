// The one place a storage driver and a coordinator are chosen from the config. The server and
// every command that works on a data directory (gc, import) open their ports here, and build
// nothing else they do not use. An S3 driver (issue 16) or a Redis coordinator (issue 17) is a
// new file plus a branch below.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { openCoordination } from '../coordination/open-coordination.js';
import type { CacheIndex, Coordinator, PrivateContent } from '../coordination/ports.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { FsMetadataDriver } from './fs-metadata-driver.js';
import { CoordinatedMetadataStore, type MetadataStore } from './metadata-store.js';

export interface StoragePorts {
  blobs: BlobStore;
  metadata: MetadataStore;
  coordinator: Coordinator;
  /** Which digests are private content (pushed here). */
  privateContent: PrivateContent;
  /** The LRU index over mirrored blobs, from the same coordinator (not yet rebuilt). */
  createCacheIndex(maxBytes: number | undefined): CacheIndex;
  close(): Promise<void>;
}

export interface OpenStorageOptions {
  /**
   * True for the serving process: it owns the staging area and clears what a crash left
   * there. Tools that may run beside a server (gc, import) pass false.
   */
  ownsStaging?: boolean;
}

export async function openStorage(config: Config, log: Logger, options: OpenStorageOptions = {}): Promise<StoragePorts> {
  const coordination = await openCoordination(config, log);
  const { coordinator } = coordination;
  const root = path.resolve(config.storage.path);
  const blobs = new FsBlobStore(root);
  await blobs.init({ clearStaging: options.ownsStaging ?? true });
  const metadata = new CoordinatedMetadataStore(new FsMetadataDriver(path.join(root, 'meta'), path.join(root, 'tmp')), coordinator.locks);
  const privateContent = await coordination.openPrivateContent(metadata);
  return {
    blobs,
    metadata,
    coordinator,
    privateContent,
    createCacheIndex: (maxBytes) => coordination.createCacheIndex({ blobs, metadata, privateContent, maxBytes }),
    close: async () => {
      privateContent.close?.();
      await coordinator.close();
    },
  };
}
