// Cache lifecycle on the S3 driver (Swift s3api): the size bound evicts from the bucket, an
// export from one instance imports into another bucket (a verified writer closed before its
// commit, then committed: the import path), and that instance serves it offline after a
// restart on an empty scratch directory.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { sha256Digest } from '../harness/digests.js';
import { fetchesSettled } from '../harness/fetches.js';
import { pushDockerImage, type GeneratedImage } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { copyToDir } from '../harness/skopeo.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { metricValue } from '../support/prometheus-text.js';
import { pollUntil } from '../harness/wait.js';
import { request } from 'undici';
import { runCli } from '../support/cli.js';

const MiB = 1024 * 1024;
let swift: SwiftHandle;
let s3: S3Client;
let registry: RegistryHandle;
let work: TempDir;
const images: GeneratedImage[] = [];

before(async () => {
  work = await makeTempDir('s3-lifecycle');
  swift = await startSwift();
  s3 = swift.client();
  registry = await startRegistry();
  // 9 MiB layers: more than one 8 MiB part, so eviction and import cover multipart objects.
  for (const name of ['one', 'two', 'three']) images.push(await pushDockerImage(registry.url, `apps/${name}`, 'v1', [9 * MiB]));
});

after(async () => {
  s3?.destroy();
  await registry?.dispose();
  await swift?.dispose();
  await work?.remove();
});

/** Blob objects in the bucket: digest -> size. */
async function bucketBlobs(bucket: string): Promise<Map<string, number>> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'blobs/' }));
  return new Map((listed.Contents ?? []).map((entry) => [`sha256:${(entry.Key ?? '').split('/').pop() ?? ''}`, entry.Size ?? 0]));
}

async function pull(url: string, repo: string): Promise<string> {
  const out = path.join(work.path, `pull-${Math.random().toString(36).slice(2)}`);
  await copyToDir(`${new URL(url).host}/${repo}:v1`, out);
  // A pull ends once its blobs are verified; their uploads (and the eviction they trigger) after.
  await fetchesSettled(url);
  return sha256Digest(await readFile(path.join(out, 'manifest.json')));
}

test('s3: the size bound evicts the least recently used blobs from the bucket', async (t) => {
  const storage = await s3StorageConfig(swift);
  const bucket = (storage.s3 as { bucket: string }).bucket;
  const bound = 20 * MiB; // room for two 9 MiB images, not three
  const mirror = await startLongshore({
    storage: { ...storage, cache: { maxBytes: bound } },
    upstreams: [{ name: 'local', url: registry.url, default: true, tagTtl: '1h' }],
  });
  onCleanup(t, () => mirror.dispose());
  const [one, two, three] = images as [GeneratedImage, GeneratedImage, GeneratedImage];
  assert.equal(await pull(mirror.url, 'apps/one'), one.manifestDigest);
  assert.equal(await pull(mirror.url, 'apps/two'), two.manifestDigest);
  assert.equal(await pull(mirror.url, 'apps/one'), one.manifestDigest); // one is now more recent than two
  assert.equal(await pull(mirror.url, 'apps/three'), three.manifestDigest);

  // Eviction runs after the commit that crossed the bound, and the commit after the client got
  // its verified bytes: wait (bounded) for the bucket to come back under the bound.
  let blobs = await bucketBlobs(bucket);
  await pollUntil(
    async () => {
      blobs = await bucketBlobs(bucket);
      return [...blobs.values()].reduce((sum, size) => sum + size, 0) <= bound;
    },
    { what: `bucket use within the bound ${bound}`, timeoutMs: 15_000 },
  );
  assert.ok(!blobs.has(two.layers[0]!.digest), 'the least recently used layer went first');
  assert.ok(blobs.has(one.layers[0]!.digest) && blobs.has(three.layers[0]!.digest));
  assert.equal(blobs.get(three.layers[0]!.digest), three.layers[0]!.size);
});

test('s3: export from one instance, import into another bucket, served offline after a restart on an empty scratch directory', async (t) => {
  const source = await startLongshore({ upstreams: [{ name: 'local', url: registry.url, default: true, hosts: ['registry.test'] }] });
  onCleanup(t, () => source.dispose());
  const [one] = images as [GeneratedImage];
  const bundle = path.join(work.path, 'bundle.tar');
  const exported = await runCli(['export', '--url', source.url, '-o', bundle, 'registry.test/apps/one:v1']);
  assert.equal(exported.code, 0, exported.stderr);

  const siteStorage = await s3StorageConfig(swift);
  const siteBucket = (siteStorage.s3 as { bucket: string }).bucket;
  const scratch = await makeTempDir('s3-site-scratch');
  onCleanup(t, () => scratch.remove());
  const siteConfig = {
    upstreams: [{ name: 'origin', url: 'http://127.0.0.1:9', hosts: ['registry.test'], default: true }],
    offline: true,
    storage: { ...siteStorage, path: scratch.path },
  };
  const siteConfigFile = path.join(work.path, 'site.yaml');
  await writeFile(siteConfigFile, stringify(siteConfig));
  const imported = await runCli(['import', '--config', siteConfigFile, bundle]);
  assert.equal(imported.code, 0, imported.stderr);
  const blobs = await bucketBlobs(siteBucket);
  for (const digest of [one.manifestDigest, one.configDigest, one.layers[0]!.digest]) assert.ok(blobs.has(digest), `${digest} imported into the bucket`);
  const leftovers = await s3.send(new ListMultipartUploadsCommand({ Bucket: siteBucket }));
  assert.deepEqual(leftovers.Uploads ?? [], [], 'no upload left incomplete');

  await scratch.remove(); // the bucket is the whole state
  const site = await startLongshore(siteConfig, { dataDir: scratch.path });
  onCleanup(t, () => site.dispose());
  assert.equal(await pull(site.url, 'registry.test/apps/one'), one.manifestDigest);
});

test('s3: import into the bucket of a running server, from another scratch directory (as from another host): the server\'s cache figures follow without a restart', async (t) => {
  const source = await startLongshore({ upstreams: [{ name: 'local', url: registry.url, default: true, hosts: ['registry.test'] }] });
  onCleanup(t, () => source.dispose());
  const bundle = path.join(work.path, 'beside.tar');
  const exported = await runCli(['export', '--url', source.url, '-o', bundle, 'registry.test/apps/two:v1']);
  assert.equal(exported.code, 0, exported.stderr);

  const storage = await s3StorageConfig(swift);
  const bucket = (storage.s3 as { bucket: string }).bucket;
  const upstreams = [{ name: 'local', url: registry.url, default: true, hosts: ['registry.test'] }];
  const mirror = await startLongshore({ storage, upstreams });
  onCleanup(t, () => mirror.dispose());
  const mirrored = async () => metricValue(await (await request(`${mirror.url}/metrics`)).body.text(), 'longshore_cache_size_bytes', { class: 'mirrored' });
  assert.equal(await mirrored(), 0);

  // No lock file is shared with the server: only the bucket is.
  const toolScratch = await makeTempDir('s3-tool-scratch');
  onCleanup(t, () => toolScratch.remove());
  const toolConfig = path.join(work.path, 'beside.yaml');
  await writeFile(toolConfig, stringify({ upstreams, storage: { ...storage, path: toolScratch.path } }));
  const imported = await runCli(['import', '--config', toolConfig, bundle]);
  assert.equal(imported.code, 0, imported.stderr);
  // A scratch file over 1 MiB would be kept for reuse by a server; a tool leaves none behind.
  assert.deepEqual(await readdir(path.join(toolScratch.path, 'tmp')), [], 'the import left nothing in its scratch directory');
  const inBucket = [...(await bucketBlobs(bucket)).values()].reduce((sum, size) => sum + size, 0);
  assert.ok(inBucket > 9 * MiB);
  await pollUntil(async () => (await mirrored()) === inBucket, { timeoutMs: 30_000, intervalMs: 250, what: 'the server counting the imported blobs' });
  assert.ok(mirror.logs.some((r) => r.msg === 'cache index rescanned after import changed the storage'));
});
