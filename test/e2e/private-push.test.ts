// Private images beside mirrored ones, with skopeo as the client: a multi-arch push with
// credentials, pulls by tag and digest, a refused push into a mirrored namespace, and two
// real upstreams routed by containerd's ?ns= and by name prefix.
import { test } from 'node:test';
import { request } from 'undici';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { sha256Digest } from '../harness/digests.js';
import { onCleanup } from '../support/cleanup.js';
import { makeOciIndexLayout, pushDockerImage } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { fetchManifest } from '../harness/registry-client.js';
import { startRegistry } from '../harness/registry.js';
import { skopeo } from '../harness/skopeo.js';
import { makeTempDir } from '../harness/tmp.js';
import { writeHtpasswd } from '../support/users.js';

test('skopeo pushes a multi-arch image into a private namespace and pulls it back; mirrored namespaces refuse pushes; two upstreams route by ?ns= and prefix', async (t) => {
  const work = await makeTempDir('private-push');
  onCleanup(t, () => work.remove());
  const upstreamA = await startRegistry();
  onCleanup(t, () => upstreamA.dispose());
  const upstreamB = await startRegistry();
  onCleanup(t, () => upstreamB.dispose());
  const onlyInA = await pushDockerImage(upstreamA.url, 'apps/alpha', 'v1', [2000]);
  const onlyInB = await pushDockerImage(upstreamB.url, 'apps/beta', 'v1', [2000]);

  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startLongshore({
    private: { namespaces: ['corp'] },
    auth: { htpasswd },
    upstreams: [
      { name: 'a', url: upstreamA.url, hosts: ['a.test'], default: true },
      { name: 'b', url: upstreamB.url, hosts: ['b.test'] },
    ],
  });
  onCleanup(t, () => mirror.dispose());
  const host = new URL(mirror.url).host;

  const layout = path.join(work.path, 'layout');
  const index = await makeOciIndexLayout(layout, 'multi');
  await skopeo(['login', '--tls-verify=false', '-u', 'alice', '-p', 'wonderland', host]);
  await skopeo(['copy', '--all', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `oci:${layout}:multi`, `docker://${host}/corp/multi:v1`]);

  for (const reference of [`corp/multi:v1`, `corp/multi@${index.indexDigest}`]) {
    const out = path.join(work.path, `pull-${reference.replace(/[/:@]/g, '_')}`);
    await skopeo(['copy', '--all', '--src-tls-verify=false', '--src-creds', 'alice:wonderland', `docker://${host}/${reference}`, `dir:${out}`]);
    assert.equal(sha256Digest(await readFile(path.join(out, 'manifest.json'))), index.indexDigest, reference);
    for (const child of index.manifests) {
      const childFile = path.join(out, `${child.manifestDigest.slice('sha256:'.length)}.manifest.json`);
      assert.equal(sha256Digest(await readFile(childFile)), child.manifestDigest);
    }
  }
  // The store is shared, but a private digest is not readable through a mirrored name.
  const privateChild = index.manifests[0]!;
  for (const url of [
    `${mirror.url}/v2/apps/alpha/blobs/${privateChild.layers[0]!.digest}`,
    `${mirror.url}/v2/apps/alpha/manifests/${privateChild.manifestDigest}`,
    `${mirror.url}/v2/apps/alpha/manifests/${index.indexDigest}`,
  ]) {
    for (const method of ['GET', 'HEAD'] as const) {
      const response = await request(url, { method, headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' } });
      await response.body.dump();
      assert.equal(response.statusCode, 404, `${method} ${url}`);
    }
  }
  await assert.rejects(
    skopeo(['inspect', '--raw', '--tls-verify=false', '--no-creds', `docker://${host}/corp/multi:v1`]),
    /unauthorized|authentication required/i,
    'private content needs credentials',
  );

  await assert.rejects(
    skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `oci:${layout}:multi`, `docker://${host}/apps/alpha:pushed`]),
    /denied|read-only/i,
    'a push into a mirrored namespace fails with DENIED',
  );

  const viaDefault = await fetchManifest(mirror.url, 'apps/alpha', 'v1');
  assert.equal(viaDefault.digest, onlyInA.manifestDigest);
  assert.equal((await fetchManifest(mirror.url, 'apps/alpha', 'v1?ns=a.test')).digest, onlyInA.manifestDigest);
  assert.equal((await fetchManifest(mirror.url, 'apps/beta', 'v1?ns=b.test')).digest, onlyInB.manifestDigest);
  assert.equal((await fetchManifest(mirror.url, 'b.test/apps/beta', 'v1')).digest, onlyInB.manifestDigest);
  assert.equal((await fetchManifest(mirror.url, 'b/apps/beta', 'v1')).digest, onlyInB.manifestDigest);
  assert.equal((await fetchManifest(mirror.url, 'apps/beta', 'v1')).status, 404, 'the default upstream does not have it');
  const out = path.join(work.path, 'pull-b');
  await skopeo(['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${host}/b.test/apps/beta:v1`, `dir:${out}`]);
  assert.equal(sha256Digest(await readFile(path.join(out, 'manifest.json'))), onlyInB.manifestDigest, 'anonymous pulls of mirrored content still work');
});
