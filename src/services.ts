// Wires storage, upstream clients and the pull-through policy from a config. A new storage
// driver or upstream kind is chosen here and nowhere else.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
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
import { V2RegistryClient } from './upstream/v2-client.js';

export interface Services {
  config: Config;
  blobs: FsBlobStore;
  metadata: MetadataStore;
  manifests: ManifestStore;
  /** Blobs of private repositories: never evicted, never sent upstream. */
  privateBlobs: PrivateBlobs;
  mirror: PullThroughMirror;
  router: UpstreamRouter;
  inflight: InflightBlobs;
  close(): Promise<void>;
}

export async function createServices(config: Config, log: Logger): Promise<Services> {
  const root = path.resolve(config.storage.path);
  const blobs = new FsBlobStore(root);
  await blobs.init();
  const metadata = new FsMetadataStore(path.join(root, 'meta'), path.join(root, 'tmp'));
  const privateBlobs = new PrivateBlobs(metadata);
  await privateBlobs.load();
  const manifests = new ManifestStore(blobs, metadata);
  const upstreams: UpstreamRegistry[] = config.upstreams.map((upstream) => new V2RegistryClient(upstream));
  const router = new UpstreamRouter(upstreams);
  const inflight = new InflightBlobs({
    fetchFinished: (digest, bytes, error) => {
      if (error) log.warn({ digest, bytes, err: error.message }, 'upstream blob fetch failed; nothing cached');
    },
  });
  const mirror = new PullThroughMirror(blobs, manifests, new TagRecords(metadata), inflight, log);
  return {
    config,
    blobs,
    metadata,
    manifests,
    privateBlobs,
    mirror,
    router,
    inflight,
    close: async () => {
      await Promise.all(upstreams.map((u) => u.close()));
    },
  };
}
