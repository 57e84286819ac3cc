// storage.s3.redirect: true on a real S3 server (Swift s3api): blob GETs of stored blobs are
// answered 307 to a presigned URL of the object, which skopeo and a plain HTTP client follow
// to Swift and get the right bytes from; HEADs and misses stay local; access is decided
// before any URL is given out.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { buffer } from 'node:stream/consumers';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { pushDockerImage, type GeneratedImage } from '../harness/images.js';
import { fetchesSettled } from '../harness/fetches.js';
import { startLongshore, type LongshoreHandle } from '../harness/longshore.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { skopeo } from '../harness/skopeo.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { basic, V1Client } from '../harness/v1-client.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

const BASIC = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;

let swift: SwiftHandle;
let upstream: RegistryHandle;
let mirror: LongshoreHandle;
let work: TempDir;
let mirrored: GeneratedImage;
let pushed: GeneratedImage;

before(async () => {
  work = await makeTempDir('s3-redirect');
  [swift, upstream] = await Promise.all([startSwift(), startRegistry()]);
  mirrored = await pushDockerImage(upstream.url, 'apps/web', 'v1', [1_500_000, 200_000]);
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const storage = await s3StorageConfig(swift);
  mirror = await startLongshore({
    storage: { ...storage, s3: { ...(storage.s3 as Record<string, unknown>), redirect: true } },
    private: { namespaces: ['corp'] },
    auth: { htpasswd },
    upstreams: [{ name: 'origin', url: upstream.url, default: true }],
  });
  pushed = await pushDockerImage(mirror.url, 'corp/app', 'v1', [1_000_000], { headers: { authorization: BASIC } });
});

after(async () => {
  await mirror?.dispose();
  await upstream?.dispose();
  await swift?.dispose();
  await work?.remove();
});

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** One request, redirects not followed. */
async function get(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const response = await request(url, { method, headers });
  const body = Buffer.from(await response.body.arrayBuffer());
  const header = (name: string) => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  return { status: response.statusCode, body, header };
}

test('s3 redirect: a miss streams (the tee), then the stored blob is a 307 to a presigned Swift URL that gives the right bytes, ranges too', async () => {
  const layer = mirrored.layers[0]!;
  const blobUrl = `${mirror.url}/v2/apps/web/blobs/${layer.digest}`;
  const miss = await get(blobUrl);
  assert.equal(miss.status, 200, 'a miss is streamed, not redirected');
  assert.equal(sha256(miss.body), layer.digest);
  await fetchesSettled(mirror.url); // the client's response ends before the upload completes

  const hit = await get(blobUrl);
  assert.equal(hit.status, 307);
  assert.equal(hit.body.byteLength, 0);
  assert.equal(hit.header('docker-content-digest'), layer.digest);
  assert.equal(hit.header('cache-control'), 'no-store');
  const location = new URL(hit.header('location') ?? '');
  assert.equal(location.origin, swift.endpoint, 'the URL points at the S3 endpoint');
  assert.match(location.pathname, new RegExp(`/blobs/sha256/${layer.digest.slice(7, 9)}/${layer.digest.slice(7)}$`));
  assert.equal(location.searchParams.get('X-Amz-Expires'), String(20 * 60));
  assert.ok(location.searchParams.get('X-Amz-Signature'), 'presigned');

  // The plain client follows the redirect to Swift: the bytes and their digest are right.
  const fromStore = await get(location.href);
  assert.equal(fromStore.status, 200);
  assert.equal(fromStore.body.byteLength, layer.size);
  assert.equal(sha256(fromStore.body), layer.digest);
  // A Range goes along with the redirect, and the store answers it.
  const ranged = await get(blobUrl, { range: 'bytes=100-199' });
  assert.equal(ranged.status, 307);
  const part = await get(ranged.header('location') ?? '', { range: 'bytes=100-199' });
  assert.equal(part.status, 206);
  assert.deepEqual(part.body, fromStore.body.subarray(100, 200));
  // Without its signature the object is not readable: the URL is the credential.
  location.searchParams.delete('X-Amz-Signature');
  assert.equal((await get(location.href)).status, 403);
});

test('s3 redirect: HEAD is answered locally with the size and digest', async () => {
  const layer = mirrored.layers[1]!;
  const blobUrl = `${mirror.url}/v2/apps/web/blobs/${layer.digest}`;
  assert.equal((await get(blobUrl)).status, 200); // cached by this miss
  await fetchesSettled(mirror.url);
  const head = await get(blobUrl, {}, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.header('location'), undefined);
  assert.equal(head.header('content-length'), String(layer.size));
  assert.equal(head.header('docker-content-digest'), layer.digest);
});

test('s3 redirect: skopeo pulls a mirrored image (after a first pull cached it) and a private one with credentials through the redirects', async () => {
  const host = new URL(mirror.url).host;
  /** The blob GETs skopeo made since log line `from`, as "<status> <digest>". */
  const blobAnswers = (from: number) =>
    mirror.logs
      .slice(from)
      .filter((record) => record.msg === 'request' && record.method === 'GET' && /skopeo|containers/i.test(String(record.userAgent)))
      .flatMap((record) => /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(String(record.path))?.slice(1).map((digest) => `${String(record.status)} ${digest}`) ?? [])
      .sort();
  const mirroredBlobs = [mirrored.configDigest, ...mirrored.layers.map((layer) => layer.digest)];
  for (const round of ['cold', 'cached']) {
    const from = mirror.logs.length;
    const out = path.join(work.path, `mirrored-${round}`);
    await skopeo(['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${host}/apps/web:v1`, `dir:${out}`]);
    for (const digest of mirroredBlobs) assert.equal(sha256(await readFile(path.join(out, digest.slice(7)))), digest, `${round}: ${digest}`);
    // The layers were cached by the first test; the config is a miss the first time only.
    const expected = mirroredBlobs.map((digest) => `${round === 'cold' && digest === mirrored.configDigest ? 200 : 307} ${digest}`).sort();
    assert.deepEqual(blobAnswers(from), expected, round);
    await fetchesSettled(mirror.url); // the config's upload, before the cached round expects a 307
  }
  const from = mirror.logs.length;
  const out = path.join(work.path, 'private');
  await skopeo(['copy', '--src-tls-verify=false', '--src-creds', 'alice:wonderland', `docker://${host}/corp/app:v1`, `dir:${out}`]);
  const privateBlobs = [pushed.configDigest, ...pushed.layers.map((layer) => layer.digest)];
  for (const digest of privateBlobs) assert.equal(sha256(await readFile(path.join(out, digest.slice(7)))), digest);
  assert.deepEqual(blobAnswers(from), privateBlobs.map((digest) => `307 ${digest}`).sort(), 'the private blobs came through redirects, credentials and all');
});

test('s3 redirect: access is decided first: no credentials get a 401 and a private digest under a mirrored name a 404, never a URL', async () => {
  const layer = pushed.layers[0]!;
  const anonymous = await get(`${mirror.url}/v2/corp/app/blobs/${layer.digest}`);
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.header('location'), undefined);
  assert.ok(anonymous.header('www-authenticate'));
  assert.match(anonymous.body.toString(), /"code":"UNAUTHORIZED"/);
  const wrong = await get(`${mirror.url}/v2/corp/app/blobs/${layer.digest}`, { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.header('location'), undefined);
  const throughMirror = await get(`${mirror.url}/v2/apps/web/blobs/${layer.digest}`);
  assert.equal(throughMirror.status, 404);
  assert.equal(throughMirror.header('location'), undefined);
  assert.match(throughMirror.body.toString(), /BLOB_UNKNOWN/);
});

test('s3 redirect: a private v1 layer is redirected too, and only for its owner', async () => {
  const chain = await v1Chain('s3-redirect', ['a']);
  const image = chain[0]!;
  await new V1Client(mirror.url, { username: 'alice', password: 'wonderland' }).push('corp/legacy', chain, { latest: image.id });
  const layerUrl = `${mirror.url}/v1/images/${image.id}/layer`;
  // v1 ids are global: a private image is invisible to whoever may not read it (a 404).
  const anonymous = await get(layerUrl);
  assert.equal(anonymous.status, 404);
  assert.equal(anonymous.header('location'), undefined);
  assert.match(anonymous.body.toString(), /"error"/);
  const wrong = await get(layerUrl, { authorization: basic('alice', 'nope') });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.header('location'), undefined);
  const redirected = await get(layerUrl, { authorization: basic('alice', 'wonderland') });
  assert.equal(redirected.status, 307);
  const fromStore = await get(redirected.header('location') ?? '');
  assert.equal(fromStore.status, 200);
  assert.deepEqual(fromStore.body, image.layer);
});

test('s3 redirect: a handle of a redirecting store opens with a HEAD and still streams, whole, by range and empty, when it is not redirected', async () => {
  const client = swift.client();
  try {
    const store = new S3BlobStore({
      client,
      bucket: await swift.createBucket(),
      prefix: '',
      scratchDir: await mkdtemp(path.join(os.tmpdir(), 'ls-s3-redirect-')),
      redirectUrlTtlSeconds: 60,
    });
    await store.init();
    const bytes = Buffer.from('0123456789'.repeat(1000));
    const digest = parseDigest(digestOf(bytes));
    const empty = parseDigest(digestOf(Buffer.alloc(0)));
    await store.put(digest, bytes);
    await store.put(empty, Buffer.alloc(0));
    assert.deepEqual(await buffer((await store.open(digest))!.stream()), bytes);
    assert.deepEqual(await buffer((await store.open(digest))!.stream({ start: 5, end: 14 })), bytes.subarray(5, 15));
    assert.equal((await buffer((await store.open(empty))!.stream())).byteLength, 0);
    const handle = (await store.open(digest))!;
    assert.equal(handle.size, bytes.byteLength);
    const url = new URL(await handle.redirectUrl!());
    assert.equal(url.searchParams.get('X-Amz-Expires'), '60');
    assert.throws(() => handle.stream(), /already used/, 'one use per handle, like the streaming handle');
    assert.equal(await store.open(parseDigest(digestOf(Buffer.from('absent')))), undefined);
    await store.close();
  } finally {
    client.destroy();
  }
});
