// gc's roots: a manifest record whose file is missing is dangling; one it cannot read for any
// other reason stops gc before it deletes anything (its layers would follow otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { collectGarbage } from '../../src/lifecycle/gc.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { makeTempDir } from '../harness/tmp.js';
import { fsStorage } from '../support/stores.js';

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
