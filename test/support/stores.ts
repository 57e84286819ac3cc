// Storage ports for unit tests, on either driver: the fs one in a temp directory, or the
// in-memory one (fast, no clean-up). Engine tests can take `memoryStorage()` and run without
// touching the disk.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inProcessCoordinator } from '../../src/coordination/in-process.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import type { Coordinator } from '../../src/coordination/ports.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { FsMetadataDriver } from '../../src/storage/fs-metadata-driver.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { CoordinatedMetadataStore, type MetadataDriver, type MetadataStore } from '../../src/storage/metadata-store.js';

export interface TestStorage<B> {
  blobs: B;
  metadata: MetadataStore;
  coordinator: Coordinator;
  privateContent: InProcessPrivateContent;
}

async function withPorts<B>(blobs: B, driver: MetadataDriver): Promise<TestStorage<B>> {
  const coordinator = inProcessCoordinator();
  const metadata = new CoordinatedMetadataStore(driver, coordinator.locks);
  const privateContent = new InProcessPrivateContent(metadata);
  await privateContent.load();
  return { blobs, metadata, coordinator, privateContent };
}

/** The fs driver in `root` (a new temp directory without one). */
export async function fsStorage(root?: string): Promise<TestStorage<FsBlobStore> & { root: string }> {
  const dir = root ?? (await mkdtemp(path.join(os.tmpdir(), 'ls-storage-')));
  const blobs = new FsBlobStore(dir);
  await blobs.init();
  return { root: dir, ...(await withPorts(blobs, new FsMetadataDriver(path.join(dir, 'meta'), path.join(dir, 'tmp')))) };
}

export async function memoryStorage(): Promise<TestStorage<MemoryBlobStore>> {
  const blobs = new MemoryBlobStore();
  await blobs.init();
  return withPorts(blobs, new MemoryMetadataDriver());
}

/** A fresh fs metadata driver in a new temp directory (the contract suite's factory). */
export async function fsMetadataDriver(): Promise<MetadataDriver> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-meta-'));
  return new FsMetadataDriver(path.join(dir, 'meta'), path.join(dir, 'tmp'));
}
