// Wires storage, upstream clients and the pull-through policy from a config. A new storage
// driver or upstream kind is chosen here and nowhere else.
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { speaksV2, type Config, type UpstreamConfig } from './config/schema.js';
import { AccessPolicy, NamespacePolicy } from './auth/policy.js';
import { HtpasswdUsers, type HtpasswdOptions } from './auth/htpasswd.js';
import { BcryptPool } from './auth/bcrypt-pool.js';
import { LoginLimiter } from './auth/login-limiter.js';
import { JwtCodec } from './auth/jwt.js';
import { loadSigningSecret } from './auth/secret.js';
import { V1Access } from './auth/v1-access.js';
import { RegistryAccess } from './auth/v2-access.js';
import { CacheChangeWatcher, type CacheChanges } from './lifecycle/cache-changes.js';
import { Metrics } from './metrics/metrics.js';
import { UpstreamActivity } from './ui/upstream-activity.js';
import type { CacheIndex, Coordinator, PrivateContent, WindowCounters } from './coordination/ports.js';
import { PeerFollower } from './cluster/peer-follower.js';
import { PeerToken } from './cluster/peer-protocol.js';
import { openPeerCopies } from './cluster/peer-copies.js';
import { FETCH_LEASE_TTL_MS, InflightBlobs, type InflightObserver } from './mirror/inflight.js';
import { MetadataProvenance } from './mirror/provenance.js';
import { PullThroughMirror } from './mirror/pull-through.js';
import { V1PullThrough, type V1Upstream } from './mirror/v1-pull-through.js';
import { UpstreamRouter } from './mirror/router.js';
import { TagRecords } from './mirror/tag-records.js';
import { LocalRegistry } from './registry/local-registry.js';
import { UploadSessions } from './registry/uploads.js';
import { V1LocalRegistry } from './registry/v1-registry.js';
import type { BlobStore } from './storage/blob-store.js';
import { ManifestStore } from './storage/manifest-store.js';
import type { MetadataStore } from './storage/metadata-store.js';
import { openStorage } from './storage/open-storage.js';
import { V1_IMAGE_PREFIXES, V1ImageStore } from './storage/v1-image-store.js';
import type { UpstreamRegistry } from './upstream/upstream.js';
import { CircuitBreakerUpstream, CircuitBreakerV1Upstream } from './upstream/circuit-breaker.js';
import { UpstreamProblemLog } from './upstream/problem-log.js';
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
  blobs: BlobStore;
  metadata: MetadataStore;
  /** Locks, leases and blob events shared by the replicas of one storage. */
  coordinator: Coordinator;
  manifests: ManifestStore;
  tags: TagRecords;
  /** Blobs of private repositories: never evicted, never sent upstream. */
  privateContent: PrivateContent;
  mirror: PullThroughMirror;
  /** LRU over mirrored blobs: the storage.cache.maxBytes bound, and cache size figures. */
  cacheIndex: CacheIndex;
  /** Rescans after gc or import changed the storage beside this server. */
  cacheChanges: CacheChanges;
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
  /** With cluster.redis: the credential of requests between replicas (the peer route checks it). */
  peerToken: PeerToken | undefined;
  metrics: Metrics;
  /** Recent latency and last failure per upstream, as this replica saw them (the web page). */
  upstreamActivity: UpstreamActivity;
  close(): Promise<void>;
}

/** The serving process's whole graph. Commands that need less (gc, import) open storage alone. */
export async function createServices(config: Config, log: Logger): Promise<Services> {
  const storage = await openStorage(config, log, { ownsStaging: true });
  const { blobs, metadata, coordinator, privateContent } = storage;
  const manifests = new ManifestStore(blobs, metadata);
  // Read at scrape time, so the sources defined below are in place by then.
  const metrics = new Metrics({
    cache: { stats: () => cacheIndex.stats() },
    inflightFetches: () => inflight.count,
    cacheMaxBytes: config.storage.cache.maxBytes,
    circuits: () => [...breakers.entries()].map(([upstream, breaker]) => ({ upstream, state: breaker.circuit })),
    coordination: () => coordinator.status(),
  });
  const breakers = new Map<string, { readonly circuit: CircuitBreakerUpstream['circuit'] }>();
  const problems = new UpstreamProblemLog(log);
  const problemSubject = (upstream: UpstreamConfig) => ({
    name: upstream.name,
    hasCredentials: upstream.username !== undefined,
    cooldownMs: upstream.circuitBreaker.cooldown,
  });
  const upstreamActivity = new UpstreamActivity();
  // With cluster.redis an upstream's circuit is the cluster's: one replica opening it stops them all.
  const circuitSharing = (circuit: string) => ({ circuits: coordinator.circuits, leases: coordinator.leases, circuit });
  const v2Clients = new Map<string, UpstreamRegistry>();
  for (const upstream of config.upstreams.filter(speaksV2)) {
    const watched = problems.watch(new V2RegistryClient(upstream, upstreamObserver(upstream.name, metrics, upstreamActivity)), problemSubject(upstream));
    const client = new CircuitBreakerUpstream(
      watched,
      { failures: upstream.circuitBreaker.failures, cooldownMs: upstream.circuitBreaker.cooldown },
      Date.now,
      circuitSharing(`v2:${upstream.name}`),
    );
    v2Clients.set(upstream.name, client);
    breakers.set(upstream.name, client);
  }
  const upstreams = [...v2Clients.values()];
  const router = new UpstreamRouter(upstreams);
  // v1 sees every upstream: a v1 index, or v1 views of the v2 API's images (or both).
  const v1Upstreams: V1Upstream[] = config.upstreams.map((upstream) => {
    // The same breaker as v2, around the same problem log.
    const v1 = speaksV1(upstream)
      ? new CircuitBreakerV1Upstream(
          problems.watch(new V1RegistryClient(upstream, upstreamObserver(upstream.name, metrics, upstreamActivity)), problemSubject(upstream)),
          { failures: upstream.circuitBreaker.failures, cooldownMs: upstream.circuitBreaker.cooldown },
          Date.now,
          circuitSharing(`v1:${upstream.name}`),
        )
      : undefined;
    // A v1-only upstream's circuit is its only one: it shows in the circuit metric.
    if (v1 && !breakers.has(upstream.name)) breakers.set(upstream.name, v1);
    return {
      name: upstream.name,
      hosts: upstream.hosts,
      isDefault: upstream.default,
      libraryPrefix: upstream.libraryPrefix,
      tagTtlMs: upstream.tagTtl,
      platform: upstream.v1.platform,
      v2: v2Clients.get(upstream.name),
      v1,
    };
  });
  const v1Router = new UpstreamRouter(v1Upstreams);
  const cacheIndex: CacheIndex = storage.createCacheIndex(config.storage.cache.maxBytes);
  // gc and import beside this server leave a notice in the storage; started before the first
  // build, so a change made meanwhile is in the build or rescanned, never missed.
  const cacheChanges = await CacheChangeWatcher.start({ metadata, cacheIndex, privateContent, log });
  await cacheIndex.rebuild();
  // Evicted here or collected by gc (in any replica): the in-memory manifest copy goes too.
  coordinator.events.subscribe((event) => {
    if (event.type === 'removed') manifests.forget(event.digest);
  });
  const inflightObserver: InflightObserver = {
    fetchFinished: (digest, bytes, error, source) => {
      metrics.upstreamReceived(source, bytes);
      if (error) log.warn({ digest, bytes, err: error.message }, 'upstream blob fetch failed; nothing cached');
      else coordinator.events.publish({ type: 'committed', digest, size: bytes, source });
    },
    // Debug: with a leader named this is the normal path of a follower; without one it only
    // happens in the instant between a commit and its lease's release.
    leaseRefused: (key, peerUrl) =>
      log.debug({ fetch: key, peer: peerUrl }, peerUrl === undefined ? 'the fetch lease is held elsewhere; fetching uncoordinated' : 'the fetch is led by another replica; following it'),
  };
  const signingSecret = await loadSigningSecret(path.resolve(config.storage.path), config.auth.secret);
  // Peers exist only with a shared coordinator; the schema then requires auth.secret and advertiseUrl.
  const clustered = config.cluster.redis !== undefined && config.cluster.advertiseUrl !== undefined;
  const peerToken = clustered ? new PeerToken(signingSecret) : undefined;
  const inflight = new InflightBlobs(inflightObserver, { leases: coordinator.leases, advertiseUrl: clustered ? config.cluster.advertiseUrl : undefined });
  const peers = peerToken
    ? new PeerFollower({ token: peerToken, leases: coordinator.leases, leaseTtlMs: FETCH_LEASE_TTL_MS, metrics, log, copies: await openPeerCopies(config.storage.path) })
    : undefined;
  const policy = new NamespacePolicy(config.private.namespaces);
  const users = config.auth.htpasswd ? new HtpasswdUsers(path.resolve(config.auth.htpasswd), userVerification(config, log, coordinator.counters)) : undefined;
  await users?.refresh(); // a broken users file stops start-up, with its line number
  const tokens = new JwtCodec(signingSecret);
  // One policy for both APIs; each API's edge only reads credentials and writes refusals.
  const accessPolicy = new AccessPolicy(policy, { anonymousPull: config.auth.anonymousPull, privateAnonymousPull: config.private.anonymousPull }, users);
  const access = new RegistryAccess(accessPolicy, users, tokens, {
    tokenTtlMs: config.auth.tokenTtl,
    service: TOKEN_SERVICE,
  });
  const local = new LocalRegistry(blobs, manifests, metadata, privateContent);
  const v1Local = new V1LocalRegistry(new V1ImageStore(metadata, V1_IMAGE_PREFIXES.private), blobs, metadata, privateContent, local);
  const v1Access = new V1Access(accessPolicy, users, tokens, {
    tokenTtlMs: config.auth.tokenTtl,
    audience: V1_TOKEN_AUDIENCE,
  });
  const uploads = new UploadSessions(blobs, config.storage.uploadTimeout, {
    limits: config.storage.uploads,
    // Every upload is a push into a private repository.
    beforePublish: (digest, size) => privateContent.add(digest, size),
  });
  const tags = new TagRecords(metadata);
  const provenance = new MetadataProvenance(metadata);
  const mirror = new PullThroughMirror(blobs, manifests, tags, inflight, log, {
    offline: config.offline,
    tracker: cacheIndex,
    isPrivate: (digest) => privateContent.has(digest),
    provenance,
    locks: coordinator.locks,
    peers,
  });
  const v1Mirror = new V1PullThrough(metadata, blobs, mirror, log, {
    offline: config.offline,
    upstreamByName: (name) => v1Router.byName(name),
    provenance,
    locks: coordinator.locks,
  });
  return {
    config,
    blobs,
    metadata,
    coordinator,
    manifests,
    tags,
    privateContent,
    mirror,
    cacheIndex,
    cacheChanges,
    router,
    inflight,
    peerToken,
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
    upstreamActivity,
    close: async () => {
      await uploads.close();
      await users?.close();
      await Promise.all([...upstreams.map((u) => u.close()), ...v1Upstreams.map((u) => u.v1?.close())]);
      // Closing the upstreams ends their responses; the fetches reading them still commit or
      // abort and write their records (provenance, layer digests). Let them, within a bound,
      // so no metadata write is cut half-way by the exit.
      const settleBy = Date.now() + FETCH_SETTLE_MS;
      while (inflight.count > 0 && Date.now() < settleBy) await delay(10);
      await cacheChanges.close();
      await peers?.close();
      await cacheIndex.close();
      await blobs.close();
      await storage.close();
    },
  };
}

/** Upstream client events into metrics. */
function upstreamObserver(upstream: string, metrics: Metrics, activity: UpstreamActivity): UpstreamObserver {
  return {
    request: (kind, status, seconds) => {
      metrics.upstreamRequest(upstream, kind, status, seconds);
      activity.request(upstream, kind, status, seconds);
    },
    rateLimit: (remaining) => metrics.upstreamRateLimit(upstream, remaining),
    received: (bytes) => metrics.upstreamReceived(upstream, bytes),
  };
}

/** bcrypt off the event loop and failed-login limits, as auth.* configures them. */
function userVerification(config: Config, log: Logger, counters: WindowCounters): HtpasswdOptions {
  const { verifyWorkers, verifyQueue, loginFailures } = config.auth;
  return {
    pool: new BcryptPool({ workers: verifyWorkers, queue: verifyQueue }),
    // Counted through the coordinator: with cluster.redis the limits hold across replicas.
    limiter: new LoginLimiter({ perAddress: loginFailures.perAddress, perUser: loginFailures.perUser, windowMs: loginFailures.window }, Date.now, counters),
    signupAccess: config.auth.signupAccess,
    log,
  };
}
