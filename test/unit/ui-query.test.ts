// The web page's query service and repository catalog, over the in-memory storage ports:
// what each viewer may see, sizes, cached layers, pull counts merged across replicas, and
// the cost of a view with 10,000 repositories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseDigest } from '../../src/protocol/digest.js';
import { MediaType } from '../../src/protocol/media-types.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { ManifestStore } from '../../src/storage/manifest-store.js';
import type { MetadataStore } from '../../src/storage/metadata-store.js';
import { UiQueryService, type QueryDependencies } from '../../src/ui/query-service.js';
import { MAX_TAGS_PER_REPOSITORY, RepositoryCatalog } from '../../src/ui/repository-catalog.js';
import { sha256Digest } from '../harness/digests.js';
import { memoryStorage } from '../support/stores.js';

const quietLog = { warn: () => undefined };
const noTraffic = { hits: 0, lookups: 0, hitRatio: undefined, bytesFromCache: 0, bytesFromUpstream: 0, upstreamBytes: 0 };

async function storeImage(storage: Awaited<ReturnType<typeof memoryStorage>>, manifests: ManifestStore, layerSizes: number[], platform = { os: 'linux', architecture: 'amd64' }) {
  const config = Buffer.from(JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: [] } }));
  const configDigest = sha256Digest(config);
  await storage.blobs.put(parseDigest(configDigest), config);
  const layers = [];
  for (const size of layerSizes) {
    const bytes = randomBytes(size);
    const digest = sha256Digest(bytes);
    await storage.blobs.put(parseDigest(digest), bytes);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size });
  }
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers }),
  );
  const digest = sha256Digest(manifest);
  await manifests.put(parseDigest(digest), manifest, MediaType.ociManifest);
  return { digest, size: config.length + layerSizes.reduce((a, b) => a + b, 0), layers };
}

async function fixture() {
  const storage = await memoryStorage();
  const manifests = new ManifestStore(storage.blobs, storage.metadata);
  const catalog = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000 });
  const deps: QueryDependencies = {
    catalog,
    metadata: storage.metadata,
    manifests,
    blobs: storage.blobs,
    cache: { stats: () => Promise.resolve({ mirrored: { bytes: 10, objects: 2 }, private: { bytes: 5, objects: 1 }, evictions: 0 }) },
    traffic: { sinceStart: () => Promise.resolve(noTraffic), lastHour: () => Promise.resolve({ ...noTraffic, sinceMs: 0 }) },
    inflightFetches: () => 0,
    cacheMaxBytes: 1024,
    // corp/ is private: users only. Mirrored content: anyone.
    mayPull: (user, repository) => !repository.startsWith('corp/') || user !== undefined,
  };
  return { storage, manifests, catalog, query: new UiQueryService(deps) };
}

test('query service: anonymous viewers see mirrored repositories only, users see private ones too; tags carry sizes and pull counts', async (t) => {
  const { storage, manifests, catalog, query } = await fixture();
  t.after(() => catalog.close());
  const mirrored = await storeImage(storage, manifests, [3000, 500]);
  await storage.metadata.put(metadataKeys.mirrorTag('hub', 'library/alpine', '3.20'), { digest: mirrored.digest, mediaType: MediaType.ociManifest, checkedAt: Date.now() });
  const secret = await storeImage(storage, manifests, [1234]);
  await storage.metadata.put(metadataKeys.localTag('corp/app', 'v1'), { digest: secret.digest });
  catalog.recordPull('library/alpine', { kind: 'mirrored', upstream: 'hub', repository: 'library/alpine' }, '3.20');
  catalog.recordPull('library/alpine', { kind: 'mirrored', upstream: 'hub', repository: 'library/alpine' }, '3.20');
  catalog.note('corp/app', { kind: 'private', repository: 'corp/app' });

  const anonymous = await query.repositories({ user: undefined }, { page: 1, perPage: 50 });
  assert.deepEqual(anonymous.items.map((r) => r.name), ['library/alpine']);
  assert.equal(await query.repository({ user: undefined }, 'corp/app', { page: 1, perPage: 50 }), undefined, 'a private repository is hidden from anonymous viewers');
  assert.equal(await query.image({ user: undefined }, 'corp/app', secret.digest), undefined);

  const alice = await query.repositories({ user: 'alice' }, { page: 1, perPage: 50 });
  assert.deepEqual(alice.items.map((r) => [r.name, r.kind, r.tagCount, r.pulls]), [
    ['corp/app', 'private', 1, 0],
    ['library/alpine', 'mirrored', 1, 2],
  ]);
  const repo = await query.repository({ user: 'alice' }, 'library/alpine', { page: 1, perPage: 50 });
  assert.equal(repo?.tags.items[0]?.size, mirrored.size);
  assert.equal(repo?.tags.items[0]?.kind, 'image');
  assert.deepEqual(repo?.tags.items[0]?.platforms, ['linux/amd64']);
  assert.equal(repo?.tags.items[0]?.pulls, 2);
  assert.equal((await query.repository({ user: 'alice' }, 'corp/app', { page: 1, perPage: 50 }))?.tags.items[0]?.size, secret.size);

  assert.equal((await query.overview({ user: undefined })).repositories.private, 0);
  assert.equal((await query.overview({ user: 'alice' })).repositories.private, 1);
});

test('query service: an image lists its layers and which are cached; a digest of another repository is not shown through this one', async (t) => {
  const { storage, manifests, catalog, query } = await fixture();
  t.after(() => catalog.close());
  const image = await storeImage(storage, manifests, [100, 200]);
  const other = await storeImage(storage, manifests, [300]);
  await storage.metadata.put(metadataKeys.mirrorTag('hub', 'library/busybox', 'latest'), { digest: image.digest, mediaType: MediaType.ociManifest, checkedAt: 0 });
  catalog.note('library/busybox', { kind: 'mirrored', upstream: 'hub', repository: 'library/busybox' });
  await storage.blobs.delete(parseDigest(image.layers[1]!.digest)); // evicted

  const view = await query.image({ user: undefined }, 'library/busybox', image.digest);
  assert.deepEqual(view?.layers.map((l) => [l.size, l.cached]), [
    [100, true],
    [200, false],
  ]);
  assert.equal(view?.config?.cached, true);
  assert.equal(await query.image({ user: undefined }, 'library/busybox', other.digest), undefined);
});

test('repository catalog: pull counts from two replicas sharing one store add up', async () => {
  const storage = await memoryStorage();
  const replicaA = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000, snapshotTtlMs: 0 });
  const replicaB = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000, snapshotTtlMs: 0 });
  const origin = { kind: 'mirrored' as const, upstream: 'hub', repository: 'library/redis' };
  for (let i = 0; i < 3; i += 1) replicaA.recordPull('library/redis', origin, '7');
  for (let i = 0; i < 4; i += 1) replicaB.recordPull('library/redis', origin, '7');
  replicaB.recordPull('library/redis', origin, undefined); // by digest: last pulled only
  await Promise.all([replicaA.flush(), replicaB.flush()]);
  const entry = await replicaA.get('library/redis');
  assert.equal(entry?.pulls, 7);
  assert.equal(entry?.tags['7']?.pulls, 7);
  assert.ok((entry?.lastPulledAt ?? 0) > 0);
  assert.deepEqual((await replicaB.entries()).map(([name]) => name), ['library/redis'], 'the other replica lists it');
  await replicaA.close();
  await replicaB.close();
});

test('repository catalog: reconcile adds repositories stored without passing through the routes, once', async () => {
  const storage = await memoryStorage();
  const catalog = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000 });
  catalog.note('library/a', { kind: 'mirrored', upstream: 'hub', repository: 'library/a' });
  async function* found() {
    await Promise.resolve();
    yield { name: 'library/a', origin: { kind: 'mirrored' as const, upstream: 'hub', repository: 'library/a' } };
    yield { name: 'corp/b', origin: { kind: 'private' as const, repository: 'corp/b' } };
  }
  assert.equal(await catalog.reconcile(found()), 1);
  assert.deepEqual((await catalog.entries()).map(([name]) => name), ['corp/b', 'library/a']);
  await catalog.close();
});

/** Counts reads of the metadata store, to show a view reads a page's worth, not the whole store. */
function countingMetadata(inner: MetadataStore): { store: MetadataStore; reads: () => number; reset: () => void } {
  let reads = 0;
  const store: MetadataStore = {
    get: (key) => ((reads += 1), inner.get(key)),
    list: (prefix) => ((reads += 1), inner.list(prefix)),
    put: (key, value) => inner.put(key, value),
    delete: (key) => inner.delete(key),
    putIfAbsent: (key, value) => inner.putIfAbsent(key, value),
    update: (key, change) => inner.update(key, change),
  };
  return { store, reads: () => reads, reset: () => (reads = 0) };
}

test('10,000 repositories: a page of the list reads one page of records, and renders fast', async (t) => {
  const storage = await memoryStorage();
  const counting = countingMetadata(storage.metadata);
  const catalog = new RepositoryCatalog(counting.store, { log: quietLog, flushIntervalMs: 60_000, snapshotTtlMs: 60_000 });
  t.after(() => catalog.close());
  for (let i = 0; i < 10_000; i += 1) {
    const name = i % 10 === 0 ? `corp/app-${i}` : `library/image-${String(i).padStart(5, '0')}`;
    catalog.recordPull(name, name.startsWith('corp/') ? { kind: 'private', repository: name } : { kind: 'mirrored', upstream: 'hub', repository: name }, 'latest');
  }
  await catalog.flush();
  const query = new UiQueryService({
    catalog,
    metadata: counting.store,
    manifests: { get: () => Promise.resolve(undefined) },
    blobs: storage.blobs,
    cache: { stats: () => Promise.resolve({ mirrored: { bytes: 0, objects: 0 }, private: { bytes: 0, objects: 0 }, evictions: 0 }) },
    traffic: { sinceStart: () => Promise.resolve(noTraffic), lastHour: () => Promise.resolve({ ...noTraffic, sinceMs: 0 }) },
    inflightFetches: () => 0,
    cacheMaxBytes: undefined,
    mayPull: (user, repository) => !repository.startsWith('corp/') || user !== undefined,
  });
  await query.repositories({ user: 'alice' }, { page: 1, perPage: 50 }); // first view after start: loads the snapshot

  counting.reset();
  const started = performance.now();
  const page = await query.repositories({ user: undefined }, { page: 37, perPage: 50 });
  const searched = await query.repositories({ user: 'alice' }, { query: 'app-99', page: 1, perPage: 50 });
  const elapsed = performance.now() - started;
  assert.equal(page.total, 9000, 'the private tenth is hidden from anonymous viewers');
  assert.equal(page.items.length, 50);
  const visible = Array.from({ length: 10_000 }, (_, i) => i).filter((i) => i % 10 !== 0).map((i) => `library/image-${String(i).padStart(5, '0')}`);
  assert.deepEqual(page.items.map((r) => r.name), visible.slice(36 * 50, 37 * 50), 'page 37 of the sorted list');
  assert.deepEqual(searched.items.map((r) => r.name), ['corp/app-990', 'corp/app-9900', 'corp/app-9910', 'corp/app-9920', 'corp/app-9930', 'corp/app-9940', 'corp/app-9950', 'corp/app-9960', 'corp/app-9970', 'corp/app-9980', 'corp/app-9990']);
  // One tag listing per repository shown (its tag count): 50 + 11, nothing proportional to the store.
  assert.ok(counting.reads() <= 61, `metadata reads for two views: ${counting.reads()}`);
  console.error(`ui: repository list with 10,000 repositories: two views (page 37, and a search) in ${elapsed.toFixed(1)} ms`);
  assert.ok(elapsed < 1000, `two views took ${elapsed.toFixed(0)} ms`);
});

test('query service: an index shows its platforms, and its size is marked partial when one platform is not cached', async (t) => {
  const { storage, manifests, catalog, query } = await fixture();
  t.after(() => catalog.close());
  const amd64 = await storeImage(storage, manifests, [1000]);
  const arm64 = await storeImage(storage, manifests, [2000], { os: 'linux', architecture: 'arm64' });
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [
        { mediaType: MediaType.ociManifest, digest: amd64.digest, size: 400, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: MediaType.ociManifest, digest: arm64.digest, size: 400, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    }),
  );
  const indexDigest = sha256Digest(index);
  await manifests.put(parseDigest(indexDigest), index, MediaType.ociIndex);
  await storage.metadata.put(metadataKeys.mirrorTag('hub', 'library/multi', '1'), { digest: indexDigest, mediaType: MediaType.ociIndex, checkedAt: 0 });
  catalog.note('library/multi', { kind: 'mirrored', upstream: 'hub', repository: 'library/multi' });

  const tag = async () => (await query.repository({ user: undefined }, 'library/multi', { page: 1, perPage: 50 }))?.tags.items[0];
  assert.deepEqual(await tag(), {
    tag: '1',
    api: 'v2',
    digest: indexDigest,
    pulls: 0,
    lastPulledAt: undefined,
    mediaType: MediaType.ociIndex,
    kind: 'index',
    platforms: ['linux/amd64', 'linux/arm64/v8'],
    size: amd64.size + arm64.size,
    sizeComplete: true,
    cached: true,
  });
  const child = await query.image({ user: undefined }, 'library/multi', arm64.digest);
  assert.equal(child?.size, arm64.size, 'a platform image of a tagged index belongs to the repository');

  await storage.metadata.delete(metadataKeys.manifest(parseDigest(arm64.digest))); // only one platform pulled
  manifests.forget(arm64.digest);
  assert.deepEqual([(await tag())?.size, (await tag())?.sizeComplete], [amd64.size, false]);
});

test('repository catalog: per-tag figures are bounded to the most recently pulled tags; the repository total counts every pull', async () => {
  const storage = await memoryStorage();
  let now = 1;
  const catalog = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000, now: () => now });
  const origin = { kind: 'mirrored' as const, upstream: 'hub', repository: 'ci/builds' };
  for (let build = 0; build < MAX_TAGS_PER_REPOSITORY + 50; build += 1) {
    now += 1;
    catalog.recordPull('ci/builds', origin, `build-${build}`);
    if (build % 100 === 0) await catalog.flush(); // across several writes, as in a running server
  }
  await catalog.flush();
  const entry = await catalog.get('ci/builds');
  assert.equal(entry?.pulls, MAX_TAGS_PER_REPOSITORY + 50);
  assert.equal(Object.keys(entry?.tags ?? {}).length, MAX_TAGS_PER_REPOSITORY);
  assert.ok(entry?.tags[`build-${MAX_TAGS_PER_REPOSITORY + 49}`], 'the latest tag is kept');
  assert.equal(entry?.tags['build-0'], undefined, 'the oldest tag gave way');
  await catalog.close();
});

test('repository catalog: pulls tallied elsewhere arrive through collect on every flush, with their count and time', async () => {
  const storage = await memoryStorage();
  const origin = { kind: 'mirrored' as const, upstream: 'hub', repository: 'library/nginx' };
  const tallied: Array<{ pulls: number; at: number }> = [];
  const catalog: RepositoryCatalog = new RepositoryCatalog(storage.metadata, {
    log: quietLog,
    flushIntervalMs: 60_000,
    collect: () => {
      for (const { pulls, at } of tallied.splice(0)) catalog.recordPull('library/nginx', origin, '1.27', pulls, at);
    },
  });
  tallied.push({ pulls: 5, at: 2000 });
  const first = catalog.flush();
  tallied.push({ pulls: 3, at: 1000 }); // older than the pulls written first
  await Promise.all([first, catalog.flush()]);
  const entry = await catalog.get('library/nginx');
  assert.equal(entry?.pulls, 8, 'both tallies written');
  assert.deepEqual(entry?.tags['1.27'], { pulls: 8, lastPulledAt: 2000 }, 'the latest pull time wins, whatever the order they arrive in');
  assert.equal(entry?.lastPulledAt, 2000);
  tallied.push({ pulls: 1, at: 3000 });
  assert.equal((await catalog.entries()).find(([name]) => name === 'library/nginx')?.[1].pulls, 9, 'a read collects first');
  await catalog.close();
});

/** A v1 image record as a v1 push (layer stored) or the v1 pull-through (layer size stated) writes it. */
function v1Record(id: string, ancestry: string[], size: number, options: { stored?: boolean; json?: Record<string, unknown> } = {}) {
  const json = Buffer.from(JSON.stringify({ id, ...(ancestry[1] ? { parent: ancestry[1] } : {}), ...options.json }));
  return {
    id,
    ...(ancestry[1] ? { parent: ancestry[1] } : {}),
    json: json.toString('base64'),
    ancestry,
    complete: true,
    ...(options.stored === false ? { layerSize: size } : { layer: { digest: `sha256:${id}`, size } }),
  };
}

const v1Id = (n: number) => String(n).repeat(64).slice(0, 64);

test('query service: v1 tags (a v1 push, a pull through a v1 index) are listed beside v2 ones, with image id, size and last pulled', async (t) => {
  const { storage, manifests, catalog, query } = await fixture();
  t.after(() => catalog.close());
  // corp/legacy: pushed with Docker 1.10 over /v1 (records under v1/images and v1/repositories).
  const [base, top] = [v1Id(1), v1Id(2)];
  await storage.metadata.put(`${metadataKeys.v1PrivateImages}/${base}`, v1Record(base, [base], 700));
  await storage.metadata.put(`${metadataKeys.v1PrivateImages}/${top}`, v1Record(top, [top, base], 50, { json: { os: 'linux', architecture: 'amd64' } }));
  await storage.metadata.put(metadataKeys.v1RepositoryTag('corp/legacy', 'v1'), { id: top, updated: new Date().toISOString() });
  await storage.metadata.put(metadataKeys.v1RepositoryTag('corp/legacy', 'old'), { id: base, updated: new Date().toISOString() });
  // The same repository also has a v2 tag.
  const modern = await storeImage(storage, manifests, [400]);
  await storage.metadata.put(metadataKeys.localTag('corp/legacy', 'v2'), { digest: modern.digest });
  catalog.note('corp/legacy', { kind: 'private', repository: 'corp/legacy', v1: true });
  catalog.recordPull('corp/legacy', { kind: 'private', repository: 'corp/legacy', v1: true }, 'v1');

  // library/busybox through a v1 index upstream "index": the tag list and a single tag, kept by the pull-through.
  const [mirroredBase, mirroredTop, single] = [v1Id(3), v1Id(4), v1Id(5)];
  const upstreamImages = `${metadataKeys.v1MirroredImages}/index`;
  await storage.metadata.put(`${upstreamImages}/${mirroredBase}`, v1Record(mirroredBase, [mirroredBase], 2000, { stored: false }));
  await storage.metadata.put(`${upstreamImages}/${mirroredTop}`, v1Record(mirroredTop, [mirroredTop, mirroredBase], 30));
  await storage.metadata.put(metadataKeys.v1MirrorList('index', 'library/busybox', '_tags'), { value: { latest: mirroredTop }, fetchedAt: Date.now() });
  await storage.metadata.put(metadataKeys.v1MirrorList('index', 'library/busybox', '_tag', '1.0'), { value: single, fetchedAt: Date.now() });
  catalog.recordPull('library/busybox', { kind: 'mirrored', upstream: 'index', repository: 'library/busybox', v1: true }, 'latest');

  const list = await query.repositories({ user: 'alice' }, { page: 1, perPage: 50 });
  assert.deepEqual(list.items.map((r) => [r.name, r.tagCount]), [
    ['corp/legacy', 3],
    ['library/busybox', 2],
  ]);

  const legacy = await query.repository({ user: 'alice' }, 'corp/legacy', { page: 1, perPage: 50 });
  assert.deepEqual(
    legacy?.tags.items.map((tag) => [tag.tag, tag.api, tag.imageId, tag.size, tag.sizeComplete, tag.pulls, tag.platforms]),
    [
      ['v2', 'v2', undefined, modern.size, true, 0, ['linux/amd64']],
      ['old', 'v1', base, 700, true, 0, []],
      ['v1', 'v1', top, 750, true, 1, ['linux/amd64']],
    ],
  );
  assert.ok((legacy?.tags.items.find((tag) => tag.tag === 'v1')?.lastPulledAt ?? 0) > 0, 'last pulled');
  assert.equal(legacy?.tags.total, 3);
  const secondPage = await query.repository({ user: 'alice' }, 'corp/legacy', { page: 2, perPage: 2 });
  assert.deepEqual(secondPage?.tags.items.map((tag) => tag.tag), ['v1'], 'v1 tags are paginated with the v2 ones');

  const busybox = await query.repository({ user: undefined }, 'library/busybox', { page: 1, perPage: 50 });
  assert.deepEqual(
    busybox?.tags.items.map((tag) => [tag.tag, tag.api, tag.imageId, tag.size, tag.cached, tag.pulls]),
    [
      ['1.0', 'v1', single, undefined, false, 0],
      ['latest', 'v1', mirroredTop, 2030, true, 1],
    ],
    'sizes the upstream stated count for layers not fetched yet; a tag whose image was never fetched is listed as not cached',
  );
  assert.equal(await query.repository({ user: undefined }, 'corp/legacy', { page: 1, perPage: 50 }), undefined, 'still private');
});

test('repository catalog: v1 activity marks a repository as having v1 tags, also when it was first seen through v2, and reconcile marks stored ones', async () => {
  const storage = await memoryStorage();
  const catalog = new RepositoryCatalog(storage.metadata, { log: quietLog, flushIntervalMs: 60_000, snapshotTtlMs: 0 });
  catalog.note('corp/a', { kind: 'private', repository: 'corp/a' });
  await catalog.flush();
  catalog.note('corp/a', { kind: 'private', repository: 'corp/a', v1: true });
  await catalog.flush();
  assert.equal((await catalog.get('corp/a'))?.v1, true);

  catalog.note('corp/b', { kind: 'private', repository: 'corp/b' });
  await catalog.flush();
  async function* found() {
    await Promise.resolve();
    yield { name: 'corp/b', origin: { kind: 'private' as const, repository: 'corp/b' } };
    yield { name: 'corp/b', origin: { kind: 'private' as const, repository: 'corp/b', v1: true as const } };
    yield { name: 'corp/c', origin: { kind: 'private' as const, repository: 'corp/c', v1: true as const } };
  }
  assert.equal(await catalog.reconcile(found()), 1, 'corp/c is new; corp/b is only marked');
  assert.equal((await catalog.get('corp/b'))?.v1, true);
  assert.equal((await catalog.get('corp/c'))?.v1, true);
  await catalog.close();
});
