// End to end with real parts: the reference Go registry (Debian's docker-registry) as the
// upstream, behind a counting proxy so we see every request it gets; Longshore as a child
// process; skopeo as the client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.js';
import { sha256Digest } from '../harness/digests.js';
import { makeOciIndexLayout, makeOciLayout, pushDockerImage, pushDockerManifestList, type GeneratedImage, type GeneratedIndex } from '../harness/images.js';
import { startLongshore, type LongshoreHandle } from '../harness/longshore.js';
import { fetchManifest, MEDIA_TYPES } from '../harness/registry-client.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { copyToDir, pushOciLayout } from '../harness/skopeo.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';

const BIG_LAYER_BYTES = 50 * 1024 * 1024;

let registry: RegistryHandle;
let proxy: CountingProxy;
let mirror: LongshoreHandle;
let work: TempDir;
let small: GeneratedImage;
let multi: GeneratedImage;
let big: GeneratedImage;
let ociIndex: GeneratedIndex;
let dockerList: GeneratedIndex;
let dockerImage: GeneratedImage;

const hostOf = (url: string) => new URL(url).host;

before(async () => {
  work = await makeTempDir('pull-through');
  registry = await startRegistry();
  proxy = await startCountingProxy(registry.url);
  const layout = path.join(work.path, 'layout');
  const images = await makeOciLayout(layout, [
    { tag: 'small', layerSizes: [64 * 1024] },
    { tag: 'multi', layerSizes: [10_000, 200_000, 1_000_000, 3_000_000] },
    { tag: 'big', layerSizes: [BIG_LAYER_BYTES] },
  ]);
  [small, multi, big] = images as [GeneratedImage, GeneratedImage, GeneratedImage];
  const upstreamHost = hostOf(registry.url);
  for (const tag of ['small', 'multi', 'big']) await pushOciLayout(layout, tag, `${upstreamHost}/apps/${tag}:${tag}`);
  const indexLayout = path.join(work.path, 'index');
  ociIndex = await makeOciIndexLayout(indexLayout, 'multiarch');
  await pushOciLayout(indexLayout, 'multiarch', `${upstreamHost}/apps/multiarch:multiarch`, { all: true });
  dockerList = await pushDockerManifestList(registry.url, 'apps/dockerlist', 'v1');
  dockerImage = await pushDockerImage(registry.url, 'apps/dockerimage', 'v1', [100_000, 20_000]);

  mirror = await startLongshore({
    upstreams: [{ name: 'local', url: proxy.url, default: true, hosts: ['registry.test'], tagTtl: '1h' }],
  });
});

after(async () => {
  await mirror?.dispose();
  await proxy?.close();
  await registry?.dispose();
  await work?.remove();
});

function blobGets(): number {
  return proxy.count('GET', /\/blobs\/sha256:/);
}

test('8 concurrent cold GETs of a 50 MiB blob: one upstream GET, every client gets the right bytes, followers stream before it ends', async () => {
  const layer = big.layers[0]!;
  proxy.reset();
  // Slow the upstream so the download is still running when the followers' first bytes arrive.
  proxy.setThrottle(25 * 1024 * 1024);
  const firstByteWhileUpstreamBusy: boolean[] = [];
  const results = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const response = await request(`${mirror.url}/v2/apps/big/blobs/${layer.digest}`);
      assert.equal(response.statusCode, 200, `client ${i}`);
      assert.equal(response.headers['content-length'], String(layer.size));
      assert.equal(response.headers['docker-content-digest'], layer.digest);
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of response.body) {
        if (bytes === 0) firstByteWhileUpstreamBusy[i] = proxy.requests.some((r) => r.path.includes(layer.digest) && !r.finished);
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).byteLength;
      }
      return { digest: `sha256:${hash.digest('hex')}`, bytes };
    }),
  );
  proxy.setThrottle(undefined);
  for (const result of results) assert.deepEqual(result, { digest: layer.digest, bytes: layer.size });
  assert.equal(proxy.count('GET', new RegExp(`/blobs/${layer.digest}`)), 1, 'exactly one upstream GET');
  assert.deepEqual(firstByteWhileUpstreamBusy, Array(8).fill(true), 'no client waited for the whole download');
  const accessLog = () => mirror.logs.filter((l) => l.msg === 'request' && String(l.path).includes(layer.digest));
  // The child's log lines arrive through a pipe, a moment after the responses end.
  await pollUntil(() => Promise.resolve(accessLog().length >= 8), { timeoutMs: 5000, what: '8 access-log lines' });
  assert.deepEqual(accessLog().map((l) => l.cache).sort(), ['coalesced', 'coalesced', 'coalesced', 'coalesced', 'coalesced', 'coalesced', 'coalesced', 'miss']);
});

test('skopeo copy --all through the mirror: manifests byte-for-byte as upstream, then a second pull makes zero upstream blob GETs', async () => {
  const images: Array<{ repo: string; tag: string; digest: string; all: boolean }> = [
    { repo: 'apps/small', tag: 'small', digest: small.manifestDigest, all: false },
    { repo: 'apps/multi', tag: 'multi', digest: multi.manifestDigest, all: false },
    { repo: 'apps/big', tag: 'big', digest: big.manifestDigest, all: false },
    { repo: 'apps/multiarch', tag: 'multiarch', digest: ociIndex.indexDigest, all: true },
    { repo: 'apps/dockerlist', tag: 'v1', digest: dockerList.indexDigest, all: true },
    { repo: 'apps/dockerimage', tag: 'v1', digest: dockerImage.manifestDigest, all: false },
  ];
  for (const round of ['cold', 'warm'] as const) {
    proxy.reset();
    for (const image of images) {
      const out = path.join(work.path, `${round}-${image.repo.replace('/', '_')}`);
      await copyToDir(`${hostOf(mirror.url)}/${image.repo}:${image.tag}`, out, { all: true });
      const manifest = await readFile(path.join(out, 'manifest.json'));
      assert.equal(sha256Digest(manifest), image.digest, `${round} ${image.repo}: skopeo received the upstream's exact manifest`);
      const upstream = await fetchManifest(registry.url, image.repo, image.tag);
      assert.equal(upstream.digest, image.digest);
      // Every blob skopeo wrote must hash to its file name.
      for (const file of await readdir(out)) {
        if (!/^[0-9a-f]{64}$/.test(file)) continue;
        assert.equal(sha256Digest(await readFile(path.join(out, file))), `sha256:${file}`);
      }
    }
    if (round === 'cold') assert.ok(blobGets() > 0, 'the cold round fetched blobs upstream');
    else {
      assert.equal(blobGets(), 0, 'the warm round made no upstream blob GET');
      assert.equal(proxy.count('GET', /\/manifests\//), 0, 'tags within their TTL made no upstream manifest request');
    }
  }
});

test('manifest responses honour the client Accept list and carry exact headers', async () => {
  // Docker sends several separate Accept lines; containerd one comma-joined line.
  const dockerAccept = [MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex];
  const separate = await request(`${mirror.url}/v2/apps/dockerlist/manifests/v1`, { headers: [...dockerAccept.flatMap((a) => ['accept', a])] });
  const body = Buffer.from(await separate.body.arrayBuffer());
  assert.equal(separate.headers['content-type'], MEDIA_TYPES.dockerManifestList);
  assert.equal(separate.headers['docker-content-digest'], dockerList.indexDigest);
  assert.equal(separate.headers['content-length'], String(body.byteLength));
  assert.ok(body.equals(dockerList.indexBytes));

  const head = await request(`${mirror.url}/v2/apps/multiarch/manifests/multiarch`, { method: 'HEAD', headers: { accept: dockerAccept.join(', ') } });
  await head.body.dump();
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-type'], MEDIA_TYPES.ociIndex);
  assert.equal(head.headers['docker-content-digest'], ociIndex.indexDigest);
  assert.equal(head.headers['content-length'], String(ociIndex.indexBytes.byteLength));

  // A client that takes only schema2 gets what the reference registry gives it for that list.
  const onlySchema2 = await fetchManifest(mirror.url, 'apps/dockerlist', 'v1', { accept: MEDIA_TYPES.dockerManifest });
  const upstreamAnswer = await fetchManifest(registry.url, 'apps/dockerlist', 'v1', { accept: MEDIA_TYPES.dockerManifest });
  assert.equal(upstreamAnswer.mediaType, MEDIA_TYPES.dockerManifest);
  assert.equal(onlySchema2.mediaType, MEDIA_TYPES.dockerManifest);
  assert.equal(onlySchema2.digest, upstreamAnswer.digest);
  assert.equal(onlySchema2.dockerContentDigest, upstreamAnswer.digest);

  // By digest: the child manifests of the index.
  for (const child of ociIndex.manifests) {
    const byDigest = await fetchManifest(mirror.url, 'apps/multiarch', child.manifestDigest);
    assert.equal(byDigest.status, 200);
    assert.equal(byDigest.digest, child.manifestDigest);
    assert.equal(byDigest.mediaType, MEDIA_TYPES.ociManifest);
  }
});

test('routing: containerd ?ns= and a host or upstream-name prefix reach the same repository', async () => {
  const plain = await fetchManifest(mirror.url, 'apps/multi', 'multi');
  const viaNs = await fetchManifest(mirror.url, 'apps/multi', 'multi?ns=registry.test');
  const viaHostPrefix = await fetchManifest(mirror.url, 'registry.test/apps/multi', 'multi');
  const viaNamePrefix = await fetchManifest(mirror.url, 'local/apps/multi', 'multi');
  for (const response of [plain, viaNs, viaHostPrefix, viaNamePrefix]) {
    assert.equal(response.status, 200);
    assert.equal(response.digest, multi.manifestDigest);
  }
  const unknownNs = await fetchManifest(mirror.url, 'apps/multi', 'multi?ns=quay.io');
  assert.equal(unknownNs.status, 404);
  assert.equal((JSON.parse(unknownNs.bytes.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'NAME_UNKNOWN');
});

test('blobs: HEAD headers, Range on a hit (206) and on a miss, 416 past the end', async () => {
  const layer = multi.layers[3]!;
  const head = await request(`${mirror.url}/v2/apps/multi/blobs/${layer.digest}`, { method: 'HEAD' });
  await head.body.dump();
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-length'], String(layer.size));
  assert.equal(head.headers['docker-content-digest'], layer.digest);

  const whole = Buffer.from(await (await request(`${mirror.url}/v2/apps/multi/blobs/${layer.digest}`)).body.arrayBuffer());
  const ranged = await request(`${mirror.url}/v2/apps/multi/blobs/${layer.digest}`, { headers: { range: 'bytes=1000-1999' } });
  assert.equal(ranged.statusCode, 206);
  assert.equal(ranged.headers['content-range'], `bytes 1000-1999/${layer.size}`);
  assert.ok(Buffer.from(await ranged.body.arrayBuffer()).equals(whole.subarray(1000, 2000)));

  const past = await request(`${mirror.url}/v2/apps/multi/blobs/${layer.digest}`, { headers: { range: `bytes=${layer.size}-` } });
  await past.body.dump();
  assert.equal(past.statusCode, 416);
  assert.equal(past.headers['content-range'], `bytes */${layer.size}`);

  // A range on a cold blob: served from the download as it lands.
  const cold = await pushDockerImage(registry.url, 'apps/rangecold', 'v1', [500_000]);
  const coldLayer = cold.layers[0]!;
  const coldRange = await request(`${mirror.url}/v2/apps/rangecold/blobs/${coldLayer.digest}`, { headers: { range: 'bytes=-100' } });
  assert.equal(coldRange.statusCode, 206);
  const tail = Buffer.from(await coldRange.body.arrayBuffer());
  const upstreamTail = Buffer.from(await (await request(`${registry.url}/v2/apps/rangecold/blobs/${coldLayer.digest}`, { headers: { range: 'bytes=-100' } })).body.arrayBuffer());
  assert.equal(tail.byteLength, 100);
  assert.ok(tail.equals(upstreamTail));
});

test('tags/list passes the upstream list through, sorted and paginated', async () => {
  await pushDockerImage(registry.url, 'apps/tagged', 'b', [1000]);
  await pushDockerImage(registry.url, 'apps/tagged', 'a', [1000]);
  await pushDockerImage(registry.url, 'apps/tagged', 'c', [1000]);
  const all = await request(`${mirror.url}/v2/apps/tagged/tags/list`);
  assert.deepEqual(await all.body.json(), { name: 'apps/tagged', tags: ['a', 'b', 'c'] });
  const page = await request(`${mirror.url}/v2/apps/tagged/tags/list?n=1&last=a`);
  assert.deepEqual(await page.body.json(), { name: 'apps/tagged', tags: ['b'] });
});

test('every log line is JSON with method, path, status, bytes, duration and cache outcome', () => {
  const requests = mirror.logs.filter((l) => l.msg === 'request');
  assert.ok(requests.length > 50);
  for (const line of requests) {
    assert.equal(typeof line.method, 'string');
    assert.equal(typeof line.path, 'string');
    assert.equal(typeof line.status, 'number');
    assert.equal(typeof line.durationMs, 'number');
  }
  const outcomes = new Set(requests.map((l) => l.cache));
  for (const outcome of ['hit', 'miss', 'coalesced']) assert.ok(outcomes.has(outcome), outcome);
  assert.ok(requests.some((l) => l.status === 200 && typeof l.bytes === 'number' && l.bytes > 0));
});

test('with the upstream stopped, every image pulled before still pulls', async () => {
  await registry.stop();
  for (const [repo, tag] of [
    ['apps/small', 'small'],
    ['apps/multi', 'multi'],
    ['apps/big', 'big'],
    ['apps/multiarch', 'multiarch'],
    ['apps/dockerlist', 'v1'],
    ['apps/dockerimage', 'v1'],
  ] as const) {
    const out = path.join(work.path, `offline-${repo.replace('/', '_')}`);
    await copyToDir(`${hostOf(mirror.url)}/${repo}:${tag}`, out, { all: true });
  }
  const neverPulled = await fetchManifest(mirror.url, 'apps/tagged', 'a');
  assert.equal(neverPulled.status, 502, 'a cold tag with no upstream is a clear gateway error');
  assert.equal((JSON.parse(neverPulled.bytes.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');
});
