// kill -9 at random points of private pushes (issue 14, point 6): whatever instant the process
// dies at, a pushed digest is never readable through a mirrored name afterwards. Content is
// marked private before it becomes visible, so a crash leaves it invisible or marked, and a
// marked digest is served under a mirrored name only if that upstream confirms it has it
// (the upstream here never has these). The window the old order left open (bytes published,
// mark not yet written) is about a millisecond wide, and two runs of this test on the old
// order did not land in it: test/unit/local-registry.test.ts is the test that fails on the old
// order (it observes every mark); this one samples real crashes across whole pushes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import { sha256Digest } from '../harness/digests.js';
import { startLongshore } from '../harness/longshore.js';
import { MEDIA_TYPES, putManifest, uploadBlob } from '../harness/registry-client.js';
import { startRegistry } from '../harness/registry.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { writeHtpasswd } from '../support/users.js';

const RUNS = 24;
const AUTH = { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };

interface PushContent {
  blobs: Array<{ digest: string; bytes: Buffer }>;
  manifest: { digest: string; bytes: Buffer };
}

function newImage(): PushContent {
  const layers = [randomBytes(512 * 1024), randomBytes(64 * 1024)];
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') }));
  const blobs = [...layers, config].map((bytes) => ({ digest: sha256Digest(bytes), bytes }));
  const descriptor = (bytes: Buffer, mediaType: string) => ({ mediaType, digest: sha256Digest(bytes), size: bytes.byteLength });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: descriptor(config, 'application/vnd.oci.image.config.v1+json'),
      layers: layers.map((l) => descriptor(l, 'application/vnd.oci.image.layer.v1.tar+gzip')),
    }),
  );
  return { blobs, manifest: { digest: sha256Digest(manifest), bytes: manifest } };
}

async function push(url: string, repository: string, image: PushContent): Promise<void> {
  for (const blob of image.blobs) await uploadBlob(url, repository, blob.digest, blob.bytes, AUTH);
  await putManifest(url, repository, 'v1', image.manifest.bytes, MEDIA_TYPES.ociManifest, AUTH);
}

async function status(url: string, headers: Record<string, string> = {}): Promise<number> {
  const response = await request(url, { headers: { accept: MEDIA_TYPES.ociManifest, ...headers } });
  await response.body.dump();
  return response.statusCode;
}

test('kill -9 at random points of private pushes never leaves private bytes readable through a mirrored name', { timeout: 600_000 }, async (t) => {
  const work = await makeTempDir('push-crash');
  onCleanup(t, () => work.remove());
  const upstream = await startRegistry();
  onCleanup(t, () => upstream.dispose());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startLongshore(
    { private: { namespaces: ['corp'] }, auth: { htpasswd }, upstreams: [{ name: 'hub', url: upstream.url, default: true }] },
    { dataDir: path.join(work.path, 'data') },
  );
  onCleanup(t, () => mirror.dispose());

  // One push to completion: it must work at all, and it gives the time span to kill within.
  const complete = newImage();
  const started = Date.now();
  await push(mirror.url, 'corp/complete', complete);
  const pushMs = Math.max(50, Date.now() - started);
  const everyImage = [complete];

  let killedMidPush = 0;
  for (let run = 0; run < RUNS; run++) {
    const image = newImage();
    everyImage.push(image);
    const pushing = push(mirror.url, `corp/crash${run}`, image).then(
      () => 'done',
      () => 'broken',
    );
    await new Promise((resolve) => setTimeout(resolve, Math.random() * pushMs * 1.2));
    await mirror.kill9();
    if ((await pushing) === 'broken') killedMidPush += 1;
    await mirror.start();

    // Through a mirrored name, no pushed digest of any run so far answers with content.
    for (const pushed of everyImage) {
      for (const blob of pushed.blobs) {
        assert.notEqual(await status(`${mirror.url}/v2/apps/probe/blobs/${blob.digest}`), 200, `run ${run}: blob ${blob.digest} leaked through a mirrored name`);
      }
      assert.notEqual(await status(`${mirror.url}/v2/apps/probe/manifests/${pushed.manifest.digest}`), 200, `run ${run}: manifest ${pushed.manifest.digest} leaked`);
    }
  }
  assert.ok(killedMidPush >= RUNS / 4, `at least a quarter of the kills land mid-push (${killedMidPush} of ${RUNS})`);

  // The completed push survived every crash, through its own name.
  assert.equal(await status(`${mirror.url}/v2/corp/complete/manifests/v1`, AUTH), 200);
  for (const blob of complete.blobs) assert.equal(await status(`${mirror.url}/v2/corp/complete/blobs/${blob.digest}`, AUTH), 200);
});
