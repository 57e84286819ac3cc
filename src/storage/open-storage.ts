// The one place a storage driver and a coordinator are chosen from the config. The server and
// every command that works on a data directory (gc, import) open their ports here, and build
// nothing else they do not use. storage.driver picks fs or s3 (issue 16); cluster.redis the
// coordinator (issue 17, coordination/open-coordination.ts).
//
// The in-process coordinator's locks hold within one process. A gc or import beside a server
// has locks of its own, so what they write must not need the server's: gc deletes (bytes
// before marks) and import publishes verified blobs and whole records; at worst the access
// times of one cache-index shard written by both at once lose one side's recent entries.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { openCoordination } from '../coordination/open-coordination.js';
import type { CacheIndex, Coordinator, PrivateContent } from '../coordination/ports.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { FsMetadataDriver } from './fs-metadata-driver.js';
import { CoordinatedMetadataStore, type MetadataDriver, type MetadataStore } from './metadata-store.js';

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
  const { blobs, metadataDriver, closeDriver } = config.storage.driver === 's3' ? await openS3(config, root, options.ownsStaging ?? true) : openFs(root, config.storage.directWrites);
  await blobs.init({ clearStaging: options.ownsStaging ?? true });
  const metadata = new CoordinatedMetadataStore(metadataDriver, coordinator.locks);
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
      closeDriver();
    },
  };
}

interface Drivers {
  blobs: BlobStore;
  metadataDriver: MetadataDriver;
  /** Releases what the drivers hold beyond the ports' own close (an S3 client's sockets). */
  closeDriver: () => void;
}

function openFs(root: string, directWrites: boolean): Drivers {
  return { blobs: new FsBlobStore(root, { directWrites }), metadataDriver: new FsMetadataDriver(path.join(root, 'meta'), path.join(root, 'tmp')), closeDriver: () => undefined };
}

// Presigned blob URLs (storage.s3.redirect) live as long as the reference registry's: long
// enough for a slow client to start a large layer, short enough that a leaked URL soon dies.
const REDIRECT_URL_TTL_SECONDS = 20 * 60;

/**
 * storage.driver "s3": blobs and records in the bucket, scratch files under storage.path. The
 * driver and the AWS SDK are loaded only here: on the fs driver they would add most of a
 * second to every start (and the SDK's Node version warning to its stderr).
 */
async function openS3(config: Config, scratchDir: string, ownsStaging: boolean): Promise<Drivers> {
  const s3 = config.storage.s3;
  if (s3 === undefined) throw new Error('storage.driver is "s3" but storage.s3 is not set'); // the schema refuses this already
  const [{ S3BlobStore }, { createS3Client }, { S3MetadataDriver }, { RecordCache }] = await Promise.all([
    import('./s3-blob-store.js'),
    import('./s3-client.js'),
    import('./s3-metadata-driver.js'),
    import('./s3-record-cache.js'),
  ]);
  const client = createS3Client(s3);
  const location = { client, bucket: s3.bucket, prefix: s3.prefix };
  return {
    blobs: new S3BlobStore({
      ...location,
      scratchDir,
      // A tool beside the server (gc, import) keeps no spares: they would outlive it, in a
      // directory it does not own.
      spareScratchBytes: ownsStaging ? s3.spareScratchBytes : 0,
      // Another replica's upload may run long; older ones are a killed process's leftovers.
      startupSweepGraceMs: config.storage.uploadTimeout,
      describeEndpoint: s3.endpoint ?? 'AWS',
      ...(s3.redirect ? { redirectUrlTtlSeconds: REDIRECT_URL_TTL_SECONDS } : {}),
    }),
    // Every record read is a GET: write-once records are read once per process.
    metadataDriver: new RecordCache(new S3MetadataDriver(location)),
    closeDriver: () => client.destroy(),
  };
}
