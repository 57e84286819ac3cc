// kill -9 in the middle of a cold download on the S3 driver: the parts already uploaded stay an
// incomplete multipart upload (never an object under blobs/), a restart on an empty scratch
// directory never serves them, `longshore gc` aborts the upload, and the next pull is correct.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { startCountingProxy } from '../harness/counting-proxy.js';
import { pushDockerImage } from '../harness/images.js';
import { fetchesSettled } from '../harness/fetches.js';
import { startLongshore } from '../harness/longshore.js';
import { startRegistry } from '../harness/registry.js';
import { s3StorageConfig, startSwift } from '../harness/swift.js';
import { makeTempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { runCli } from '../support/cli.js';

const MiB = 1024 * 1024;

test('s3: a crash mid-download leaves only an incomplete upload, never served, aborted by gc; the next pull is right', async (t) => {
  const swift = await startSwift();
  onCleanup(t, () => swift.dispose());
  const s3 = swift.client();
  onCleanup(t, () => s3.destroy());
  const bucket = await swift.createBucket();
  const registry = await startRegistry();
  onCleanup(t, () => registry.dispose());
  // 4 MiB/s: 8 MiB parts fill slowly, so from the third one (two slow ones in a row after the
  // first, SLOW_PARTS_IN_A_ROW) parts go up while the download goes on; at 24 MiB of 40, the
  // upload is under way and most of the layer still to come.
  const proxy = await startCountingProxy(registry.url, { bytesPerSecond: 4 * MiB });
  onCleanup(t, () => proxy.close());
  const image = await pushDockerImage(registry.url, 'apps/crash', 'v1', [40 * MiB]);
  const layer = image.layers[0]!;
  const hex = layer.digest.slice('sha256:'.length);
  const blobKey = `blobs/sha256/${hex.slice(0, 2)}/${hex}`;

  const scratch = await makeTempDir('s3-crash-scratch');
  onCleanup(t, () => scratch.remove());
  const mirror = await startLongshore(
    { storage: await s3StorageConfig(swift, bucket), upstreams: [{ name: 'local', url: proxy.url, default: true }] },
    { dataDir: scratch.path },
  );
  onCleanup(t, () => mirror.dispose());

  const download = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  assert.equal(download.statusCode, 200);
  let received = 0;
  const reading = (async () => {
    try {
      for await (const chunk of download.body) received += (chunk as Buffer).byteLength;
      return 'ended';
    } catch {
      return 'broke off';
    }
  })();
  await pollUntil(() => Promise.resolve(received > 10 * MiB), { timeoutMs: 30_000, what: '10 MiB of the download' });
  const uploads = async () => (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
  await pollUntil(async () => (await uploads()).length === 1, { timeoutMs: 10_000, what: 'the multipart upload to show in the bucket' });
  await mirror.kill9();
  assert.equal(await reading, 'broke off');
  assert.deepEqual(
    (await uploads()).map((upload) => upload.Key),
    [blobKey],
    'the crash left one incomplete upload, to the blob key',
  );
  const blobObjects = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'blobs/' }));
  assert.equal(blobObjects.KeyCount ?? 0, 0, 'nothing under blobs/: parts are invisible until completed');

  // Restart on an empty scratch directory with the upstream gone: nothing partial is served.
  await registry.stop();
  await scratch.remove();
  await mirror.start();
  const offline = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  await offline.body.dump();
  assert.equal(offline.statusCode, 502);
  await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: blobKey })), /NotFound|404/);

  // gc (beside the running server) aborts staged uploads older than its grace.
  const gc = await runCli(['gc', '--config', mirror.configPath, '--grace', '0s']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, /removed \d+ stale records and 1 temp files/);
  assert.deepEqual(await uploads(), []);

  // Upstream back: fetched anew, verified, and the object in the bucket hashes to its key.
  await registry.start();
  proxy.setThrottle(undefined);
  const again = await request(`${mirror.url}/v2/apps/crash/blobs/${layer.digest}`);
  assert.equal(again.statusCode, 200);
  const hash = createHash('sha256');
  for await (const chunk of again.body) hash.update(chunk as Buffer);
  assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
  await fetchesSettled(mirror.url); // the response ends once verified; the upload completes after
  const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: blobKey }));
  const storedHash = createHash('sha256');
  for await (const chunk of stored.Body as AsyncIterable<Buffer>) storedHash.update(chunk);
  assert.equal(storedHash.digest('hex'), hex, 'the object under the blob key hashes to the key');
  assert.deepEqual(await uploads(), []);
});
