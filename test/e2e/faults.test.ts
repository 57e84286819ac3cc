// A misbehaving upstream (in-process fake) must never poison the cache: the client gets an
// error (an aborted body once streaming began), nothing is stored, and the next good request
// succeeds. Also: stale tags when the upstream fails, and zero upstream requests within TTL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../harness/fake-upstream.js';
import { onCleanup } from '../support/cleanup.js';
import { sha256Digest } from '../harness/digests.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

async function setUp(t: test.TestContext, tagTtl = '1h'): Promise<{ upstream: FakeUpstream; mirror: InProcessLongshore }> {
  const upstream = await startFakeUpstream();
  onCleanup(t, () => upstream.close());
  const mirror = await startInProcess({ upstreams: [{ name: 'fake', url: upstream.url, default: true, tagTtl, timeout: '700ms' }] });
  onCleanup(t, () => mirror.stop());
  return { upstream, mirror };
}

/** GETs a URL and reads the whole body; `error` when the body broke off. */
async function get(url: string, headers: Record<string, string> = {}) {
  const response = await request(url, { headers });
  try {
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body, error: undefined };
  } catch (error) {
    return { status: response.statusCode, headers: response.headers, body: undefined, error: error as Error };
  }
}

async function storedBlobs(mirror: InProcessLongshore): Promise<string[]> {
  const found: string[] = [];
  const root = path.join(mirror.dataDir, 'blobs', 'sha256');
  for (const prefix of await readdir(root).catch(() => [])) found.push(...(await readdir(path.join(root, prefix))));
  return found;
}

function blobUpstreamGets(upstream: FakeUpstream, digest: string): number {
  return upstream.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`)).length;
}

const streamingFaults = [
  { name: 'a truncated body', fault: { kind: 'truncate', afterBytes: 300_000 } },
  { name: 'wrong bytes', fault: { kind: 'wrongBytes' } },
  { name: 'a stall past the timeout', fault: { kind: 'stall', afterBytes: 300_000 } },
] as const;

for (const { name, fault } of streamingFaults) {
  test(`blob fetch with ${name}: client aborted, nothing cached, next request succeeds`, async (t) => {
    const { upstream, mirror } = await setUp(t);
    const blob = randomBytes(1_000_000);
    const digest = sha256Digest(blob);
    upstream.setBlob(digest, blob);
    upstream.setFault(/\/blobs\//, { ...fault, times: 1 });

    const broken = await get(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.equal(broken.status, 200, 'headers went out before the fault');
    assert.ok(broken.error, 'the body must break off, not end cleanly');
    assert.deepEqual(await storedBlobs(mirror), []);
    assert.deepEqual(await readdir(path.join(mirror.dataDir, 'tmp')), [], 'the temp file is gone');

    const good = await get(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.equal(good.status, 200);
    assert.ok(good.body?.equals(blob));
    assert.equal(blobUpstreamGets(upstream, digest), 2, 'the broken fetch was not cached');
    assert.deepEqual(await storedBlobs(mirror), [digest.slice('sha256:'.length)]);

    const hit = await get(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.ok(hit.body?.equals(blob));
    assert.equal(blobUpstreamGets(upstream, digest), 2, 'third request is a cache hit');
    assert.deepEqual(
      mirror.requests().filter((l) => String(l.path).includes('/blobs/')).map((l) => [l.cache, l.aborted]),
      [
        ['miss', true],
        ['miss', undefined],
        ['hit', undefined],
      ],
    );
  });
}

test('a blob sent without Content-Length is cut at the size a cached manifest gives it: the fetch fails, nothing is stored, the client is aborted, one warning', async (t) => {
  const { upstream, mirror } = await setUp(t);
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const layer = randomBytes(200_000);
  const layerDigest = sha256Digest(layer);
  upstream.setBlob(sha256Digest(config), config);
  upstream.setBlob(layerDigest, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(config), size: config.byteLength },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.byteLength }],
    }),
  );
  upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  assert.equal((await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT })).status, 200);

  // The layer again and again, with no Content-Length: without a bound it would fill the disk.
  upstream.setFault(/\/blobs\//, { kind: 'endless', times: 1 });
  // Read with a bound of our own, so that an unbounded mirror fails this test instead of hanging it.
  const response = await request(`${mirror.url}/v2/app/blobs/${layerDigest}`);
  let received = 0;
  let brokeOff = false;
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      received += chunk.byteLength;
      if (received > 4 * layer.byteLength) break;
    }
  } catch {
    brokeOff = true;
  }
  if (!response.body.destroyed) response.body.destroy();
  assert.ok(received <= layer.byteLength, `${received} bytes reached the client; the manifest says ${layer.byteLength}`);
  assert.ok(brokeOff || response.statusCode >= 500, `the body must not end cleanly (status ${response.statusCode})`);
  const sent = upstream.endlessBytesSent();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(upstream.endlessBytesSent(), sent, 'the upstream connection was closed: nothing more is read');
  assert.ok(sent < 50 * layer.byteLength, `read ${sent} bytes of an endless body`);
  assert.ok(!(await storedBlobs(mirror)).includes(layerDigest.slice('sha256:'.length)), 'the layer is not stored');
  assert.deepEqual(await readdir(path.join(mirror.dataDir, 'tmp')), [], 'the temp file is gone');
  const warnings = mirror.logs.filter((line) => (line.level as number) >= 40 && JSON.stringify(line).includes(`expected ${layer.byteLength} bytes`));
  assert.equal(warnings.length, 1, `one warning: ${JSON.stringify(mirror.logs.filter((line) => (line.level as number) >= 40))}`);

  const good = await get(`${mirror.url}/v2/app/blobs/${layerDigest}`);
  assert.equal(good.status, 200);
  assert.ok(good.body?.equals(layer));
});

for (const { status, code, expected } of [
  { status: 500, code: 'UNAVAILABLE', expected: 502 },
  { status: 429, code: 'TOOMANYREQUESTS', expected: 429 },
]) {
  test(`blob fetch answered ${status} upstream: client gets ${expected} ${code}, then recovers`, async (t) => {
    const { upstream, mirror } = await setUp(t);
    const blob = randomBytes(10_000);
    const digest = sha256Digest(blob);
    upstream.setBlob(digest, blob);
    upstream.setFault(/\/blobs\//, { kind: 'status', status, retryAfter: 30, times: 1 });

    const failed = await get(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.equal(failed.status, expected);
    const body = JSON.parse(failed.body!.toString()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]?.code, code);
    assert.match(body.errors[0]?.message ?? '', /upstream fake/);
    if (status === 429) assert.equal(failed.headers['retry-after'], '30');
    assert.deepEqual(await storedBlobs(mirror), []);

    const good = await get(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.ok(good.body?.equals(blob));
  });
}

test('a manifest whose bytes do not match its digest is refused and not cached', async (t) => {
  const { upstream, mirror } = await setUp(t);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  const digest = upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  upstream.setFault(/\/manifests\/sha256:/, { kind: 'wrongBytes', times: 1 });
  const bad = await get(`${mirror.url}/v2/app/manifests/${digest}`, { accept: ACCEPT });
  assert.equal(bad.status, 502);
  assert.match(bad.body!.toString(), /has digest sha256:[0-9a-f]{64}, expected/);
  const good = await get(`${mirror.url}/v2/app/manifests/${digest}`, { accept: ACCEPT });
  assert.equal(good.status, 200);
  assert.ok(good.body?.equals(manifest));
  assert.equal(good.headers['docker-content-digest'], digest);
});

test('tags: zero upstream requests within the TTL', async (t) => {
  const { upstream, mirror } = await setUp(t, '1h');
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  const digest = upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  for (let i = 0; i < 5; i++) {
    const response = await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
    assert.equal(response.headers['docker-content-digest'], digest);
  }
  assert.equal(upstream.requests.filter((r) => r.path.includes('/manifests/')).length, 1);
  assert.deepEqual(
    mirror.requests().map((l) => l.cache),
    ['miss', 'hit', 'hit', 'hit', 'hit'],
  );
});

test('tags past their TTL are revalidated with HEAD and served stale when the upstream fails', async (t) => {
  const { upstream, mirror } = await setUp(t, '1ms');
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  const digest = upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
  await new Promise((resolve) => setTimeout(resolve, 5));

  const revalidated = await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
  assert.equal(revalidated.headers['docker-content-digest'], digest);
  assert.deepEqual(
    upstream.requests.filter((r) => r.path.includes('/manifests/')).map((r) => r.method),
    ['GET', 'HEAD'],
    'the second look costs a HEAD, not a GET',
  );

  for (const status of [500, 429]) {
    upstream.setFault(/\/manifests\//, { kind: 'status', status, times: 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const stale = await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
    assert.equal(stale.status, 200);
    assert.ok(stale.body?.equals(manifest));
  }
  assert.deepEqual(
    mirror.requests().map((l) => l.cache),
    ['miss', 'hit', 'stale', 'stale'],
  );
  assert.ok(mirror.logs.some((l) => l.msg === 'upstream failed; serving stale' && l.tag === 'v1' && l.digest === digest));
});

test('a tag the upstream no longer has is 404 MANIFEST_UNKNOWN, and unknown repositories are too', async (t) => {
  const { mirror } = await setUp(t);
  const missing = await get(`${mirror.url}/v2/app/manifests/nope`, { accept: ACCEPT });
  assert.equal(missing.status, 404);
  assert.equal((JSON.parse(missing.body!.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_UNKNOWN');
  const blob = await get(`${mirror.url}/v2/app/blobs/sha256:${'0'.repeat(64)}`);
  assert.equal(blob.status, 404);
  assert.equal((JSON.parse(blob.body!.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'BLOB_UNKNOWN');
  const invalid = await get(`${mirror.url}/v2/app/blobs/sha256:xyz`);
  assert.equal(invalid.status, 400);
  assert.equal((JSON.parse(invalid.body!.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'DIGEST_INVALID');
});

test('after repeated upstream failures the circuit opens: stale tags are served without asking', async (t) => {
  const upstream = await startFakeUpstream();
  onCleanup(t, () => upstream.close());
  const mirror = await startInProcess({
    upstreams: [{ name: 'fake', url: upstream.url, default: true, tagTtl: '1ms', circuitBreaker: { failures: 3, cooldown: '1h' } }],
  });
  onCleanup(t, () => mirror.stop());
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
  upstream.setFault(/\/manifests\//, { kind: 'status', status: 503 });
  const before = upstream.requests.length;
  for (let i = 0; i < 8; i++) {
    await new Promise((resolve) => setTimeout(resolve, 3));
    const response = await get(`${mirror.url}/v2/app/manifests/v1`, { accept: ACCEPT });
    assert.equal(response.status, 200);
    assert.ok(response.body?.equals(manifest));
  }
  assert.equal(upstream.requests.length - before, 3, 'three failures opened the circuit; the other five never reached the upstream');
  assert.deepEqual(
    mirror.requests().slice(1).map((l) => l.cache),
    Array(8).fill('stale'),
  );
});

test('api.v2: false answers 404 on /v2/, so old Docker clients fall back to v1', async (t) => {
  const mirror = await startInProcess({ api: { v2: false } });
  onCleanup(t, () => mirror.stop());
  for (const path of ['/v2/', '/v2/library/alpine/manifests/latest']) {
    const response = await get(`${mirror.url}${path}`);
    assert.equal(response.status, 404, path);
  }
});
