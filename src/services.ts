// Wires storage, upstream clients and the pull-through policy from a config. A new storage
// driver or upstream kind is chosen here and nowhere else.
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { speaksV2, type Config } from './config/schema.js';
import { AccessPolicy, NamespacePolicy } from './auth/policy.js';
import { HtpasswdUsers } from './auth/htpasswd.js';
import { JwtCodec } from './auth/jwt.js';
import { loadSigningSecret } from './auth/secret.js';
import { V1Access } from './auth/v1-access.js';
import { RegistryAccess } from './auth/v2-access.js';
import { Metrics } from './metrics/metrics.js';
import { CacheIndex } from './mirror/cache-index.js';
import { InflightBlobs } from './mirror/inflight.js';
import { MetadataProvenance } from './mirror/provenance.js';
import { PullThroughMirror } from './mirror/pull-through.js';
import { V1PullThrough, type V1Upstream } from './mirror/v1-pull-through.js';
import { UpstreamRouter } from './mirror/router.js';
import { TagRecords } from './mirror/tag-records.js';
import { LocalRegistry } from './registry/local-registry.js';
import { UploadSessions } from './registry/uploads.js';
import { V1LocalRegistry } from './registry/v1-registry.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import { FsMetadataStore } from './storage/fs-metadata-store.js';
import { ManifestStore } from './storage/manifest-store.js';
import type { MetadataStore } from './storage/metadata-store.js';
import { PrivateBlobs } from './storage/private-blobs.js';
import { V1_IMAGE_PREFIXES, V1ImageStore } from './storage/v1-image-store.js';
import type { UpstreamRegistry } from './upstream/upstream.js';
import { CircuitBreakerUpstream, CircuitBreakerV1Upstream } from './upstream/circuit-breaker.js';
import { speaksV1, V1RegistryClient } from './upstream/v1-client.js';
import { V2RegistryClient, type UpstreamObserver } from './upstream/v2-client.js';

/** How long closing waits for fetches to finish their bookkeeping once the upstreams are closed. */
const FETCH_SETTLE_MS = 5_000;

/** The `service` in Bearer challenges and the audience of the tokens we issue. */
export const TOKEN_SERVICE = 'longshore';
/** The audience of v1 tokens (`Authorization: Token signature=…`). */
export const V1_TOKEN_AUDIENCE = 'longshore-v1';

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
  policy: NamespacePolicy;
  access: RegistryAccess;
  users: HtpasswdUsers | undefined;
  tokens: JwtCodec;
  /** Private repositories (v2 pushes). */
  local: LocalRegistry;
  /** Private repositories pushed with v1: images by id, tags, repository image lists. */
  v1Local: V1LocalRegistry;
  v1Access: V1Access;
  /** v1 pull-through: mirrored v1 images, tags and layers. */
  v1Mirror: V1PullThrough;
  v1Router: UpstreamRouter<V1Upstream>;
  uploads: UploadSessions;
  inflight: InflightBlobs;
  metrics: Metrics;
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
  // Read at scrape time, so the sources defined below are in place by then.
  const metrics = new Metrics({
    cache: { stats: () => cacheIndex.stats() },
    inflightFetches: () => inflight.count,
    cacheMaxBytes: config.storage.cache.maxBytes,
  });
  const v2Clients = new Map<string, UpstreamRegistry>();
  for (const upstream of config.upstreams.filter(speaksV2)) {
    const client = new CircuitBreakerUpstream(new V2RegistryClient(upstream, upstreamObserver(upstream.name, metrics)), {
      failures: upstream.circuitBreaker.failures,
      cooldownMs: upstream.circuitBreaker.cooldown,
    });
    v2Clients.set(upstream.name, client);
  }
  const upstreams = [...v2Clients.values()];
  const router = new UpstreamRouter(upstreams);
  // v1 sees every upstream: a v1 index, or v1 views of the v2 API's images (or both).
  const v1Upstreams: V1Upstream[] = config.upstreams.map((upstream) => ({
    name: upstream.name,
    hosts: upstream.hosts,
    isDefault: upstream.default,
    libraryPrefix: upstream.libraryPrefix,
    tagTtlMs: upstream.tagTtl,
    platform: upstream.v1.platform,
    v2: v2Clients.get(upstream.name),
    v1: speaksV1(upstream)
      ? new CircuitBreakerV1Upstream(new V1RegistryClient(upstream, upstreamObserver(upstream.name, metrics)), {
          failures: upstream.circuitBreaker.failures,
          cooldownMs: upstream.circuitBreaker.cooldown,
        })
      : undefined,
  }));
  const v1Router = new UpstreamRouter(v1Upstreams);
  const cacheIndex = new CacheIndex(blobs, privateBlobs, config.storage.cache.maxBytes, log);
  await cacheIndex.rebuild();
  cacheIndex.onEvicted = (digest) => manifests.forget(digest);
  const inflight = new InflightBlobs({
    fetchFinished: (digest, bytes, error, source) => {
      metrics.upstreamReceived(source, bytes);
      if (error) log.warn({ digest, bytes, err: error.message }, 'upstream blob fetch failed; nothing cached');
      else cacheIndex.added(digest, bytes);
    },
  });
  const policy = new NamespacePolicy(config.private.namespaces);
  const users = config.auth.htpasswd ? new HtpasswdUsers(path.resolve(config.auth.htpasswd)) : undefined;
  await users?.refresh(); // a broken users file stops start-up, with its line number
  const tokens = new JwtCodec(await loadSigningSecret(root, config.auth.secret));
  // One policy for both APIs; each API's edge only reads credentials and writes refusals.
  const accessPolicy = new AccessPolicy(policy, { anonymousPull: config.auth.anonymousPull, privateAnonymousPull: config.private.anonymousPull });
  const access = new RegistryAccess(accessPolicy, users, tokens, {
    tokenTtlMs: config.auth.tokenTtl,
    service: TOKEN_SERVICE,
  });
  const local = new LocalRegistry(blobs, manifests, metadata, privateBlobs);
  const v1Local = new V1LocalRegistry(new V1ImageStore(metadata, V1_IMAGE_PREFIXES.private), blobs, metadata, privateBlobs, local);
  const v1Access = new V1Access(accessPolicy, users, tokens, {
    tokenTtlMs: config.auth.tokenTtl,
    audience: V1_TOKEN_AUDIENCE,
  });
  const uploads = new UploadSessions(blobs, config.storage.uploadTimeout);
  const tags = new TagRecords(metadata);
  const provenance = new MetadataProvenance(metadata);
  const mirror = new PullThroughMirror(blobs, manifests, tags, inflight, log, {
    offline: config.offline,
    tracker: cacheIndex,
    isPrivate: (digest) => privateBlobs.has(digest),
    provenance,
  });
  const v1Mirror = new V1PullThrough(metadata, blobs, mirror, log, {
    offline: config.offline,
    upstreamByName: (name) => v1Router.byName(name),
    provenance,
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
    policy,
    access,
    users,
    tokens,
    local,
    v1Local,
    v1Access,
    v1Mirror,
    v1Router,
    uploads,
    metrics,
    close: async () => {
      await uploads.close();
      await Promise.all([...upstreams.map((u) => u.close()), ...v1Upstreams.map((u) => u.v1?.close())]);
      // Closing the upstreams ends their responses; the fetches reading them still commit or
      // abort and write their records (provenance, layer digests). Let them, within a bound,
      // so no metadata write is cut half-way by the exit.
      const settleBy = Date.now() + FETCH_SETTLE_MS;
      while (inflight.count > 0 && Date.now() < settleBy) await delay(10);
    },
  };
}

/** Upstream client events into metrics. */
function upstreamObserver(upstream: string, metrics: Metrics): UpstreamObserver {
  return {
    request: (kind, status, seconds) => metrics.upstreamRequest(upstream, kind, status, seconds),
    rateLimit: (remaining) => metrics.upstreamRateLimit(upstream, remaining),
    received: (bytes) => metrics.upstreamReceived(upstream, bytes),
  };
}
