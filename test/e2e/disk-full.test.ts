// A full cache disk (issue 14, point 10), on a real small tmpfs: misses still reach the client
// (streamed through without caching), tags and manifests do not 500, /readyz says 503 and
// leaves no probe file, and everything recovers by itself once space frees. A read-only data
// directory at start-up is one clear line naming the path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { pushDockerImage, type GeneratedImage } from '../harness/images.js';
import { startRegistry } from '../harness/registry.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { runCli } from '../support/cli.js';
import { writeHtpasswd } from '../support/users.js';
import { sha256Digest } from '../harness/digests.js';
import { rawRequest } from '../support/raw-http.js';
import { imageId } from '../support/v1-images.js';

const ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';

/** A small tmpfs at a fresh directory, unmounted by the test's cleanup. Needs root (mount). */
async function smallFilesystem(t: test.TestContext, size: string, options = ''): Promise<string> {
  if (process.getuid?.() !== 0) {
    throw new Error('this test mounts a small tmpfs to fill it and must run as root (mount -t tmpfs); run the tests as root, e.g. in the dev container');
  }
  const work = await makeTempDir('disk-full');
  onCleanup(t, () => work.remove());
  const mountPoint = path.join(work.path, 'fs');
  await mkdir(mountPoint);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${options ? `,${options}` : ''}`, 'tmpfs', mountPoint]);
  onCleanup(t, () => execFileSync('umount', ['-l', mountPoint]));
  return mountPoint;
}

/** Writes a file until the filesystem is full; returns its path (delete it to free the space). */
async function fill(dir: string): Promise<string> {
  const filler = path.join(dir, 'filler');
  const handle = await open(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) await handle.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await handle.close();
  }
  // Smaller writes take the last partial pages too.
  const tail = await open(filler, 'a');
  try {
    for (;;) await tail.write(Buffer.alloc(512, 1));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await tail.close();
  }
  return filler;
}

async function storedBlobs(mirror: InProcessLongshore): Promise<string[]> {
  const found: string[] = [];
  const root = path.join(mirror.dataDir, 'blobs', 'sha256');
  for (const prefix of await readdir(root).catch(() => [])) found.push(...(await readdir(path.join(root, prefix))));
  return found;
}

async function get(url: string, method: 'GET' | 'HEAD' = 'GET'): Promise<{ status: number; body: Buffer; error?: Error }> {
  const response = await request(url, { method, headers: { accept: ACCEPT } });
  try {
    return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()) };
  } catch (error) {
    return { status: response.statusCode, body: Buffer.alloc(0), error: error as Error };
  }
}

async function pullImage(mirror: InProcessLongshore, image: GeneratedImage): Promise<void> {
  const tags = await get(`${mirror.url}/v2/library/app/tags/list`);
  assert.equal(tags.status, 200, `tags: ${tags.body.toString()}`);
  assert.deepEqual((JSON.parse(tags.body.toString()) as { tags: string[] }).tags, ['v1']);
  assert.equal((await get(`${mirror.url}/v2/library/app/manifests/v1`, 'HEAD')).status, 200);
  const manifest = await get(`${mirror.url}/v2/library/app/manifests/v1`);
  assert.equal(manifest.status, 200, `manifest: ${manifest.body.toString()}`);
  assert.ok(manifest.body.equals(image.manifestBytes));
  const byDigest = await get(`${mirror.url}/v2/library/app/manifests/${image.manifestDigest}`);
  assert.equal(byDigest.status, 200);
  const config = await get(`${mirror.url}/v2/library/app/blobs/${image.configDigest}`);
  assert.equal(config.status, 200, `config: ${config.body.toString()}`);
  assert.ok(config.body.equals(image.configBytes));
  for (const layer of image.layers) {
    const blob = await get(`${mirror.url}/v2/library/app/blobs/${layer.digest}`);
    assert.equal(blob.status, 200, `layer: ${blob.body.toString().slice(0, 300)}`);
    assert.equal(blob.error, undefined, `the layer's body broke off: ${blob.error?.message}`);
    assert.equal(blob.body.byteLength, layer.size);
  }
}

test('with the cache disk full, pulls still work (streamed through, not cached), /readyz is 503 without leftovers, and all recovers once space frees', async (t) => {
  const upstream = await startRegistry();
  onCleanup(t, () => upstream.dispose());
  const image = await pushDockerImage(upstream.url, 'library/app', 'v1', [1_500_000, 700_000]);
  const dataDir = await smallFilesystem(t, '8m');
  const users = await makeTempDir('disk-full-users');
  onCleanup(t, () => users.remove());
  const htpasswd = path.join(users.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startInProcess({ upstreams: [{ name: 'hub', url: upstream.url, default: true }], private: { namespaces: ['corp'] }, auth: { htpasswd } }, dataDir);
  onCleanup(t, () => mirror.stop());
  const filler = await fill(dataDir);

  await pullImage(mirror, image);
  // Twice: the second pull of an uncached blob is a miss again, not a broken cache entry.
  await pullImage(mirror, image);
  assert.deepEqual(await storedBlobs(mirror), [], 'nothing half-written was kept');

  // A push cannot be stored: a 507 in the OCI envelope, not a 500, and its session is gone.
  // (Longer bodies that fail mid-way: the test below.)
  const layer = Buffer.alloc(1000, 7);
  const push = await request(`${mirror.url}/v2/corp/app/blobs/uploads/?digest=${sha256Digest(layer)}`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}`, 'content-type': 'application/octet-stream' },
    body: layer,
  });
  assert.equal(push.statusCode, 507);
  assert.equal(((await push.body.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');

  const ready = await get(`${mirror.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.match(ready.body.toString(), /ENOSPC|no space/i);
  assert.deepEqual(await readdir(path.join(dataDir, 'tmp')), [], '/readyz and the misses left nothing in tmp/');
  const serverErrors = mirror.requests().filter((line) => (line.status as number) >= 500 && line.path !== '/readyz');
  assert.deepEqual(serverErrors.filter((line) => line.status !== 507), []);
  assert.deepEqual(mirror.logs.filter((line) => (line.level as number) >= 50), [], 'a full disk is not a server error');
  const misses = mirror.requests().filter((line) => line.cache === 'miss' && String(line.path).includes('/blobs/'));
  assert.equal(misses.length, 2 * (image.layers.length + 1), 'every blob request was a miss: nothing was cached');

  // Space frees: no restart, no operator action.
  await rm(filler);
  assert.equal((await get(`${mirror.url}/readyz`)).status, 200);
  await pullImage(mirror, image);
  const stored = await storedBlobs(mirror);
  for (const layer of image.layers) assert.ok(stored.includes(layer.digest.slice('sha256:'.length)), `layer ${layer.digest} is cached now`);
  const hit = await get(`${mirror.url}/v2/library/app/blobs/${image.layers[0]?.digest ?? ''}`);
  assert.equal(hit.status, 200);
  assert.equal(mirror.requests().at(-1)?.cache, 'hit');
});

test('a read-only data directory at start-up is one clear line naming the path, not a stack trace', async (t) => {
  const readOnly = await smallFilesystem(t, '1m', 'ro');
  const work = await makeTempDir('disk-full-config');
  onCleanup(t, () => work.remove());
  // The directory itself, and an existing data directory whose blobs/ sits on a read-only mount.
  const writableRoot = path.join(work.path, 'data');
  await mkdir(path.join(writableRoot, 'blobs'), { recursive: true });
  execFileSync('mount', ['--bind', '-o', 'ro', readOnly, path.join(writableRoot, 'blobs')]);
  onCleanup(t, () => execFileSync('umount', ['-l', path.join(writableRoot, 'blobs')]));
  for (const [what, dataDir, named] of [
    ['read-only storage.path', readOnly, readOnly],
    ['read-only blobs/ inside storage.path', writableRoot, path.join(writableRoot, 'blobs')],
  ] as const) {
    const file = path.join(work.path, `${what.replace(/[^a-z]+/g, '-')}.json`);
    await writeFile(file, JSON.stringify({ listen: '127.0.0.1:0', storage: { path: dataDir } }));
    const result = await runCli(['serve', '--config', file], 60_000);
    assert.equal(result.code, 1, `${what}: exit code`);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `${what}: one line, got:\n${result.stderr}`);
    assert.match(lines[0] ?? '', /^longshore: cannot start: /, what);
    assert.ok(lines[0]?.includes(named), `${what}: names ${named}: ${lines[0]}`);
  }
});

test('a push that fails mid-body on a full disk answers 507 in its API format after the body, not a reset connection (PATCH, PUT with body, v1 layer PUT)', async (t) => {
  const dataDir = await smallFilesystem(t, '8m');
  const users = await makeTempDir('disk-full-push-users');
  onCleanup(t, () => users.remove());
  const htpasswd = path.join(users.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd } }, dataDir);
  onCleanup(t, () => mirror.stop());
  const auth = { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };

  // Sessions and the v1 image json are stored while there is room; the bodies come after.
  const session = async () => {
    const opened = await rawRequest(`${mirror.url}/v2/corp/app/blobs/uploads/`, 'POST', auth);
    assert.equal(opened.status, 202, opened.body);
    return String(opened.headers.location);
  };
  const forPatch = await session();
  const forPut = await session();
  const id = imageId('disk-full-layer');
  const json = await rawRequest(`${mirror.url}/v1/images/${id}/json`, 'PUT', { ...auth, 'content-type': 'application/json' }, JSON.stringify({ id }));
  assert.equal(json.status, 200, json.body);
  const filler = await fill(dataDir);

  // Many chunks: the write fails while most of the body is still on its way. A client that sends
  // its whole body before it reads the answer (Docker, containerd) must get to read the 507.
  const body = Buffer.alloc(6 * 1024 * 1024, 3);
  const octets = { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength) };
  const patch = await rawRequest(`${mirror.url}${forPatch}`, 'PATCH', octets, body);
  assert.equal(patch.status, 507, patch.body);
  assert.equal((JSON.parse(patch.body) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');
  const put = await rawRequest(`${mirror.url}${forPut}${forPut.includes('?') ? '&' : '?'}digest=${sha256Digest(body)}`, 'PUT', octets, body);
  assert.equal(put.status, 507, put.body);
  assert.equal((JSON.parse(put.body) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');
  const layer = await rawRequest(`${mirror.url}/v1/images/${id}/layer`, 'PUT', octets, body);
  assert.equal(layer.status, 507, layer.body);
  assert.match((JSON.parse(layer.body) as { error: string }).error, /ENOSPC|storage/i);

  // Nothing half-written stays, and the sessions are gone.
  assert.deepEqual(await storedBlobs(mirror), []);
  assert.equal((await rawRequest(`${mirror.url}${forPatch}`, 'GET', auth)).status, 404);
  assert.deepEqual(mirror.logs.filter((line) => (line.level as number) >= 50), [], 'a full disk is not a server error');
  await rm(filler);
});
