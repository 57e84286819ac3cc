// Metadata reads on S3 (storage/s3-record-cache.ts), counted as the GETs Longshore's S3 client
// sends: write-once records (manifest records, completed private v1 images) and private links
// are read from the bucket once per process; mutable ones (tags) every time, so a second
// replica on the same bucket sees a moved tag at once, and a link deleted on one replica within
// a second (the delete notice) on the other.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { request } from 'undici';
import type { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { NOTICE_CHECK_MS } from '../../src/storage/s3-record-cache.js';
import { pushDockerImage, type GeneratedImage } from '../harness/images.js';
import { MANIFEST_ACCEPT } from '../harness/registry-client.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';
import { basic, V1Client } from '../harness/v1-client.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { countObjectGets } from '../support/s3-gets.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

const ALICE = basic('alice', 'wonderland');

let swift: SwiftHandle;
let upstream: RegistryHandle;
let work: TempDir;
let replicas: InProcessLongshore[] = [];
let mirrored: GeneratedImage;

/** The keys of the GETs one replica sends to S3 from now until the end of test `t`. */
function countGets(t: TestContext, replica: InProcessLongshore): string[] {
  return countObjectGets(t, (replica.server.services.blobs as S3BlobStore).client);
}

before(async () => {
  work = await makeTempDir('s3-record-cache');
  [swift, upstream] = await Promise.all([startSwift(), startRegistry()]);
  mirrored = await pushDockerImage(upstream.url, 'apps/web', 'v1', [1000]);
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const storage = { ...(await s3StorageConfig(swift)), delete: true };
  // Two replicas on one bucket (each with its own scratch directory and in-process coordinator).
  for (let i = 0; i < 2; i++) {
    replicas.push(
      await startInProcess({ storage, private: { namespaces: ['corp'] }, auth: { htpasswd }, upstreams: [{ name: 'origin', url: upstream.url, default: true }] }),
    );
  }
});

after(async () => {
  for (const replica of replicas) await replica.stop();
  replicas = [];
  await upstream?.dispose();
  await swift?.dispose();
  await work?.remove();
});

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const response = await request(url, { headers: { accept: MANIFEST_ACCEPT, ...headers } });
  return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()) };
}

const metaGets = (keys: string[], part: string) => keys.filter((key) => key.startsWith('meta/') && key.includes(part)).length;

test('s3 record cache: a manifest pulled by digest over and over costs one GET of its record on a replica that did not store it', async (t) => {
  const [first, second] = replicas as [InProcessLongshore, InProcessLongshore];
  assert.equal((await get(`${first.url}/v2/apps/web/manifests/${mirrored.manifestDigest}`)).status, 200);
  const gets = countGets(t, second);
  for (let i = 0; i < 5; i++) {
    const pulled = await get(`${second.url}/v2/apps/web/manifests/${mirrored.manifestDigest}`);
    assert.equal(pulled.status, 200);
    assert.deepEqual(pulled.body, mirrored.manifestBytes);
  }
  assert.equal(metaGets(gets, `manifests/sha256/${mirrored.manifestDigest.slice(7)}`), 1, gets.join('\n'));
});

test('s3 record cache: a completed private v1 image is read once however often it is pulled; its layer still comes from the bucket', async (t) => {
  const chain = await v1Chain('s3-record-cache', ['a']);
  const image = chain[0]!;
  await new V1Client(replicas[0]!.url, { username: 'alice', password: 'wonderland' }).push('corp/legacy', chain, { latest: image.id });
  const second = replicas[1]!;
  const gets = countGets(t, second);
  for (let i = 0; i < 4; i++) {
    for (const resource of ['json', 'ancestry', 'layer']) {
      assert.equal((await get(`${second.url}/v1/images/${image.id}/${resource}`, { authorization: ALICE })).status, 200, resource);
    }
  }
  assert.equal(metaGets(gets, `v1/images/${image.id}`), 1, gets.join('\n'));
  assert.equal(gets.filter((key) => key.startsWith('blobs/')).length, 4, 'four layer GETs, four reads of the layer');
});

test('s3 record cache: tags are read from the bucket every time, so a tag moved on one replica is served moved by the other at once', async (t) => {
  const [first, second] = replicas as [InProcessLongshore, InProcessLongshore];
  const one = await pushDockerImage(first.url, 'corp/app', 'v1', [500], { headers: { authorization: ALICE } });
  const gets = countGets(t, second);
  for (let i = 0; i < 3; i++) assert.deepEqual((await get(`${second.url}/v2/corp/app/manifests/v1`, { authorization: ALICE })).body, one.manifestBytes);
  assert.equal(metaGets(gets, 'corp/app/_tags/v1'), 3);
  const two = await pushDockerImage(first.url, 'corp/app', 'v1', [600], { headers: { authorization: ALICE } });
  assert.notEqual(two.manifestDigest, one.manifestDigest);
  assert.deepEqual((await get(`${second.url}/v2/corp/app/manifests/v1`, { authorization: ALICE })).body, two.manifestBytes);
});

test('s3 record cache: a private manifest pulled over and over reads its link once; deleted on one replica, the other stops serving it within a second', async (t) => {
  const [first, second] = replicas as [InProcessLongshore, InProcessLongshore];
  const image = await pushDockerImage(first.url, 'corp/linked', 'v1', [700], { headers: { authorization: ALICE } });
  const byDigest = (replica: InProcessLongshore) => `${replica.url}/v2/corp/linked/manifests/${image.manifestDigest}`;
  const gets = countGets(t, second);
  for (let i = 0; i < 4; i++) assert.deepEqual((await get(byDigest(second), { authorization: ALICE })).body, image.manifestBytes);
  assert.equal(metaGets(gets, `corp/linked/_manifests/sha256/${image.manifestDigest.slice(7)}`), 1, gets.join('\n'));

  const deleted = await request(byDigest(first), { method: 'DELETE', headers: { authorization: ALICE } });
  await deleted.body.dump();
  assert.equal(deleted.statusCode, 202);
  assert.equal((await get(byDigest(first), { authorization: ALICE })).status, 404, 'gone at once where it was deleted');
  // Within the notice interval, with room for a loaded machine: a cache that never forgot would time out.
  await pollUntil(async () => (await get(byDigest(second), { authorization: ALICE })).status === 404, {
    timeoutMs: NOTICE_CHECK_MS + 5000,
    intervalMs: 50,
    what: 'the other replica to stop serving the deleted manifest',
  });
});
