// Metadata reads on S3 (storage/s3-record-cache.ts), counted as the GETs Longshore's S3 client
// sends: write-once records (manifest records, completed private v1 images) are read from the
// bucket once per process; mutable ones (tags) every time, so a second replica on the same
// bucket sees a moved tag at once.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { request } from 'undici';
import type { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { pushDockerImage, type GeneratedImage } from '../harness/images.js';
import { MANIFEST_ACCEPT } from '../harness/registry-client.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { basic, V1Client } from '../harness/v1-client.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

const ALICE = basic('alice', 'wonderland');

let swift: SwiftHandle;
let upstream: RegistryHandle;
let work: TempDir;
let replicas: InProcessLongshore[] = [];
let mirrored: GeneratedImage;

let counters = 0;

/** The keys of the GETs one replica sends to S3 from now until the end of test `t`. */
function countGets(t: TestContext, replica: InProcessLongshore): string[] {
  const keys: string[] = [];
  const stack = (replica.server.services.blobs as S3BlobStore).client.middlewareStack;
  const name = `testCountGets${++counters}`;
  t.after(() => stack.remove(name));
  stack.add(
    (next, context) => (args) => {
      const input = args.input as { Key?: string };
      if (context.commandName === 'GetObjectCommand' && input.Key !== undefined) keys.push(input.Key);
      return next(args);
    },
    { step: 'initialize', name },
  );
  return keys;
}

before(async () => {
  work = await makeTempDir('s3-record-cache');
  [swift, upstream] = await Promise.all([startSwift(), startRegistry()]);
  mirrored = await pushDockerImage(upstream.url, 'apps/web', 'v1', [1000]);
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const storage = await s3StorageConfig(swift);
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
