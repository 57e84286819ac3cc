// Proves the Swift s3api harness (test/harness/swift.ts) and the S3 client configuration
// (src/storage/s3-client.ts) against the real server, and documents what the S3 driver can and
// cannot rely on from it: every call the driver makes is exercised here once, and the ones
// Swift refuses (conditional PUTs) are asserted to be refused, so a Swift upgrade that changes
// either shows up here first.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { startSwift } from '../harness/swift.js';
import type { SwiftHandle } from '../harness/swift.js';

const MiB = 1024 * 1024;

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function getBytes(s3: S3Client, bucket: string, key: string, range?: string): Promise<{ bytes: Buffer; contentRange: string | undefined }> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range === undefined ? {} : { Range: range }) }));
  assert.ok(response.Body, `GET ${key} has a body`);
  return { bytes: Buffer.from(await response.Body.transformToByteArray()), contentRange: response.ContentRange };
}

/** The HTTP status of the S3 error `action` fails with (fails the test if it succeeds). */
async function failureStatus(action: () => Promise<unknown>): Promise<{ status: number | undefined; name: string }> {
  try {
    await action();
  } catch (error) {
    if (error instanceof S3ServiceException) return { status: error.$metadata.httpStatusCode, name: error.name };
    throw error;
  }
  assert.fail('expected the S3 call to fail');
}

void describe('Swift s3api harness', () => {
  let swift: SwiftHandle | undefined;
  let s3: S3Client;
  let bucket = '';

  before(async () => {
    swift = await startSwift();
    s3 = swift.client();
    bucket = await swift.createBucket();
  });

  after(async () => {
    s3?.destroy();
    await swift?.dispose();
  });

  it('starts in bounded time and answers on loopback', (t) => {
    assert.ok(swift);
    t.diagnostic(`swift start (rings, 4 servers, memcached, first S3 answer): ${swift.startMs} ms`);
    assert.match(swift.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(swift.accessKeyId, 'longshore:s3');
    assert.ok(swift.startMs < 60_000);
  });

  it('puts, gets whole and by Range, heads, and lists by prefix', async () => {
    const body = randomBytes(100_000);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'plain/a', Body: body, ContentType: 'application/octet-stream' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'plain/b', Body: 'bee' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'other/c', Body: 'sea' }));

    const whole = await getBytes(s3, bucket, 'plain/a');
    assert.equal(sha256(whole.bytes), sha256(body));
    const ranged = await getBytes(s3, bucket, 'plain/a', 'bytes=1000-1999');
    assert.deepEqual(ranged.bytes, body.subarray(1000, 2000));
    assert.equal(ranged.contentRange, 'bytes 1000-1999/100000');
    const suffix = await getBytes(s3, bucket, 'plain/a', 'bytes=-10');
    assert.deepEqual(suffix.bytes, body.subarray(body.length - 10));

    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'plain/a' }));
    assert.equal(head.ContentLength, body.length);

    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'plain/' }));
    assert.deepEqual((listed.Contents ?? []).map((entry) => [entry.Key, entry.Size]), [
      ['plain/a', 100_000],
      ['plain/b', 3],
    ]);
    const delimited = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: '/' }));
    assert.deepEqual((delimited.CommonPrefixes ?? []).map((entry) => entry.Prefix), ['other/', 'plain/']);

    const missing = await failureStatus(() => s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'plain/none' })));
    assert.deepEqual(missing, { status: 404, name: 'NoSuchKey' });
  });

  it('uploads multipart from streams, invisible until completed; the result serves Ranges and copies server-side', async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1234)];
    const whole = Buffer.concat(parts);
    const key = 'multi/object';
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    assert.ok(created.UploadId);
    const etags: string[] = [];
    for (const [index, part] of parts.entries()) {
      // A stream with a known length, the way the driver uploads from its scratch file.
      const uploaded = await s3.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId, PartNumber: index + 1, Body: Readable.from([part]), ContentLength: part.length }),
      );
      assert.ok(uploaded.ETag);
      etags.push(uploaded.ETag);
    }

    const inProgress = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    const listedUpload = (inProgress.Uploads ?? []).find((upload) => upload.UploadId === created.UploadId);
    assert.equal(listedUpload?.Key, key);
    assert.ok(listedUpload.Initiated instanceof Date, 'uploads carry their start time (for the grace period of start-up and gc)');
    assert.deepEqual(await failureStatus(() => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))), { status: 404, name: 'NotFound' });

    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: created.UploadId,
        MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
      }),
    );
    const fetched = await getBytes(s3, bucket, key);
    assert.equal(sha256(fetched.bytes), sha256(whole));
    const acrossParts = await getBytes(s3, bucket, key, `bytes=${5 * MiB - 10}-${5 * MiB + 9}`);
    assert.deepEqual(acrossParts.bytes, whole.subarray(5 * MiB - 10, 5 * MiB + 10));
    assert.equal((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0, 0);

    // Temporary key -> final key, the way a v1 layer (digest known only at the end) is committed.
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: 'multi/copy', CopySource: `${bucket}/${key}` }));
    const copied = await getBytes(s3, bucket, 'multi/copy');
    assert.equal(sha256(copied.bytes), sha256(whole));

    // Deleting the multipart object frees its segments; the copy holds the bytes on its own.
    assert.ok((await swift!.segmentCount(bucket)) >= parts.length);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(await swift!.segmentCount(bucket), 0);
    assert.equal(sha256((await getBytes(s3, bucket, 'multi/copy')).bytes), sha256(whole));
  });

  it('aborts a multipart upload: nothing becomes visible and its parts are freed', async () => {
    const key = 'multi/aborted';
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    assert.ok(created.UploadId);
    const part = randomBytes(5 * MiB);
    const uploaded = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId, PartNumber: 1, Body: part }));
    assert.ok((await swift!.segmentCount(bucket)) >= 1);

    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId }));
    assert.equal(await swift!.segmentCount(bucket), 0);
    const completeAfterAbort = await failureStatus(() =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: created.UploadId,
          MultipartUpload: { Parts: [{ ETag: uploaded.ETag, PartNumber: 1 }] },
        }),
      ),
    );
    assert.deepEqual(completeAfterAbort, { status: 404, name: 'NoSuchUpload' });
    assert.deepEqual(await failureStatus(() => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))), { status: 404, name: 'NotFound' });
  });

  it('deletes one key, and many at once (DeleteObjects needs the Content-MD5 that s3-client.ts adds)', async () => {
    const keys = ['del/1', 'del/2', 'del/3'];
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'del/1' }));
    const result = await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'del/2' }, { Key: 'del/3' }] } }));
    assert.deepEqual(result.Errors ?? [], []);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'del/' }));
    assert.equal(left.KeyCount, 0);
    // Deleting what is not there succeeds, as on AWS (idempotent deletes).
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'del/1' }));
  });

  it('refuses conditional PUTs (501): create-if-absent and compare-and-swap must come from a coordinator, not the bucket', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'cond/existing', Body: 'v1' }));
    const ifNoneMatch = await failureStatus(() => s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'cond/new', Body: 'x', IfNoneMatch: '*' })));
    assert.equal(ifNoneMatch.status, 501, `If-None-Match: * answered ${JSON.stringify(ifNoneMatch)}`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cond/existing' }));
    const ifMatch = await failureStatus(() => s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'cond/existing', Body: 'v2', IfMatch: head.ETag })));
    assert.equal(ifMatch.status, 501, `If-Match answered ${JSON.stringify(ifMatch)}`);
    // Neither refused write happened.
    assert.equal((await getBytes(s3, bucket, 'cond/existing')).bytes.toString(), 'v1');
    assert.deepEqual(await failureStatus(() => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cond/new' }))), { status: 404, name: 'NotFound' });
  });
});
