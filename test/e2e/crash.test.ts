// kill -9 in the middle of a cold download, restart on the same data: the partial blob is
// never served, start-up clears it, and the next pull gets the right bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { startCountingProxy } from '../harness/counting-proxy.js';
import { onCleanup } from '../support/cleanup.js';
import { pushDockerImage } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { startRegistry } from '../harness/registry.js';
import { makeTempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => e.name);
}

test('a crash mid-download never leaves a partial blob to be served', async (t) => {
  const registry = await startRegistry();
  onCleanup(t, () => registry.dispose());
  const proxy = await startCountingProxy(registry.url, { bytesPerSecond: 1024 * 1024 });
  onCleanup(t, () => proxy.close());
  const data = await makeTempDir('crash-data');
  onCleanup(t, () => data.remove());
  const image = await pushDockerImage(registry.url, 'apps/crash', 'v1', [8 * 1024 * 1024]);
  const layer = image.layers[0]!;
  const hex = layer.digest.slice('sha256:'.length);

  const mirror = await startLongshore({ upstreams: [{ name: 'local', url: proxy.url, default: true }] }, { dataDir: data.path });
  onCleanup(t, () => mirror.dispose());

  const download = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  assert.equal(download.statusCode, 200);
  const received: Buffer[] = [];
  const reading = (async () => {
    try {
      for await (const chunk of download.body) received.push(chunk as Buffer);
      return 'ended';
    } catch {
      return 'broke off';
    }
  })();
  await pollUntil(() => Promise.resolve(received.reduce((n, c) => n + c.byteLength, 0) > 1024 * 1024), { timeoutMs: 15_000, what: '1 MiB of the download' });
  await mirror.kill9();
  assert.equal(await reading, 'broke off');
  const partial = await listFiles(path.join(data.path, 'tmp'));
  assert.equal(partial.length, 1, 'the crash left a partial temp file behind');
  assert.ok(!(await listFiles(path.join(data.path, 'blobs'))).includes(hex), 'the partial blob is not in the store');

  // Restart with the upstream gone: the partial bytes must not be served as the blob.
  await registry.stop();
  await mirror.start();
  assert.deepEqual(await listFiles(path.join(data.path, 'tmp')), [], 'start-up removed the temp file');
  const offline = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  await offline.body.dump();
  assert.equal(offline.statusCode, 502);

  // Upstream back: the blob is fetched anew, verified, and correct.
  await registry.start();
  proxy.setThrottle(undefined);
  const again = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  assert.equal(again.statusCode, 200);
  const hash = createHash('sha256');
  for await (const chunk of again.body) hash.update(chunk as Buffer);
  assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
  assert.ok((await listFiles(path.join(data.path, 'blobs'))).includes(hex));
});
