// Cache lifecycle with real parts: size-bounded LRU eviction, restart, gc, offline mode,
// warm, and export/import bundles between two instances.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import path from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.js';
import { onCleanup } from '../support/cleanup.js';
import { sha256Digest } from '../harness/digests.js';
import { makeOciIndexLayout, pushDockerImage, type GeneratedImage, type GeneratedIndex } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { fetchManifest } from '../harness/registry-client.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { copyToDir, pushOciLayout } from '../harness/skopeo.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { runCli } from '../support/cli.js';
import { metricValue } from '../support/prometheus-text.js';
import { pollUntil } from '../harness/wait.js';
import { writeHtpasswd } from '../support/users.js';

const MiB = 1024 * 1024;
let registry: RegistryHandle;
let proxy: CountingProxy;
let work: TempDir;
const images: GeneratedImage[] = [];
let multiarch: GeneratedIndex;

before(async () => {
  work = await makeTempDir('lifecycle');
  registry = await startRegistry();
  proxy = await startCountingProxy(registry.url);
  for (const name of ['one', 'two', 'three', 'four']) images.push(await pushDockerImage(registry.url, `apps/${name}`, 'v1', [3 * MiB]));
  const layout = path.join(work.path, 'index');
  multiarch = await makeOciIndexLayout(layout, 'multi');
  await pushOciLayout(layout, 'multi', `${new URL(registry.url).host}/apps/multi:multi`, { all: true });
});

after(async () => {
  await proxy?.close();
  await registry?.dispose();
  await work?.remove();
});

const upstreamConfig = (extra: Record<string, unknown> = {}) => ({
  upstreams: [{ name: 'local', url: proxy.url, default: true, hosts: ['registry.test'], tagTtl: '1h' }],
  ...extra,
});

/** Copies a bundle, repeating its first blob entry right after itself. */
async function withBlobEntryTwice(source: string, destination: string): Promise<void> {
  const extract = tar.extract();
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(destination));
  const reading = pipeline(createReadStream(source), extract);
  let repeated = false;
  for await (const entry of extract) {
    const body = await buffer(entry);
    pack.entry({ ...entry.header }, body);
    if (!repeated && entry.header.name.includes('blobs/')) {
      pack.entry({ ...entry.header }, body);
      repeated = true;
    }
  }
  await reading;
  pack.finalize();
  await writing;
  assert.ok(repeated, 'the bundle has a blob entry');
}

async function blobFiles(dataDir: string): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  const root = path.join(dataDir, 'blobs', 'sha256');
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const hex of await readdir(path.join(root, prefix))) files.set(`sha256:${hex}`, (await stat(path.join(root, prefix, hex))).size);
  }
  return files;
}

async function pull(url: string, repo: string, tag = 'v1'): Promise<string> {
  const out = path.join(work.path, `pull-${Math.random().toString(36).slice(2)}`);
  await copyToDir(`${new URL(url).host}/${repo}:${tag}`, out, { all: true });
  return sha256Digest(await readFile(path.join(out, 'manifest.json')));
}

async function writeConfig(name: string, config: Record<string, unknown>): Promise<string> {
  const file = path.join(work.path, `${name}.yaml`);
  await writeFile(file, stringify(config));
  return file;
}

test('a size bound evicts the least recently used images first, keeps private images, and an evicted image pulls again', async (t) => {
  const data = await makeTempDir('lru-data');
  onCleanup(t, () => data.remove());
  const bound = 8 * MiB; // room for two of the 3 MiB images, not three
  const htpasswd = path.join(work.path, 'lru-htpasswd');
  await writeHtpasswd(htpasswd, { ops: 'secret-password' });
  const mirror = await startLongshore(
    upstreamConfig({ storage: { path: data.path, cache: { maxBytes: bound } }, private: { namespaces: ['corp'] }, auth: { htpasswd } }),
    { dataDir: data.path },
  );
  onCleanup(t, () => mirror.dispose());
  const [one, two, three] = images as [GeneratedImage, GeneratedImage, GeneratedImage];
  // A private 3 MiB image, pushed before the mirrored pulls: it must not count or be evicted.
  const privateImage = await pushDockerImage(mirror.url, 'corp/tool', 'v1', [3 * MiB], { headers: { authorization: `Basic ${Buffer.from('ops:secret-password').toString('base64')}` } });

  assert.equal(await pull(mirror.url, 'apps/one'), one.manifestDigest);
  assert.equal(await pull(mirror.url, 'apps/two'), two.manifestDigest);
  assert.equal(await pull(mirror.url, 'apps/one'), one.manifestDigest); // one is now more recent than two
  assert.equal(await pull(mirror.url, 'apps/three'), three.manifestDigest);

  const files = await blobFiles(data.path);
  const privateDigests = new Set([privateImage.manifestDigest, privateImage.configDigest, ...privateImage.layers.map((l) => l.digest)]);
  for (const digest of privateDigests) assert.ok(files.has(digest), `private ${digest} stays`);
  const used = [...files.entries()].filter(([digest]) => !privateDigests.has(digest)).reduce((a, [, size]) => a + size, 0);
  assert.ok(used <= bound, `mirrored disk use ${used} stays within the bound ${bound}`);
  assert.ok(!files.has(two.layers[0]!.digest), 'the least recently used image went first');
  assert.ok(files.has(one.layers[0]!.digest), 'the recently re-pulled image stayed');
  assert.ok(files.has(three.layers[0]!.digest));

  proxy.reset();
  assert.equal(await pull(mirror.url, 'apps/two'), two.manifestDigest, 'the evicted image pulls again');
  assert.equal(proxy.count('GET', new RegExp(two.layers[0]!.digest)), 1, 'from the upstream');
});

test('restart keeps the LRU order (access times live in the blob files)', async (t) => {
  const data = await makeTempDir('lru-restart');
  onCleanup(t, () => data.remove());
  const bound = 8 * MiB;
  const config = upstreamConfig({ storage: { path: data.path, cache: { maxBytes: bound } } });
  const mirror = await startLongshore(config, { dataDir: data.path });
  onCleanup(t, () => mirror.dispose());
  const [one, two, three] = images as [GeneratedImage, GeneratedImage, GeneratedImage];
  await pull(mirror.url, 'apps/one');
  await pull(mirror.url, 'apps/two');
  // Access times are persisted at one-second granularity.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await pull(mirror.url, 'apps/one');
  await mirror.stop();
  await mirror.start();
  await pull(mirror.url, 'apps/three');
  const files = await blobFiles(data.path);
  assert.ok(!files.has(two.layers[0]!.digest), 'after the restart, two was still the least recently used');
  assert.ok(files.has(one.layers[0]!.digest));
  assert.ok(files.has(three.layers[0]!.digest));
});

test('gc: dry run reports, real run deletes unreferenced blobs only, safe beside a running server', async (t) => {
  const data = await makeTempDir('gc-data');
  onCleanup(t, () => data.remove());
  const config = upstreamConfig({ storage: { path: data.path } });
  const configFile = await writeConfig('gc', config);
  const mirror = await startLongshore(config, { dataDir: data.path });
  onCleanup(t, () => mirror.dispose());
  const [one, , , four] = images as [GeneratedImage, GeneratedImage, GeneratedImage, GeneratedImage];
  await pull(mirror.url, 'apps/one');
  // A blob fetched by digest alone: no cached manifest references it.
  const orphan = four.layers[0]!;
  // Read it all (undici's dump() stops reading after 128 KiB).
  for await (const _ of (await request(`${mirror.url}/v2/apps/four/blobs/${orphan.digest}`)).body) void _;
  assert.ok((await blobFiles(data.path)).has(orphan.digest));

  const young = await runCli(['gc', '--config', configFile, '--dry-run']);
  assert.equal(young.code, 0, young.stderr);
  assert.match(young.stdout, /would remove 0 \(/, 'within the default 1h grace nothing goes');

  const dry = await runCli(['gc', '--config', configFile, '--dry-run', '--grace', '0s']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /gc \(dry run\): .* would remove 1 \(/);
  assert.ok(dry.stdout.includes(orphan.digest));
  assert.ok((await blobFiles(data.path)).has(orphan.digest), 'a dry run deletes nothing');

  const real = await runCli(['gc', '--config', configFile, '--grace', '0s']);
  assert.equal(real.code, 0, real.stderr);
  assert.match(real.stdout, /removed 1 \(3\.0 MiB\)|removed 1 \(/);
  const files = await blobFiles(data.path);
  assert.ok(!files.has(orphan.digest));
  for (const digest of [one.manifestDigest, one.configDigest, one.layers[0]!.digest]) assert.ok(files.has(digest), `referenced ${digest} kept`);

  // The running server serves on: the image is intact, the removed blob is fetched again.
  assert.equal(await pull(mirror.url, 'apps/one'), one.manifestDigest);
  const again = await request(`${mirror.url}/v2/apps/four/blobs/${orphan.digest}`);
  assert.equal(again.statusCode, 200);
  assert.equal(sha256Digest(Buffer.from(await again.body.arrayBuffer())), orphan.digest);
  assert.ok((await blobFiles(data.path)).has(orphan.digest), 'and cached again');
});

test('gc and import beside a running server: its /metrics cache gauges and the UI overview follow the data directory, without a restart', async (t) => {
  const data = await makeTempDir('told-data');
  onCleanup(t, () => data.remove());
  const config = upstreamConfig({ storage: { path: data.path } });
  const configFile = await writeConfig('told', config);
  const mirror = await startLongshore(config, { dataDir: data.path });
  onCleanup(t, () => mirror.dispose());
  const source = await startLongshore(upstreamConfig());
  onCleanup(t, () => source.dispose());
  const [one, two, three] = images as [GeneratedImage, GeneratedImage, GeneratedImage];

  /** The server's figures: the mirrored gauges and the web page's overview. */
  const figures = async () => {
    const metrics = await (await request(`${mirror.url}/metrics`)).body.text();
    const overview = (await (await request(`${mirror.url}/ui/api/overview`)).body.json()) as { cache: { mirroredBytes: number; mirroredObjects: number } };
    return {
      bytes: metricValue(metrics, 'longshore_cache_size_bytes', { class: 'mirrored' }),
      objects: metricValue(metrics, 'longshore_cache_objects', { class: 'mirrored' }),
      overview: { bytes: overview.cache.mirroredBytes, objects: overview.cache.mirroredObjects },
    };
  };
  /** What the data directory holds (every blob here is mirrored). */
  const onDisk = async () => {
    const files = await blobFiles(data.path);
    const bytes = [...files.values()].reduce((sum, size) => sum + size, 0);
    return { bytes, objects: files.size, overview: { bytes, objects: files.size } };
  };
  const followsDisk = async (what: string) => {
    // The server polls for the tools' notice every few seconds.
    await pollUntil(async () => JSON.stringify(await figures()) === JSON.stringify(await onDisk()), { timeoutMs: 30_000, intervalMs: 250, what }).catch(
      async (error: unknown) => assert.fail(`${(error as Error).message}: server ${JSON.stringify(await figures())}, data directory ${JSON.stringify(await onDisk())}`),
    );
  };

  await pull(mirror.url, 'apps/two');
  // A blob fetched by digest alone, which gc will collect.
  const orphan = three.layers[0]!;
  for await (const _ of (await request(`${mirror.url}/v2/apps/three/blobs/${orphan.digest}`)).body) void _;
  await followsDisk('figures of the pulls');
  const beforeImport = await figures();

  const bundle = path.join(work.path, 'told.tar');
  const exported = await runCli(['export', '--url', source.url, '-o', bundle, 'registry.test/apps/one:v1']);
  assert.equal(exported.code, 0, exported.stderr);
  const imported = await runCli(['import', '--config', configFile, bundle]);
  assert.equal(imported.code, 0, imported.stderr);
  await followsDisk('figures after import');
  assert.equal((await figures()).objects, beforeImport.objects + 3, 'the imported manifest, config and layer count');
  // The web page's repository list (and so ls --url) has the imported repository.
  const listed = async () => ((await (await request(`${mirror.url}/ui/api/repositories?q=apps/one`)).body.json()) as { total: number }).total;
  await pollUntil(async () => (await listed()) === 1, { timeoutMs: 10_000, what: 'the imported repository on the web page' });
  const ls = await runCli(['ls', '--url', mirror.url, '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(
    (JSON.parse(ls.stdout) as Array<{ kind: string; upstream: string; name: string; tags: Array<{ tag: string; digest: string }> }>).map((r) => [r.kind, r.upstream, r.name, r.tags.map((tag) => [tag.tag, tag.digest])]),
    [
      ['mirrored', 'local', 'apps/one', [['v1', one.manifestDigest]]],
      ['mirrored', 'local', 'apps/two', [['v1', two.manifestDigest]]],
    ],
    'the default upstream\'s repositories, named without its prefix',
  );

  const collected = await runCli(['gc', '--config', configFile, '--grace', '0s']);
  assert.equal(collected.code, 0, collected.stderr);
  assert.ok(!(await blobFiles(data.path)).has(orphan.digest));
  await followsDisk('figures after gc');
  assert.equal((await figures()).objects, beforeImport.objects + 3 - 1, 'the collected blob no longer counts');
  assert.ok(mirror.logs.some((r) => r.msg === 'cache index rescanned after gc changed the storage'));
  assert.equal(await pull(mirror.url, 'apps/two'), two.manifestDigest, 'and it serves on');
});

test('warm fills the cache; then offline mode serves it with no upstream request, and 404s the rest', async (t) => {
  const data = await makeTempDir('warm-data');
  onCleanup(t, () => data.remove());
  const mirror = await startLongshore(upstreamConfig({ storage: { path: data.path } }), { dataDir: data.path });
  onCleanup(t, () => mirror.dispose());
  const [one, two] = images as [GeneratedImage, GeneratedImage];

  const warmed = await runCli(['warm', '--url', mirror.url, 'registry.test/apps/one:v1', 'apps/multi:multi', '--all-platforms']);
  assert.equal(warmed.code, 0, warmed.stderr);
  assert.match(warmed.stdout, /registry\.test\/apps\/one:v1: done/);
  assert.match(warmed.stdout, /total: 2\/2 images/);
  const failed = await runCli(['warm', '--url', mirror.url, 'apps/missing:v1']);
  assert.equal(failed.code, 1, 'a failed image makes warm exit non-zero');
  assert.match(failed.stdout, /apps\/missing:v1: FAILED/);
  await mirror.stop();

  // Offline on the same data: the upstream is up, and must never be asked.
  proxy.reset();
  const offline = await startLongshore(upstreamConfig({ storage: { path: data.path }, offline: true }), { dataDir: data.path });
  onCleanup(t, () => offline.dispose());
  assert.equal(await pull(offline.url, 'apps/one'), one.manifestDigest);
  assert.equal(await pull(offline.url, 'apps/multi', 'multi'), multiarch.indexDigest);
  const notCached = await fetchManifest(offline.url, 'apps/two', 'v1');
  assert.equal(notCached.status, 404);
  assert.match(notCached.bytes.toString(), /not cached, and offline mode is on/);
  const blob = await request(`${offline.url}/v2/apps/two/blobs/${two.layers[0]!.digest}`);
  assert.equal(blob.statusCode, 404);
  await blob.body.dump();
  assert.equal(proxy.requests.length, 0, 'offline mode made no upstream request');
});

test('export on one instance, import on an offline one with no upstream, pull by the original names', async (t) => {
  const source = await startLongshore(upstreamConfig());
  onCleanup(t, () => source.dispose());
  const [one, two] = images as [GeneratedImage, GeneratedImage];
  const bundle = path.join(work.path, 'bundle.tar');
  const exported = await runCli(['export', '--url', source.url, '-o', bundle, 'registry.test/apps/one:v1', 'registry.test/apps/multi:multi']);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(exported.stdout, /wrote .*bundle\.tar: 2 images/);

  // The offline site: no upstream is reachable (the URL points nowhere), only names to route.
  const siteData = await makeTempDir('site-data');
  onCleanup(t, () => siteData.remove());
  const siteConfig = { upstreams: [{ name: 'origin', url: 'http://127.0.0.1:9', hosts: ['registry.test'], default: true }], offline: true, storage: { path: siteData.path } };
  const siteConfigFile = await writeConfig('site', siteConfig);

  // A corrupted bundle (one flipped byte inside the big layer) is rejected and imports nothing.
  const corrupt = path.join(work.path, 'corrupt.tar');
  const bytes = await readFile(bundle);
  const layerHex = one.layers[0]!.digest.slice('sha256:'.length);
  const at = bytes.indexOf(Buffer.from(`blobs/sha256/${layerHex}`)) + 512 + 1000;
  bytes[at] = bytes[at]! ^ 0xff;
  await writeFile(corrupt, bytes);
  const rejected = await runCli(['import', '--config', siteConfigFile, corrupt]);
  assert.equal(rejected.code, 1);
  assert.match(rejected.stderr, /digest mismatch|nothing imported/);
  const truncated = path.join(work.path, 'truncated.tar');
  await writeFile(truncated, (await readFile(bundle)).subarray(0, Math.floor(bytes.length / 2)));
  const rejectedTruncated = await runCli(['import', '--config', siteConfigFile, truncated]);
  assert.equal(rejectedTruncated.code, 1);
  assert.deepEqual([...(await blobFiles(siteData.path)).keys()], [], 'nothing was half-imported');

  // The same blob twice in a bundle (tar allows it): imported once, no temp file left over.
  const twiceData = await makeTempDir('twice-data');
  onCleanup(t, () => twiceData.remove());
  const twice = path.join(work.path, 'twice.tar');
  await withBlobEntryTwice(bundle, twice);
  const twiceConfigFile = await writeConfig('twice', { ...siteConfig, storage: { path: twiceData.path } });
  const importedTwice = await runCli(['import', '--config', twiceConfigFile, twice]);
  assert.equal(importedTwice.code, 0, importedTwice.stderr);
  assert.deepEqual(await readdir(path.join(twiceData.path, 'tmp')), []);

  const imported = await runCli(['import', '--config', siteConfigFile, bundle]);
  assert.equal(imported.code, 0, imported.stderr);
  assert.deepEqual([...(await blobFiles(siteData.path)).keys()].sort(), [...(await blobFiles(twiceData.path)).keys()].sort(), 'the duplicate changed nothing');
  assert.match(imported.stdout, /tags: registry\.test\/apps\/one:v1, registry\.test\/apps\/multi:multi/);

  const site = await startLongshore(siteConfig, { dataDir: siteData.path });
  onCleanup(t, () => site.dispose());
  assert.equal(await pull(site.url, 'registry.test/apps/one'), one.manifestDigest);
  assert.equal(await pull(site.url, 'apps/multi', 'multi'), multiarch.indexDigest);
  const neverExported = await fetchManifest(site.url, 'apps/two', 'v1');
  assert.equal(neverExported.status, 404);
  assert.notEqual(two.manifestDigest, one.manifestDigest);
});
