// Chooses the coordinator from the config: in-process for one replica, Redis (cluster.redis)
// for several sharing one storage. The private-content and cache indexes come from the same
// choice, since they are built over the metadata store that the coordinator's locks guard.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { InProcessCacheIndex } from './cache-index.js';
import { inProcessCoordinator } from './in-process.js';
import type { CacheIndex, Coordinator, PrivateContent } from './ports.js';
import { InProcessPrivateContent } from './private-content.js';

export interface CacheIndexPorts {
  blobs: BlobStore;
  metadata: MetadataStore;
  privateContent: PrivateContent;
  /** storage.cache.maxBytes; undefined: track, evict nothing. */
  maxBytes: number | undefined;
}

export interface Coordination {
  coordinator: Coordinator;
  /** The private-content index over `metadata`, loaded. */
  openPrivateContent(metadata: MetadataStore): Promise<PrivateContent & { close?(): void }>;
  /** A cache index (not yet rebuilt). */
  createCacheIndex(ports: CacheIndexPorts): CacheIndex;
}

export async function openCoordination(config: Config, log: Logger): Promise<Coordination> {
  const onListenerError = (error: unknown, message: unknown) => log.error({ err: error, message }, 'a listener of blob events or circuit changes failed');
  const redisUrl = config.cluster.redis;
  if (redisUrl === undefined) {
    const coordinator = inProcessCoordinator({ onListenerError });
    return {
      coordinator,
      openPrivateContent: async (metadata) => {
        const privateContent = new InProcessPrivateContent(metadata);
        await privateContent.load();
        return privateContent;
      },
      createCacheIndex: (ports) => new InProcessCacheIndex({ ...ports, events: coordinator.events, log }),
    };
  }
  // Loaded only with cluster.redis: the client is a large module tree that a single replica
  // (and every CLI command) would otherwise pay for at start.
  const [{ openRedisCoordinator }, { RedisCacheIndex }, { RedisPrivateContent }] = await Promise.all([
    import('./redis.js'),
    import('./redis-cache-index.js'),
    import('./redis-private-content.js'),
  ]);
  const { advertiseUrl } = config.cluster;
  const uploads = advertiseUrl === undefined ? undefined : { advertiseUrl, idleTimeoutMs: config.storage.uploadTimeout };
  const coordinator = await openRedisCoordinator({ url: redisUrl, log, onListenerError, uploads });
  return {
    coordinator,
    openPrivateContent: async (metadata) => {
      const privateContent = new RedisPrivateContent(coordinator.connection, metadata, coordinator.leases, log);
      await privateContent.load();
      return privateContent;
    },
    createCacheIndex: (ports) => new RedisCacheIndex({ ...ports, connection: coordinator.connection, leases: coordinator.leases, events: coordinator.events, log }),
  };
}
