// Longshore as a v1 pull-through mirror (docs: v1-protocol.md §8, §10, §11):
//   - a second Longshore is the v1 upstream (index + registry; its private namespace holds
//     pushed images), with a counting proxy in front of it;
//   - old-Docker mirror mode: the client talks to the upstream index, and only image data
//     comes from the mirror, with the upstream's token;
//   - a real docker-registry (v2 only) upstream, pulled through v1 by the mirror's v1 view.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import { v1ChainFromV2 } from '../../src/protocol/v1-from-v2.js';
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.js';
import { pushDockerImage, pushDockerManifestList, type GeneratedImage } from '../harness/images.js';
import { startRegistry } from '../harness/registry.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { V1Client, type V1Image } from '../harness/v1-client.js';
import { onCleanup } from '../support/cleanup.js';
import { startTestServer } from '../support/http-server.js';
import { metricValue } from '../support/prometheus-text.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

let work: TempDir;
let upstream: InProcessLongshore;
let proxy: CountingProxy;
let mirror: InProcessLongshore;
let chain: V1Image[];

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

before(async () => {
  work = await makeTempDir('v1-mirror');
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  upstream = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd } });
  chain = await v1Chain('mirror-chain');
  await new V1Client(upstream.url, { username: 'alice', password: 'wonderland' }).push('corp/app', chain, { latest: (chain[2] as V1Image).id, old: (chain[0] as V1Image).id });
  proxy = await startCountingProxy(upstream.url);
  mirror = await startInProcess({
    private: { namespaces: ['team'] },
    upstreams: [{ name: 'legacy', v1: { index: proxy.url, registry: proxy.url }, username: 'alice', password: 'wonderland', tagTtl: '1h', default: true }],
  });
});

after(async () => {
  await mirror?.stop();
  await proxy?.close();
  await upstream?.stop();
  await work?.remove();
});

function assertSameImages(pulled: Map<string, { json: Buffer; layer: Buffer }>, expected: readonly V1Image[]): void {
  assert.equal(pulled.size, expected.length);
  for (const image of expected) {
    const got = pulled.get(image.id);
    assert.ok(got, `image ${image.id} pulled`);
    assert.ok(got.json.equals(image.json), 'json bytes as the upstream stores them');
    assert.equal(sha256(got.layer), sha256(image.layer));
  }
}

test('pull through the mirror (§7.3): everything comes from the upstream once, then from the cache', async () => {
  const client = new V1Client(mirror.url);
  const first = await client.pull('corp/app', 'latest');
  assert.deepEqual(first.endpoints, [`${mirror.url}/v1/`], 'X-Docker-Endpoints names the mirror');
  assert.match(client.token ?? '', /repository="corp\/app",access=read/, 'the mirror issues its own token');
  assertSameImages(first.images, chain);
  assert.equal(proxy.count('GET', /\/layer$/), 3, 'one upstream GET per layer');

  proxy.reset();
  const again = await new V1Client(mirror.url).pull('corp/app', 'latest');
  assertSameImages(again.images, chain);
  assert.equal(proxy.count('GET', /\/layer$/), 0, 'no layer request on the second pull');
  assert.deepEqual(proxy.requests.map((r) => `${r.method} ${r.path}`), [], 'nothing at all within tagTtl');

  const all = await new V1Client(mirror.url).pull('corp/app');
  assert.deepEqual(all.tags, { latest: (chain[2] as V1Image).id, old: (chain[0] as V1Image).id });
  const hits = mirror.requests().filter((r) => String(r.path).endsWith('/layer'));
  assert.ok(hits.some((r) => r.cache === 'miss') && hits.some((r) => r.cache === 'hit'), 'access log reports misses then hits');
  const metrics = await (await request(`${mirror.url}/metrics`)).body.text();
  assert.equal(metricValue(metrics, 'longshore_cache_requests_total', { kind: 'v1_layer', result: 'miss' }), 3);
  assert.ok(metricValue(metrics, 'longshore_cache_requests_total', { kind: 'v1_layer', result: 'hit' }) >= 3);
  assert.ok(metricValue(metrics, 'longshore_http_requests_total', { api: 'v1', route: '/v1/images/:id/:resource' }) > 0);
});

test('the web page lists a repository mirrored through a v1 index with its v1 tags: image id, size of the chain, pulls', async () => {
  const client = new V1Client(mirror.url);
  await client.pull('corp/app', 'latest');
  await client.pull('corp/app');
  const response = await request(`${mirror.url}/ui/api/repository?name=${encodeURIComponent('corp/app')}`);
  assert.equal(response.statusCode, 200);
  const repository = (await response.body.json()) as { kind: string; upstream: string; tags: { items: Array<{ tag: string; api: string; imageId: string; size: number; pulls: number }> } };
  assert.equal(repository.kind, 'mirrored');
  assert.equal(repository.upstream, 'legacy');
  const sizeOf = (images: readonly V1Image[]) => images.reduce((total, image) => total + image.layer.length, 0);
  const tags = Object.fromEntries(repository.tags.items.map((tag) => [tag.tag, tag]));
  assert.deepEqual(Object.keys(tags).sort(), ['latest', 'old']);
  assert.equal(tags.latest?.api, 'v1');
  assert.equal(tags.latest?.imageId, (chain[2] as V1Image).id);
  assert.equal(tags.latest?.size, sizeOf(chain), 'every layer of the chain');
  assert.ok((tags.latest?.pulls ?? 0) >= 1, 'the pull by tag is counted');
  assert.equal(tags.old?.imageId, (chain[0] as V1Image).id);
  assert.equal(tags.old?.size, sizeOf(chain.slice(0, 1)));
  const list = (await (await request(`${mirror.url}/ui/api/repositories?q=corp`)).body.json()) as { items: Array<{ name: string; tagCount: number }> };
  assert.deepEqual(list.items.map((r) => [r.name, r.tagCount]), [['corp/app', 2]]);
});

test('concurrent cold pulls of one layer make one upstream layer GET, and every client gets the bytes', async () => {
  const [image] = await v1Chain('coalesce', ['f']);
  assert.ok(image);
  await new V1Client(upstream.url, { username: 'alice', password: 'wonderland' }).push('corp/big', [image], { latest: image.id });
  const client = new V1Client(mirror.url);
  await client.pull('corp/big', 'latest'); // warms json and ancestry, and the layer once
  // A fresh image for the concurrency part: same content in another repository would hit the cache.
  const [cold] = await v1Chain('coalesce-cold', ['f']);
  assert.ok(cold);
  await new V1Client(upstream.url, { username: 'alice', password: 'wonderland' }).push('corp/cold', [cold], { latest: cold.id });
  const session = new V1Client(mirror.url);
  await session.call('GET', `${mirror.url}/v1/repositories/corp/cold/images`, { indexCall: true });
  assert.equal((await session.call('GET', `${mirror.url}/v1/images/${cold.id}/json`)).status, 200);
  proxy.reset();
  const bodies = await Promise.all(Array.from({ length: 8 }, () => session.call('GET', `${mirror.url}/v1/images/${cold.id}/layer`)));
  for (const body of bodies) {
    assert.equal(body.status, 200);
    assert.equal(sha256(body.body), sha256(cold.layer));
  }
  assert.equal(proxy.count('GET', new RegExp(`/v1/images/${cold.id}/layer$`)), 1);
  const outcomes = mirror.requests().filter((r) => String(r.path).endsWith(`${cold.id}/layer`)).map((r) => r.cache);
  assert.ok(outcomes.includes('miss') && outcomes.includes('coalesced'), `outcomes ${outcomes.join(',')}`);
});

test('old-Docker mirror mode (§10): index and tags at the upstream, image data from the mirror with the upstream token', async () => {
  // A mirror with no upstream credentials of its own: only the client's token can open corp/app.
  const bare = await startInProcess({ upstreams: [{ name: 'legacy', v1: { index: upstream.url }, default: true }] });
  try {
    const client = new V1Client(upstream.url, { username: 'alice', password: 'wonderland' });
    const pulled = await client.pull('corp/app', 'old', { mirrors: [bare.url] });
    assertSameImages(pulled.images, [chain[0] as V1Image]);
    const mirrorCalls = client.calls.filter((c) => c.url.startsWith(bare.url));
    assert.deepEqual(
      mirrorCalls.map((c) => `${new URL(c.url).pathname.split('/').pop() ?? ''} ${c.status} ${c.authorization?.split(' ')[0] ?? '-'}`),
      ['ancestry 200 Token', 'json 200 Token', 'layer 200 Token'],
    );
    assert.ok(!client.calls.some((c) => !c.url.startsWith(bare.url) && /\/images\/[0-9a-f]{64}\//.test(c.url)), 'no image data from the upstream itself');
    // Without the token the upstream does not show its private image (404), and the mirror
    // passes that on as a clean error, so a client would fall back.
    const anonymous = await request(`${bare.url}/v1/images/${(chain[1] as V1Image).id}/json`);
    assert.equal(anonymous.statusCode, 404);
    assert.ok(((await anonymous.body.json()) as { error: string }).error);
  } finally {
    await bare.stop();
  }
});

test('search merges local repositories with the upstream index; an upstream failure leaves local results', async () => {
  const found = (await new V1Client(mirror.url).search('app')).json<{ results: Array<{ name: string }> }>();
  assert.ok(found.results.some((r) => r.name === 'corp/app'), 'the upstream index result is merged in');
});

test('a v2-only upstream (docker-registry): a v1 pull gets the chain derived from the schema2 manifest and config', async (t) => {
  const registry = await startRegistry();
  onCleanup(t, () => registry.dispose());
  const image = await pushDockerImage(registry.url, 'library/alpine', '3.19', [200_000, 50_000]);
  const v2Mirror = await startInProcess({ upstreams: [{ name: 'hub', url: registry.url, default: true, libraryPrefix: true }] });
  onCleanup(t, () => v2Mirror.stop());
  const pulled = await new V1Client(v2Mirror.url).pull('alpine', '3.19');
  const expected = v1ChainFromV2(image.configBytes, image.layers.map((l) => l.digest));
  assert.deepEqual(pulled.tags, { '3.19': expected[0]?.id });
  assert.equal(pulled.images.size, expected.length);
  for (const entry of expected) {
    const got = pulled.images.get(entry.id);
    assert.ok(got, `chain image ${entry.id}`);
    assert.equal(got.json.toString('utf8'), entry.v1Compatibility);
    assert.equal(`sha256:${sha256(got.layer)}`, entry.blobSum, 'the layer is the v2 blob');
  }
  // The v2 API of the same mirror shares those blobs: a v2 HEAD is now a cache hit.
  const head = await request(`${v2Mirror.url}/v2/library/alpine/blobs/${image.layers[0]?.digest}`, { method: 'HEAD' });
  assert.equal(head.statusCode, 200);
  const logged = v2Mirror.requests().find((r) => r.method === 'HEAD');
  assert.equal(logged?.cache, 'hit');

  // A multi-platform tag resolves to linux/amd64, or to upstreams[].v1.platform.
  const list = await pushDockerManifestList(registry.url, 'library/multi', 'latest', {
    platforms: [
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      { os: 'linux', architecture: 'amd64' },
    ],
  });
  const topOf = (image: GeneratedImage | undefined) => v1ChainFromV2((image as GeneratedImage).configBytes, (image as GeneratedImage).layers.map((l) => l.digest))[0]?.id;
  assert.deepEqual((await new V1Client(v2Mirror.url).pull('multi', 'latest')).tags, { latest: topOf(list.manifests[1]) });
  const armMirror = await startInProcess({ upstreams: [{ name: 'hub', url: registry.url, default: true, libraryPrefix: true, v1: { platform: 'linux/arm64/v8' } }] });
  onCleanup(t, () => armMirror.stop());
  assert.deepEqual((await new V1Client(armMirror.url).pull('multi', 'latest')).tags, { latest: topOf(list.manifests[0]) });
});

test('after the upstream goes away, everything pulled before still pulls (tags served stale past their TTL)', async () => {
  const shortTtl = await startInProcess({ upstreams: [{ name: 'legacy', v1: { index: proxy.url, registry: proxy.url }, username: 'alice', password: 'wonderland', tagTtl: '1ms', default: true }] });
  try {
    const before = await new V1Client(shortTtl.url).pull('corp/app', 'latest');
    assertSameImages(before.images, chain);
    const allBefore = await new V1Client(shortTtl.url).pull('corp/app');
    await upstream.stop();
    const after = await new V1Client(shortTtl.url).pull('corp/app', 'latest');
    assertSameImages(after.images, chain);
    const allAfter = await new V1Client(shortTtl.url).pull('corp/app');
    assert.deepEqual(allAfter.tags, allBefore.tags);
    const stale = shortTtl.requests().filter((r) => r.cache === 'stale').map((r) => String(r.path));
    assert.ok(stale.some((p) => p.endsWith('/tags/latest')) && stale.some((p) => p.endsWith('/tags')) && stale.some((p) => p.endsWith('/images')), `stale: ${stale.join(', ')}`);
    const search = await new V1Client(shortTtl.url).search('app');
    assert.equal(search.status, 200, 'search answers with local results when the upstream index is down');
    assert.deepEqual(search.json<{ results: unknown[] }>().results, []);
    // An image never pulled before is a clean 404/502, so an old client falls back.
    const missing = await new V1Client(shortTtl.url).call('GET', `${shortTtl.url}/v1/images/${'e'.repeat(64)}/json`);
    assert.ok(missing.status >= 400 && missing.status < 600);
    assert.ok(missing.json<{ error: string }>().error);
  } finally {
    await shortTtl.stop();
  }
});

test('a stalled v1 upstream: requests for it end at the timeout with a clean error, cached content is served meanwhile', async (t) => {
  const id = 'c'.repeat(64);
  const json = Buffer.from(JSON.stringify({ id }));
  const layer = Buffer.from('layer bytes of a stalled upstream');
  let stalled = false;
  const held: Array<() => void> = [];
  const fake = await startTestServer((req, res) => {
    if (stalled) {
      held.push(() => res.destroy()); // never answers; released at the end of the test
      return;
    }
    const send = (body: Buffer | string, headers: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(body);
    };
    if (req.url?.endsWith('/json')) send(json, { 'x-docker-size': String(layer.length) });
    else if (req.url?.endsWith('/ancestry')) send(JSON.stringify([id]));
    else if (req.url?.endsWith('/layer')) send(layer);
    else send('[]', { 'x-docker-token': 'signature=upstream', 'x-docker-endpoints': new URL(fakeUrl()).host });
  });
  const fakeUrl = () => fake.url;
  onCleanup(t, () => fake.close());
  onCleanup(t, () => held.forEach((release) => release()));
  const slow = await startInProcess({ upstreams: [{ name: 'slow', v1: { index: fake.url }, timeout: '1s', default: true }] });
  onCleanup(t, () => slow.stop());
  const client = new V1Client(slow.url);
  assert.equal((await client.call('GET', `${slow.url}/v1/images/${id}/layer`)).status, 200, 'cached while the upstream answered');

  stalled = true;
  const started = Date.now();
  const [cold, cached] = await Promise.all([
    (async () => {
      const response = await client.call('GET', `${slow.url}/v1/images/${'d'.repeat(64)}/json`);
      return Object.assign(response, { at: Date.now() - started });
    })(),
    (async () => {
      const response = await client.call('GET', `${slow.url}/v1/images/${id}/layer`);
      return { response, at: Date.now() - started };
    })(),
  ]);
  assert.equal(cold.status, 502, 'the stalled request ends with a clean error');
  assert.ok(cold.json<{ error: string }>().error);
  assert.equal(cached.response.status, 200);
  assert.ok(cached.response.body.equals(layer));
  // Not a speed check: the order shows the cached request did not wait behind the stalled one.
  assert.ok(cached.at < cold.at, `cached content (${cached.at} ms) came after the stalled request ended (${cold.at} ms)`);
});
