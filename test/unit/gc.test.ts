// gc's roots: a manifest record whose file is missing is dangling; one it cannot read for any
// other reason stops gc before it deletes anything (its layers would follow otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { collectGarbage } from '../../src/lifecycle/gc.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { LocalRegistry } from '../../src/registry/local-registry.js';
import { UploadSessions } from '../../src/registry/uploads.js';
import { ManifestStore } from '../../src/storage/manifest-store.js';
import { makeTempDir } from '../harness/tmp.js';
import { fsStorage } from '../support/stores.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

test('gc: an unreadable manifest stops gc and nothing is deleted; a missing one is dropped', async (t) => {
  const dir = await makeTempDir('gc');
  t.after(() => dir.remove());
  const targets = await fsStorage(dir.path);
  const { blobs, metadata } = targets;
  const old = { graceMs: 0, now: Date.now() + 60_000 };

  // A "manifest" over the 4 MiB read limit, and an unreferenced layer older than the grace.
  const huge = randomBytes(5 * 1024 * 1024);
  const layer = randomBytes(1000);
  await blobs.put(parseDigest(digestOf(huge)), huge);
  await blobs.put(parseDigest(digestOf(layer)), layer);
  const hugeDigest = parseDigest(digestOf(huge));
  await metadata.put(`manifests/sha256/${hugeDigest.hex}`, { mediaType: 'application/vnd.oci.image.manifest.v1+json' });
  await assert.rejects(collectGarbage(targets, { dryRun: false, ...old }), /gc stopped: cannot read manifest/);
  assert.ok(await blobs.stat(hugeDigest), 'the manifest blob is kept');
  assert.ok(await blobs.stat(parseDigest(digestOf(layer))), 'so is everything else');
  assert.ok(await metadata.get(`manifests/sha256/${hugeDigest.hex}`), 'and its record');

  // A record whose file is gone is dangling: gc drops it and goes on.
  await blobs.delete(hugeDigest);
  const report = await collectGarbage(targets, { dryRun: false, ...old });
  assert.equal(report.removedRecords, 1);
  assert.equal(await metadata.get(`manifests/sha256/${hugeDigest.hex}`), undefined);
  assert.deepEqual(report.removedBlobs.map((b) => b.digest), [digestOf(layer)]);
});

test('gc: private blobs no repository links any more are deleted with their marks; linked ones stay', async (t) => {
  const dir = await makeTempDir('gc-private');
  t.after(() => dir.remove());
  const storage = await fsStorage(dir.path);
  const { blobs, metadata, privateContent } = storage;
  const uploads = new UploadSessions(blobs, 60_000, { beforePublish: (digest, size) => privateContent.add(digest, size) });
  const registry = new LocalRegistry(blobs, new ManifestStore(blobs, metadata), metadata, privateContent);
  const push = async (repository: string, bytes: Buffer) => {
    const session = await uploads.start(repository);
    await uploads.append(repository, session.id, Readable.from([bytes]));
    const { digest, size } = await uploads.finish(repository, session.id, digestOf(bytes));
    await registry.linkBlob(repository, digest, size);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digest.text, size };
  };
  const secret = randomBytes(3000);
  const shared = randomBytes(2000);
  const config = Buffer.from('{"os":"linux"}');
  const layers = [await push('corp/oops', secret), await push('corp/oops', shared), await push('corp/keep', shared)];
  const configDescriptor = await push('corp/oops', config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDescriptor, layers: layers.slice(0, 2) }));
  const { digest: manifestDigest } = await registry.putManifest('corp/oops', 'v1', manifest, OCI_MANIFEST);
  await uploads.close();

  const later = { graceMs: 60_000, now: Date.now() + 120_000 };
  const before = await collectGarbage(storage, { dryRun: false, ...later });
  assert.deepEqual(before.removedBlobs, [], 'everything is linked');

  // The mistake is deleted: manifest, then every blob of corp/oops.
  await registry.deleteManifest('corp/oops', manifestDigest);
  for (const bytes of [secret, shared, config]) await registry.deleteBlob('corp/oops', digestOf(bytes));
  const young = await collectGarbage(storage, { dryRun: false, graceMs: 60 * 60_000 });
  assert.deepEqual(young.removedBlobs, [], 'within the grace period nothing goes');

  const dry = await collectGarbage(storage, { dryRun: true, ...later });
  const expected = [digestOf(secret), digestOf(config), manifestDigest].sort();
  assert.deepEqual(dry.removedBlobs.map((b) => b.digest).sort(), expected);
  assert.ok(dry.removedBlobs.every((b) => b.private));
  assert.ok(await blobs.stat(parseDigest(digestOf(secret))), 'a dry run deletes nothing');

  const real = await collectGarbage(storage, { dryRun: false, ...later });
  assert.deepEqual(real.removedBlobs.map((b) => b.digest).sort(), expected);
  for (const digest of expected) {
    assert.equal(await blobs.stat(parseDigest(digest)), undefined, `${digest} is gone`);
    assert.equal(await privateContent.has(digest), false, `${digest} is no longer marked`);
  }
  assert.equal(await metadata.get(`manifests/sha256/${parseDigest(manifestDigest).hex}`), undefined, 'its manifest record too');
  assert.ok(await blobs.stat(parseDigest(digestOf(shared))), 'a blob corp/keep still links stays');
  assert.equal(await privateContent.has(digestOf(shared)), true);
  const restarted = new InProcessPrivateContent(metadata);
  await restarted.load();
  assert.equal(await restarted.has(digestOf(secret)), false, 'the mark is gone from storage, not only from memory');
});
