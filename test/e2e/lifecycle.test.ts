// SIGTERM: stop accepting, let responses in flight finish within shutdownGracePeriod, cut
// the rest, and leave no temp files.
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

for (const { name, grace, expectComplete } of [
  { name: 'a download that finishes within the grace period completes', grace: '20s', expectComplete: true },
  { name: 'a download past the grace period is cut', grace: '500ms', expectComplete: false },
]) {
  test(`SIGTERM: ${name}; temp files are gone afterwards`, async (t) => {
    const registry = await startRegistry();
    onCleanup(t, () => registry.dispose());
    // 3 MiB at 1 MiB/s: the download is well under way when the signal comes.
    const proxy = await startCountingProxy(registry.url, { bytesPerSecond: 1024 * 1024 });
    onCleanup(t, () => proxy.close());
    const data = await makeTempDir('shutdown');
    onCleanup(t, () => data.remove());
    const image = await pushDockerImage(registry.url, 'apps/slow', 'v1', [3 * 1024 * 1024]);
    const layer = image.layers[0]!;
    const mirror = await startLongshore({ shutdownGracePeriod: grace, upstreams: [{ name: 'local', url: proxy.url, default: true }] }, { dataDir: data.path });
    onCleanup(t, () => mirror.dispose());

    const response = await request(`${mirror.url}/v2/apps/slow/blobs/${layer.digest}`);
    const hash = createHash('sha256');
    let received = 0;
    const reading = (async () => {
      try {
        for await (const chunk of response.body) {
          hash.update(chunk as Buffer);
          received += (chunk as Buffer).byteLength;
        }
        return 'ended';
      } catch {
        return 'broke off';
      }
    })();
    await pollUntil(() => Promise.resolve(received > 256 * 1024), { timeoutMs: 10_000, what: 'the download to start' });
    const child = mirror.process!;
    child.child.kill('SIGTERM');
    if (expectComplete) {
      // Stopped accepting: a new request is refused (or answered 503) while the download runs on.
      await pollUntil(
        () =>
          request(`${mirror.url}/v2/`, { reset: true }).then(
            async (late) => {
              await late.body.dump();
              return late.statusCode === 503;
            },
            () => true,
          ),
        { timeoutMs: 5_000, what: 'new requests to be turned away' },
      );
      assert.ok(received < layer.size, 'the download was still running when new requests were turned away');
    }
    const status = await child.exited;
    const outcome = await reading;
    if (expectComplete) {
      assert.equal(outcome, 'ended');
      assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
      assert.equal(status.code, 0);
    } else {
      assert.equal(outcome, 'broke off');
      assert.ok(received < layer.size);
    }
    assert.deepEqual(await readdir(path.join(data.path, 'tmp')), [], 'no temp files left');
  });
}
