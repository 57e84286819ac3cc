// A misbehaving upstream (in-process fake) on the S3 driver: the blob is larger than a part, so
// a multipart upload with a part is under way when the fault strikes. The client's body breaks off, the
// multipart upload is aborted (nothing under blobs/, no upload left), and the next good request
// stores the right bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { sha256Digest } from '../harness/digests.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import { fetchesSettled } from '../harness/fetches.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess } from '../support/in-process.js';

const MiB = 1024 * 1024;
let swift: SwiftHandle;
let s3: S3Client;

before(async () => {
  swift = await startSwift();
  s3 = swift.client();
});

after(async () => {
  s3?.destroy();
  await swift?.dispose();
});

async function read(url: string): Promise<{ status: number; body: Buffer | undefined; brokeOff: boolean }> {
  const response = await request(url);
  try {
    return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()), brokeOff: false };
  } catch {
    return { status: response.statusCode, body: undefined, brokeOff: true };
  }
}

const faults = [
  { name: 'a truncated body', fault: { kind: 'truncate', afterBytes: 10 * MiB } },
  { name: 'wrong bytes', fault: { kind: 'wrongBytes' } },
  { name: 'a stall past the timeout', fault: { kind: 'stall', afterBytes: 10 * MiB } },
] as const;

for (const { name, fault } of faults) {
  test(`s3: blob fetch with ${name} with a part under way: aborted, nothing in the bucket, next request stores it`, async (t) => {
    const upstream = await startFakeUpstream();
    onCleanup(t, () => upstream.close());
    const storage = await s3StorageConfig(swift);
    const bucket = (storage.s3 as { bucket: string }).bucket;
    const mirror = await startInProcess({ storage, upstreams: [{ name: 'fake', url: upstream.url, default: true, timeout: '1s' }] });
    onCleanup(t, () => mirror.stop());
    const blob = randomBytes(12 * MiB);
    const digest = sha256Digest(blob);
    const hex = digest.slice('sha256:'.length);
    upstream.setBlob(digest, blob);
    upstream.setFault(/\/blobs\//, { ...fault, times: 1 });

    const broken = await read(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.equal(broken.status, 200, 'headers went out before the fault');
    assert.ok(broken.brokeOff, 'the body breaks off, never ends cleanly');
    const objects = async () => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'blobs/' }))).Contents ?? []).map((o) => o.Key);
    const uploads = async () => (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
    // The abort reaches S3 a moment after the client's body broke off.
    await pollUntil(async () => (await uploads()).length === 0 && (await swift.segmentCount(bucket)) === 0, {
      timeoutMs: 10_000,
      what: 'the multipart upload and its parts to be gone',
    });
    assert.deepEqual(await objects(), [], 'nothing under blobs/');

    const good = await read(`${mirror.url}/v2/app/blobs/${digest}`);
    assert.equal(good.status, 200);
    assert.ok(good.body?.equals(blob));
    await fetchesSettled(mirror.url); // the response ends once verified; the upload completes after
    assert.deepEqual(await objects(), [`blobs/sha256/${hex.slice(0, 2)}/${hex}`]);
    const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `blobs/sha256/${hex.slice(0, 2)}/${hex}` }));
    assert.equal(sha256Digest(Buffer.from(await stored.Body!.transformToByteArray())), digest, 'the object hashes to its key');
  });
}
