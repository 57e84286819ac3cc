// Wires storage, upstream clients and the pull-through policy from a config. A new storage
// driver or upstream kind is chosen here and nowhere else.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { CacheIndex } from './mirror/cache-index.js';
import { InflightBlobs } from './mirror/inflight.js';
import { PullThroughMirror } from './mirror/pull-through.js';
import { UpstreamRouter } from './mirror/router.js';
import { TagRecords } from './mirror/tag-records.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import { FsMetadataStore } from './storage/fs-metadata-store.js';
import { ManifestStore } from './storage/manifest-store.js';
import type { MetadataStore } from './storage/metadata-store.js';
import { PrivateBlobs } from './storage/private-blobs.js';
import type { UpstreamRegistry } from './upstream/upstream.js';
import { CircuitBreakerUpstream } from './upstream/circuit-breaker.js';
import { V2RegistryClient } from './upstream/v2-client.js';

export interface Services {
  config: Config;
  blobs: FsBlobStore;
  metadata: MetadataStore;
  manifests: ManifestStore;
  tags: TagRecords;
  /** Blobs of private repositories: never evicted, never sent upstream. */
  privateBlobs: PrivateBlobs;
  mirror: PullThroughMirror;
  /** LRU over mirrored blobs: the storage.cache.maxBytes bound, and cache size figures. */
  cacheIndex: CacheIndex;
  router: UpstreamRouter;
  inflight: InflightBlobs;
  close(): Promise<void>;
}

export interface ServiceOptions {
  /**
   * True for the serving process: it owns the data directory's temp files and clears what a
   * crash left. Tools that may run beside a server (gc, import) pass false.
   */
  ownsTempFiles?: boolean;
}

export async function createServices(config: Config, log: Logger, options: ServiceOptions = {}): Promise<Services> {
  const root = path.resolve(config.storage.path);
  const blobs = new FsBlobStore(root);
  await blobs.init({ clearTemp: options.ownsTempFiles ?? true });
  const metadata = new FsMetadataStore(path.join(root, 'meta'), path.join(root, 'tmp'));
  const privateBlobs = new PrivateBlobs(metadata);
  await privateBlobs.load();
  const manifests = new ManifestStore(blobs, metadata);
  const upstreams: UpstreamRegistry[] = config.upstreams.map(
    (upstream) =>
      new CircuitBreakerUpstream(new V2RegistryClient(upstream), {
        failures: upstream.circuitBreaker.failures,
        cooldownMs: upstream.circuitBreaker.cooldown,
      }),
  );
  const router = new UpstreamRouter(upstreams);
  const cacheIndex = new CacheIndex(blobs, privateBlobs, config.storage.cache.maxBytes, log);
  await cacheIndex.rebuild();
  cacheIndex.onEvicted = (digest) => manifests.forget(digest);
  const inflight = new InflightBlobs({
    fetchFinished: (digest, bytes, error) => {
      if (error) log.warn({ digest, bytes, err: error.message }, 'upstream blob fetch failed; nothing cached');
      else cacheIndex.added(digest, bytes);
    },
  });
  const tags = new TagRecords(metadata);
  const mirror = new PullThroughMirror(blobs, manifests, tags, inflight, log, {
    offline: config.offline,
    tracker: cacheIndex,
  });
  return {
    config,
    blobs,
    metadata,
    manifests,
    tags,
    privateBlobs,
    mirror,
    cacheIndex,
    router,
    inflight,
    close: async () => {
      await Promise.all(upstreams.map((u) => u.close()));
    },
  };
}
