import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import type { RegistryError } from '../../src/protocol/errors.js';
import { paginate } from '../../src/protocol/pagination.js';
import type { PrivateContent } from '../../src/coordination/ports.js';
import { LocalRegistry } from '../../src/registry/local-registry.js';
import { UploadSessions } from '../../src/registry/uploads.js';
import { ManifestStore } from '../../src/storage/manifest-store.js';
import { fsStorage } from '../support/stores.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function setUp(idleMs = 60_000) {
  const { root, blobs, metadata, privateContent } = await fsStorage();
  let clock = 0;
  const uploads = new UploadSessions(blobs, idleMs, { now: () => clock, beforePublish: (digest, size) => privateContent.add(digest, size) });
  const registry = new LocalRegistry(blobs, new ManifestStore(blobs, metadata), metadata, privateContent);
  return { root, blobs, privateContent, uploads, registry, advance: (ms: number) => (clock += ms) };
}

type Env = Awaited<ReturnType<typeof setUp>>;

async function upload(env: Pick<Env, 'uploads' | 'registry'>, repository: string, bytes: Buffer): Promise<string> {
  const session = await env.uploads.start(repository);
  await env.uploads.append(repository, session.id, Readable.from([bytes]));
  const { digest, size } = await env.uploads.finish(repository, session.id, digestOf(bytes));
  await env.registry.linkBlob(repository, digest, size);
  return digest.text;
}

function imageManifest(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}): Buffer {
  const descriptor = (bytes: Buffer, mediaType: string) => ({ mediaType, digest: digestOf(bytes), size: bytes.byteLength });
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(config, 'application/vnd.oci.image.config.v1+json'),
      layers: layers.map((l) => descriptor(l, 'application/vnd.oci.image.layer.v1.tar+gzip')),
      ...extra,
    }),
  );
}

test('chunked upload in order, status offset, digest verified, then the manifest and tag', async () => {
  const env = await setUp();
  const layer = randomBytes(100_000);
  const session = await env.uploads.start('corp/app');
  assert.equal(env.uploads.status('corp/app', session.id).offset, 0);
  await env.uploads.append('corp/app', session.id, Readable.from([layer.subarray(0, 60_000)]), { start: 0, end: 59_999 });
  assert.equal(env.uploads.status('corp/app', session.id).offset, 60_000);
  await assert.rejects(
    env.uploads.append('corp/app', session.id, Readable.from([layer.subarray(0, 10)]), { start: 0, end: 9 }),
    (e: RegistryError) => e.status === 416 && e.headers.range === '0-59999',
  );
  await env.uploads.append('corp/app', session.id, Readable.from([layer.subarray(60_000)]), { start: 60_000, end: 99_999 });
  const { digest, size } = await env.uploads.finish('corp/app', session.id, digestOf(layer));
  assert.equal(size, layer.byteLength);
  await env.registry.linkBlob('corp/app', digest, size);
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  await upload(env, 'corp/app', config);

  const manifest = imageManifest(config, [layer]);
  const put = await env.registry.putManifest('corp/app', 'v1', manifest, OCI_MANIFEST);
  assert.equal(put.digest, digestOf(manifest));
  const got = await env.registry.getManifest('corp/app', 'v1');
  assert.ok(got.bytes.equals(manifest));
  assert.equal(got.mediaType, OCI_MANIFEST);
  assert.ok((await env.privateContent.has(digest)) && (await env.privateContent.has(put.digest)), 'pushed content is private');
  assert.ok((await buffer((await env.registry.openBlob('corp/app', digest.text)).stream())).equals(layer));
  assert.deepEqual(await env.registry.listTags('corp/app'), ['v1']);
  assert.deepEqual(await env.registry.catalog(), ['corp/app']);
});

test('a wrong digest on finish is DIGEST_INVALID and stores nothing; unknown sessions are BLOB_UPLOAD_UNKNOWN', async () => {
  const env = await setUp();
  const session = await env.uploads.start('corp/app');
  await env.uploads.append('corp/app', session.id, Readable.from([Buffer.from('abc')]));
  await assert.rejects(env.uploads.finish('corp/app', session.id, digestOf(Buffer.from('abd'))), (e: RegistryError) => e.code === 'DIGEST_INVALID');
  assert.equal(await env.blobs.stat(parseDigest(digestOf(Buffer.from('abc')))), undefined);
  assert.throws(() => env.uploads.status('corp/app', session.id), (e: RegistryError) => e.code === 'BLOB_UPLOAD_UNKNOWN');
  const other = await env.uploads.start('corp/app');
  assert.throws(() => env.uploads.status('corp/other', other.id), (e: RegistryError) => e.code === 'BLOB_UPLOAD_UNKNOWN', 'sessions belong to their repository');
  await env.uploads.cancel('corp/app', other.id);
  assert.throws(() => env.uploads.status('corp/app', other.id), (e: RegistryError) => e.code === 'BLOB_UPLOAD_UNKNOWN');
});

test('idle uploads are swept and their temp files removed', async () => {
  const env = await setUp(1000);
  const session = await env.uploads.start('corp/app');
  await env.uploads.append('corp/app', session.id, Readable.from([randomBytes(1000)]));
  assert.equal((await readdir(path.join(env.root, 'tmp'))).length, 1);
  env.advance(500);
  assert.equal(await env.uploads.sweep(), 0);
  env.advance(1000);
  assert.equal(await env.uploads.sweep(), 1);
  assert.deepEqual(await readdir(path.join(env.root, 'tmp')), []);
  assert.throws(() => env.uploads.status('corp/app', session.id), (e: RegistryError) => e.code === 'BLOB_UPLOAD_UNKNOWN');
  await env.uploads.close();
});

test('manifests must reference blobs and child manifests the repository has', async () => {
  const env = await setUp();
  const config = Buffer.from('{}');
  const layer = randomBytes(100);
  await upload(env, 'corp/app', config);
  await assert.rejects(env.registry.putManifest('corp/app', 'v1', imageManifest(config, [layer]), OCI_MANIFEST), (e: RegistryError) => e.code === 'MANIFEST_BLOB_UNKNOWN' && e.status === 400);
  // The layer exists in another repository only: still unknown here.
  await upload(env, 'corp/other', layer);
  await assert.rejects(env.registry.putManifest('corp/app', 'v1', imageManifest(config, [layer]), OCI_MANIFEST), (e: RegistryError) => e.code === 'MANIFEST_BLOB_UNKNOWN');
  // An automatic mount (no `from`) skips repositories the client may not read.
  assert.equal(await env.registry.mount('corp/app', digestOf(layer), undefined, (source) => Promise.resolve(source !== 'corp/other')), false);
  assert.equal(await env.registry.mount('corp/app', digestOf(layer), 'corp/other', () => Promise.resolve(true)), true);
  const image = await env.registry.putManifest('corp/app', 'v1', imageManifest(config, [layer]), OCI_MANIFEST);

  const index = (children: string[]) =>
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((digest) => ({ mediaType: OCI_MANIFEST, digest, size: 1 })) }));
  await assert.rejects(env.registry.putManifest('corp/app', 'multi', index([digestOf(Buffer.from('nope'))]), OCI_INDEX), (e: RegistryError) => e.code === 'MANIFEST_BLOB_UNKNOWN');
  const put = await env.registry.putManifest('corp/app', 'multi', index([image.digest]), OCI_INDEX);
  assert.equal((await env.registry.getManifest('corp/app', put.digest)).mediaType, OCI_INDEX);
});

test('bad manifests: invalid JSON, type mismatch, oversize, digest reference mismatch', async () => {
  const env = await setUp();
  await assert.rejects(env.registry.putManifest('corp/app', 'v1', Buffer.from('{'), OCI_MANIFEST), (e: RegistryError) => e.code === 'MANIFEST_INVALID');
  await assert.rejects(
    env.registry.putManifest('corp/app', 'v1', Buffer.from(JSON.stringify({ mediaType: OCI_INDEX, manifests: [] })), OCI_MANIFEST),
    (e: RegistryError) => e.code === 'MANIFEST_INVALID',
  );
  await assert.rejects(env.registry.putManifest('corp/app', 'v1', Buffer.alloc(4 * 1024 * 1024 + 1, 32), OCI_MANIFEST), (e: RegistryError) => e.code === 'MANIFEST_INVALID' && e.status === 413);
  const empty = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
  await assert.rejects(env.registry.putManifest('corp/app', digestOf(Buffer.from('x')), empty, OCI_INDEX), (e: RegistryError) => e.code === 'DIGEST_INVALID');
  const ok = await env.registry.putManifest('corp/app', digestOf(empty), empty, OCI_INDEX);
  assert.equal(ok.digest, digestOf(empty));
  await assert.rejects(env.registry.getManifest('corp/app', 'nope'), (e: RegistryError) => e.code === 'MANIFEST_UNKNOWN');
  await assert.rejects(env.registry.getManifest('corp/other', ok.digest), (e: RegistryError) => e.code === 'MANIFEST_UNKNOWN', 'not linked in corp/other');
});

test('referrers: subject recorded, artifactType filter, removed with the manifest; deletes', async () => {
  const env = await setUp();
  const config = Buffer.from('{}');
  await upload(env, 'corp/app', config);
  const subject = await env.registry.putManifest('corp/app', 'v1', imageManifest(config, []), OCI_MANIFEST);
  const subjectDescriptor = { mediaType: OCI_MANIFEST, digest: subject.digest, size: 10 };
  const sbom = imageManifest(config, [], { artifactType: 'application/spdx+json', subject: subjectDescriptor, annotations: { kind: 'sbom' } });
  const sig = imageManifest(config, [], { artifactType: 'application/vnd.dev.cosign', subject: subjectDescriptor });
  const sbomPut = await env.registry.putManifest('corp/app', digestOf(sbom), sbom, OCI_MANIFEST);
  assert.equal(sbomPut.subject, subject.digest);
  await env.registry.putManifest('corp/app', digestOf(sig), sig, OCI_MANIFEST);

  const all = await env.registry.referrers('corp/app', subject.digest, undefined);
  assert.equal(all.length, 2);
  const filtered = await env.registry.referrers('corp/app', subject.digest, 'application/spdx+json');
  assert.deepEqual(filtered, [{ mediaType: OCI_MANIFEST, digest: digestOf(sbom), size: sbom.byteLength, artifactType: 'application/spdx+json', annotations: { kind: 'sbom' } }]);

  await env.registry.deleteManifest('corp/app', digestOf(sbom));
  assert.equal((await env.registry.referrers('corp/app', subject.digest, undefined)).length, 1);
  await env.registry.deleteManifest('corp/app', 'v1');
  assert.deepEqual(await env.registry.listTags('corp/app'), []);
  await assert.rejects(env.registry.deleteManifest('corp/app', 'v1'), (e: RegistryError) => e.code === 'MANIFEST_UNKNOWN');
  await env.registry.deleteBlob('corp/app', digestOf(config));
  await assert.rejects(env.registry.statBlob('corp/app', digestOf(config)), (e: RegistryError) => e.code === 'BLOB_UNKNOWN');
});

test('pagination returns n items after last, and says whether more follow', () => {
  const all = ['a', 'b', 'c', 'd'];
  assert.deepEqual(paginate(all, 2, undefined), { items: ['a', 'b'], next: 'b' });
  assert.deepEqual(paginate(all, 2, 'b'), { items: ['c', 'd'], next: undefined });
  assert.deepEqual(paginate(all, undefined, 'a'), { items: ['b', 'c', 'd'], next: undefined });
  assert.deepEqual(paginate(all, 0, undefined), { items: [], next: undefined });
});

test('a push marks its content private before the bytes can be read, and publishes nothing if the mark fails', async () => {
  const { blobs, metadata, privateContent } = await fsStorage();
  const visibleWhenMarked: Array<{ digest: string; visible: boolean }> = [];
  let failMarks = false;
  // The real index, with every mark observed: was the content readable when it was marked?
  const marking: PrivateContent = {
    add: async (digest, size) => {
      if (failMarks) throw new Error('metadata store unavailable');
      visibleWhenMarked.push({ digest: digest.text, visible: (await blobs.stat(digest)) !== undefined });
      await privateContent.add(digest, size);
    },
    has: (digest) => privateContent.has(digest),
    remove: (digest) => privateContent.remove(digest),
    list: () => privateContent.list(),
    stats: () => privateContent.stats(),
  };
  const uploads = new UploadSessions(blobs, 60_000, { beforePublish: (digest, size) => marking.add(digest, size) });
  const registry = new LocalRegistry(blobs, new ManifestStore(blobs, metadata), metadata, marking);
  const env = { uploads, registry };
  const layer = randomBytes(5000);
  const config = Buffer.from('{"os":"linux"}');
  await upload(env, 'corp/app', layer);
  await upload(env, 'corp/app', config);
  const manifest = imageManifest(config, [layer]);
  await registry.putManifest('corp/app', 'v1', manifest, OCI_MANIFEST);
  for (const digest of [digestOf(layer), digestOf(config), digestOf(manifest)]) {
    const first = visibleWhenMarked.find((m) => m.digest === digest);
    assert.ok(first, `${digest} was marked`);
    assert.equal(first.visible, false, `${digest} was marked before it was readable`);
  }

  failMarks = true;
  const secret = randomBytes(1000);
  const session = await uploads.start('corp/app');
  await uploads.append('corp/app', session.id, Readable.from([secret]));
  await assert.rejects(uploads.finish('corp/app', session.id, digestOf(secret)), /metadata store unavailable/);
  assert.equal(await blobs.stat(parseDigest(digestOf(secret))), undefined, 'unmarked bytes were not published');
  const other = imageManifest(config, [layer], { annotations: { a: 'b' } });
  await assert.rejects(registry.putManifest('corp/app', 'v2', other, OCI_MANIFEST), /metadata store unavailable/);
  assert.equal(await blobs.stat(parseDigest(digestOf(other))), undefined);
});
