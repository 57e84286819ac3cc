// Proves the e2e harness itself against the real tools (docker-registry, skopeo), so a failing
// Longshore e2e test can be trusted to be about Longshore. No Longshore server is involved:
// startLongshore is exercised against a stub entry script.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startCountingProxy } from '../harness/counting-proxy.js';
import type { CountingProxy } from '../harness/counting-proxy.js';
import { digestHex, sha256Digest, sha256DigestOfFile } from '../harness/digests.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import type { FakeUpstream } from '../harness/fake-upstream.js';
import { makeOciIndexLayout, makeOciLayout, pushDockerImage, pushDockerManifestList } from '../harness/images.js';
import type { GeneratedImage, GeneratedIndex } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { startRegistry } from '../harness/registry.js';
import type { RegistryHandle } from '../harness/registry.js';
import { fetchManifest, headerValue, MEDIA_TYPES } from '../harness/registry-client.js';
import { copyToDir, pushOciLayout } from '../harness/skopeo.js';
import { makeTempDir } from '../harness/tmp.js';
import type { TempDir } from '../harness/tmp.js';
import { requireTool } from '../harness/tools.js';
import { pollUntil } from '../harness/wait.js';

const MiB = 1024 * 1024;

/** Fetches a manifest by tag or digest from the registry itself and checks it is the one generated. */
async function assertRegistryServes(registryUrl: string, repo: string, ref: string, expected: { digest: string; mediaType: string }): Promise<void> {
  const manifest = await fetchManifest(registryUrl, repo, ref);
  assert.equal(manifest.status, 200, `GET ${repo}:${ref}: ${manifest.bytes.toString()}`);
  assert.equal(manifest.digest, expected.digest, `sha256 of the bytes served for ${repo}:${ref}`);
  assert.equal(manifest.dockerContentDigest, expected.digest);
  assert.equal(manifest.mediaType, expected.mediaType);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function blobPath(repo: string, digest: string): RegExp {
  return new RegExp(`^/v2/${escapeRegExp(repo)}/blobs/${escapeRegExp(digest)}$`);
}

void describe('harness against docker-registry and skopeo', () => {
  let fixtures: TempDir | undefined;
  let registry: RegistryHandle | undefined;
  let proxy: CountingProxy | undefined;
  let proxyHost = '';
  let layoutDir = '';
  let single: GeneratedImage;
  let fourLayers: GeneratedImage;
  let big: GeneratedImage;
  let multiPlatform: GeneratedIndex;

  before(async () => {
    requireTool('docker-registry', 'docker-registry');
    requireTool('skopeo', 'skopeo');
    fixtures = await makeTempDir('harness-test');
    registry = await startRegistry();
    proxy = await startCountingProxy(registry.url);
    proxyHost = new URL(proxy.url).host;
    layoutDir = join(fixtures.path, 'layout');
    [single, fourLayers, big] = (await makeOciLayout(layoutDir, [
      { tag: 'single', layerSizes: [3000] },
      { tag: 'four', layerSizes: [1000, 20_000, 300_000, 5] },
      { tag: 'big', layerSizes: [50 * MiB] },
    ])) as [GeneratedImage, GeneratedImage, GeneratedImage];
    multiPlatform = await makeOciIndexLayout(layoutDir, 'multi');
  });

  after(async () => {
    await proxy?.close();
    await registry?.dispose();
    await fixtures?.remove();
  });

  it('pushes a single-layer OCI image through the proxy; the registry serves the generated digest', async () => {
    assert.ok(registry);
    await pushOciLayout(layoutDir, 'single', `${proxyHost}/harness/single:v1`);
    await assertRegistryServes(registry.url, 'harness/single', 'v1', { digest: single.manifestDigest, mediaType: MEDIA_TYPES.ociManifest });
    assert.equal(single.layers.length, 1);
  });

  it('pushes a 4-layer OCI image', async () => {
    assert.ok(registry);
    await pushOciLayout(layoutDir, 'four', `${proxyHost}/harness/four:v1`);
    await assertRegistryServes(registry.url, 'harness/four', 'v1', { digest: fourLayers.manifestDigest, mediaType: MEDIA_TYPES.ociManifest });
    const config = JSON.parse(fourLayers.configBytes.toString()) as { rootfs: { diff_ids: string[] } };
    assert.deepEqual(config.rootfs.diff_ids, fourLayers.layers.map((layer) => layer.diffId));
  });

  it('pushes an image with one 50 MiB layer', async () => {
    assert.ok(registry);
    await pushOciLayout(layoutDir, 'big', `${proxyHost}/harness/big:v1`);
    await assertRegistryServes(registry.url, 'harness/big', 'v1', { digest: big.manifestDigest, mediaType: MEDIA_TYPES.ociManifest });
    const layer = big.layers[0];
    assert.ok(layer);
    assert.ok(layer.size > 50 * MiB, `random data does not compress: blob is ${layer.size} bytes`);
    const head = await request(`${registry.url}/v2/harness/big/blobs/${layer.digest}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 200);
    assert.equal(headerValue(head.headers['content-length']), String(layer.size));
  });

  it('pushes a 3-platform OCI index with --all; index and platform manifests keep their digests', async () => {
    assert.ok(registry);
    await pushOciLayout(layoutDir, 'multi', `${proxyHost}/harness/multi:v1`, { all: true });
    await assertRegistryServes(registry.url, 'harness/multi', 'v1', { digest: multiPlatform.indexDigest, mediaType: MEDIA_TYPES.ociIndex });
    assert.deepEqual(
      multiPlatform.manifests.map((image) => image.platform),
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
        { os: 'linux', architecture: 's390x' },
      ],
    );
    for (const image of multiPlatform.manifests) {
      await assertRegistryServes(registry.url, 'harness/multi', image.manifestDigest, { digest: image.manifestDigest, mediaType: MEDIA_TYPES.ociManifest });
    }
  });

  it('pushes a Docker manifest list and a Docker schema2 image over HTTP', async () => {
    assert.ok(registry && proxy);
    const list = await pushDockerManifestList(proxy.url, 'harness/docker-list', 'v1');
    await assertRegistryServes(registry.url, 'harness/docker-list', 'v1', { digest: list.indexDigest, mediaType: MEDIA_TYPES.dockerManifestList });
    assert.equal(list.manifests.length, 2);
    for (const image of list.manifests) {
      await assertRegistryServes(registry.url, 'harness/docker-list', image.manifestDigest, { digest: image.manifestDigest, mediaType: MEDIA_TYPES.dockerManifest });
    }
    const image = await pushDockerImage(proxy.url, 'harness/docker-image', 'v1', [2000, 4000]);
    await assertRegistryServes(registry.url, 'harness/docker-image', 'v1', { digest: image.manifestDigest, mediaType: MEDIA_TYPES.dockerManifest });
    assert.equal(image.layers.length, 2);
    assert.ok(image.layers.every((layer) => layer.mediaType === MEDIA_TYPES.dockerLayer));
  });

  it('documents why MANIFEST_ACCEPT exists: without it the registry downgrades Docker and hides OCI manifests', async () => {
    assert.ok(registry);
    const docker = await fetchManifest(registry.url, 'harness/docker-image', 'v1', { accept: '*/*' });
    assert.equal(docker.status, 200);
    assert.equal(docker.mediaType, 'application/vnd.docker.distribution.manifest.v1+prettyjws');
    const oci = await fetchManifest(registry.url, 'harness/single', 'v1', { accept: '*/*' });
    assert.equal(oci.status, 404);
  });

  it('copies the 4-layer image back with skopeo; blobs hash to their digests; the proxy counted each blob GET once', async () => {
    assert.ok(proxy && fixtures);
    proxy.reset();
    const outDir = join(fixtures.path, 'copied-four');
    await copyToDir(`${proxyHost}/harness/four:v1`, outDir);

    assert.equal(sha256Digest(await readFile(join(outDir, 'manifest.json'))), fourLayers.manifestDigest);
    for (const layer of fourLayers.layers) {
      assert.equal(await sha256DigestOfFile(join(outDir, digestHex(layer.digest))), layer.digest);
      assert.equal(proxy.count('GET', blobPath('harness/four', layer.digest)), 1, `GETs of layer ${layer.digest}`);
    }
    assert.equal(proxy.count('GET', blobPath('harness/four', fourLayers.configDigest)), 1, 'GETs of the config blob');
    assert.equal(proxy.count('GET', /\/blobs\//), fourLayers.layers.length + 1, 'no other blob GETs');
    assert.equal(proxy.count('GET', /^\/v2\/harness\/four\/manifests\/v1$/), 1);
    assert.ok(proxy.requests.every((r) => r.finished && r.status < 400), JSON.stringify(proxy.requests));
  });

  it('throttles a blob download through the proxy so a test can catch it mid-way', async () => {
    assert.ok(proxy);
    const layer = big.layers[0];
    assert.ok(layer);
    proxy.reset();
    proxy.setThrottle(1 * MiB);
    try {
      const started = Date.now();
      const response = await request(`${proxy.url}/v2/harness/big/blobs/${layer.digest}`);
      assert.equal(response.statusCode, 200);
      assert.equal(headerValue(response.headers['content-length']), String(layer.size));
      let received = 0;
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received >= 256 * 1024) break; // leaving the loop aborts the download
      }
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 150, `256 KiB at 1 MiB/s took only ${elapsed} ms`);
      const record = proxy.requests.find((r) => r.path.endsWith(layer.digest));
      assert.ok(record);
      assert.equal(record.finished, false);
      assert.ok(record.bytesSent < layer.size / 10, `proxy sent ${record.bytesSent} bytes`);
      await pollUntil(() => Promise.resolve(record.error !== undefined), { timeoutMs: 2_000, what: 'the proxy to notice the aborted download' });
    } finally {
      proxy.setThrottle(undefined);
    }
  });

  it('stops the registry and starts it again on the same port with the same content', async () => {
    assert.ok(registry && proxy);
    const port = registry.port;
    await registry.stop();
    assert.equal(registry.process, undefined);
    proxy.reset();
    await assert.rejects(request(`${proxy.url}/v2/`), 'the proxy drops the connection while the upstream is gone');
    assert.equal(proxy.upstreamFailures.length, 1);
    assert.match(proxy.upstreamFailures[0]?.error ?? '', /ECONNREFUSED/);

    await registry.start();
    assert.equal(registry.port, port);
    await assertRegistryServes(registry.url, 'harness/single', 'v1', { digest: single.manifestDigest, mediaType: MEDIA_TYPES.ociManifest });
  });
});

void describe('fake upstream', () => {
  let upstream: FakeUpstream | undefined;
  const blob = Buffer.from('0123456789'.repeat(10_000));
  const digest = sha256Digest(blob);
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, layers: [] }));

  before(async () => {
    upstream = await startFakeUpstream();
    upstream.setBlob(digest, blob);
    upstream.setManifest('lib/app', 'v1', manifestBytes, MEDIA_TYPES.ociManifest);
  });
  after(async () => {
    await upstream?.close();
  });

  it('serves /v2/, manifests and blobs with digest headers, and ranges', async () => {
    assert.ok(upstream);
    upstream.clearFaults();
    const base = await request(`${upstream.url}/v2/`);
    await base.body.dump();
    assert.equal(base.statusCode, 200);

    const manifest = await fetchManifest(upstream.url, 'lib/app', 'v1');
    assert.equal(manifest.status, 200);
    assert.equal(manifest.mediaType, MEDIA_TYPES.ociManifest);
    assert.equal(manifest.dockerContentDigest, sha256Digest(manifestBytes));
    const byDigest = await fetchManifest(upstream.url, 'lib/app', sha256Digest(manifestBytes), { method: 'HEAD' });
    assert.equal(byDigest.status, 200);

    const head = await request(`${upstream.url}/v2/lib/app/blobs/${digest}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(headerValue(head.headers['content-length']), String(blob.length));
    assert.equal(headerValue(head.headers['docker-content-digest']), digest);

    const ranged = await request(`${upstream.url}/v2/lib/app/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.statusCode, 206);
    assert.equal(await ranged.body.text(), '0123456789');

    const missing = await fetchManifest(upstream.url, 'lib/app', 'nope');
    assert.equal(missing.status, 404);
  });

  it('injects status faults with Retry-After, a limited number of times', async () => {
    assert.ok(upstream);
    upstream.clearFaults();
    upstream.setFault(/\/manifests\//, { kind: 'status', status: 429, retryAfter: 3, times: 1 });
    const limited = await fetchManifest(upstream.url, 'lib/app', 'v1');
    assert.equal(limited.status, 429);
    const again = await request(`${upstream.url}/v2/lib/app/manifests/v1`, { method: 'HEAD' });
    await again.body.dump();
    assert.equal(again.statusCode, 200, 'times: 1 applies once');

    upstream.setFault(/\/blobs\//, { kind: 'status', status: 500, retryAfter: 7 });
    const failing = await request(`${upstream.url}/v2/lib/app/blobs/${digest}`);
    await failing.body.dump();
    assert.equal(failing.statusCode, 500);
    assert.equal(headerValue(failing.headers['retry-after']), '7');
    assert.equal(upstream.requests.at(-1)?.fault, 'status');
  });

  it('truncates a blob after N bytes while promising the full length', async () => {
    assert.ok(upstream);
    upstream.clearFaults();
    upstream.setFault(/\/blobs\//, { kind: 'truncate', afterBytes: 1234 });
    const response = await request(`${upstream.url}/v2/lib/app/blobs/${digest}`);
    assert.equal(headerValue(response.headers['content-length']), String(blob.length));
    let received = 0;
    await assert.rejects(async () => {
      for await (const chunk of response.body as AsyncIterable<Buffer>) received += chunk.length;
    });
    assert.equal(received, 1234);
  });

  it('serves wrong bytes of the right length', async () => {
    assert.ok(upstream);
    upstream.clearFaults();
    upstream.setFault(/\/blobs\//, { kind: 'wrongBytes' });
    const response = await request(`${upstream.url}/v2/lib/app/blobs/${digest}`);
    const body = Buffer.from(await response.body.arrayBuffer());
    assert.equal(body.length, blob.length);
    assert.notEqual(sha256Digest(body), digest);
    assert.equal(headerValue(response.headers['docker-content-digest']), digest);
  });

  it('stalls after N bytes until close() destroys the connection', async () => {
    upstream?.clearFaults();
    // Its own instance: closing it is part of what is tested.
    const stalling = await startFakeUpstream();
    try {
      stalling.setBlob(digest, blob);
      stalling.setFault(/\/blobs\//, { kind: 'stall', afterBytes: 100 });
      const response = await request(`${stalling.url}/v2/lib/app/blobs/${digest}`);
      let received = 0;
      const reading = (async () => {
        for await (const chunk of response.body as AsyncIterable<Buffer>) received += chunk.length;
      })();
      await pollUntil(() => Promise.resolve(received === 100), { timeoutMs: 2_000, what: 'the first 100 bytes' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(received, 100, 'nothing more arrives while stalled');
      await stalling.close();
      await assert.rejects(reading, 'the stalled download breaks off when the upstream closes');
    } finally {
      await stalling.close().catch(() => undefined);
    }
  });
});

// A stand-in for src/main.ts that keeps the server's side of the contract: pino-style JSON lines
// on stdout, "listening" with the address once accepting connections.
const STUB_SERVER = `
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
const log = (fields) => process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), ...fields }) + '\\n');
const configPath = process.argv[process.argv.indexOf('--config') + 1];
if (process.env.STUB_FAIL === '1') {
  process.stderr.write('stub: configuration rejected on purpose\\n');
  process.exit(3);
}
log({ msg: 'config', text: readFileSync(configPath, 'utf8') });
const server = createServer((req, res) => res.end('stub'));
server.listen(0, '127.0.0.1', () => log({ msg: 'listening', address: 'http://127.0.0.1:' + server.address().port }));
process.on('SIGTERM', () => { log({ msg: 'shutting down' }); server.close(() => process.exit(0)); });
`;

void describe('startLongshore (against a stub server)', () => {
  let work: TempDir | undefined;
  let stubPath = '';

  before(async () => {
    work = await makeTempDir('longshore-stub');
    stubPath = join(work.path, 'stub-server.mjs');
    await writeFile(stubPath, STUB_SERVER);
  });
  after(async () => {
    await work?.remove();
  });

  it('writes the YAML config, parses JSON logs, and survives kill9/start/stop', async (t) => {
    const longshore = await startLongshore({ logLevel: 'debug', upstreams: [] }, { entry: stubPath });
    t.after(() => longshore.dispose());
    const configText = longshore.logs.find((record) => record.msg === 'config')?.text;
    assert.equal(typeof configText, 'string');
    assert.match(configText as string, /listen: 127\.0\.0\.1:0/);
    assert.ok((configText as string).includes(`path: ${longshore.dataDir}`));

    const first = await request(longshore.url);
    assert.equal(await first.body.text(), 'stub');

    await longshore.kill9();
    assert.equal(longshore.process, undefined);
    await longshore.start();
    const second = await request(longshore.url);
    assert.equal(await second.body.text(), 'stub');

    // Waiting and stopping together: the waiter must be registered before the line can appear.
    await Promise.all([longshore.waitForLog((record) => record.msg === 'shutting down', 5_000), longshore.stop()]);
    assert.equal(longshore.logs.filter((record) => record.msg === 'listening').length, 2);
  });

  it('fails with the stderr tail when the server exits before listening', async () => {
    await assert.rejects(startLongshore({}, { entry: stubPath, env: { STUB_FAIL: '1' } }), (error: Error) => {
      assert.match(error.message, /configuration rejected on purpose/);
      assert.match(error.message, /exited with code 3/);
      return true;
    });
  });
});
