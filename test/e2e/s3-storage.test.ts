// The S3 storage drivers on a real S3 server (Swift s3api, test/harness/swift.ts): the same
// blob-store and metadata-store contract suites the fs and memory drivers pass, unchanged, then
// what is particular to S3: the bucket layout, multipart commits, staging sweeps, and a new
// store on an empty scratch directory serving everything.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { buffer } from 'node:stream/consumers';
import { after, test } from 'node:test';
import { stringify } from 'yaml';
import { CreateMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { digestOf, parseDigest, type Digest } from '../../src/protocol/digest.js';
import { DigestMismatchError } from '../../src/storage/blob-store.js';
import { MIN_PART_BYTES, S3BlobStore, SLOW_PART_FILL_MS } from '../../src/storage/s3-blob-store.js';
import { S3MetadataDriver } from '../../src/storage/s3-metadata-driver.js';
import { SHARED_READ_MIN_BYTES } from '../../src/storage/shared-reads.js';
import { SPARE_FILE_PREFIX } from '../../src/storage/spare-files.js';
import { s3StorageConfig, startSwift, type SwiftHandle } from '../harness/swift.js';
import { pollUntil } from '../harness/wait.js';
import { runCli } from '../support/cli.js';
import { gatedSink, type GatedSink } from '../support/gated-sink.js';
import { countObjectGets } from '../support/s3-gets.js';
import { blobStoreContract } from '../support/blob-store-contract.js';
import { metadataStoreContract } from '../support/metadata-store-contract.js';

// One Swift and one bucket for the file; every store gets its own key prefix, so each test
// sees an empty store and the prefix option is exercised throughout.
let swiftStarting: Promise<{ swift: SwiftHandle; client: S3Client; bucket: string }> | undefined;
function swiftOnce(): Promise<{ swift: SwiftHandle; client: S3Client; bucket: string }> {
  swiftStarting ??= (async () => {
    const swift = await startSwift();
    return { swift, client: swift.client(), bucket: await swift.createBucket() };
  })();
  return swiftStarting;
}
after(async () => {
  if (!swiftStarting) return;
  const { swift, client } = await swiftStarting;
  client.destroy();
  await swift.dispose();
});

let stores = 0;
interface TestStore extends S3BlobStore {
  testPrefix: string;
}

async function newStore(options: { prefix?: string; scratchDir?: string; partBytes?: number } = {}): Promise<TestStore> {
  const { client, bucket } = await swiftOnce();
  stores += 1;
  const prefix = options.prefix ?? `store-${stores}/`;
  const scratchDir = options.scratchDir ?? (await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-')));
  // Parts of S3's minimum size, so blobs of a few MiB already take the multipart path.
  const store = new S3BlobStore({ client, bucket, prefix, scratchDir, partBytes: options.partBytes ?? MIN_PART_BYTES });
  await store.init();
  return Object.assign(store, { testPrefix: prefix });
}

async function keysUnder(prefix: string): Promise<string[]> {
  const { client, bucket } = await swiftOnce();
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((entry) => entry.Key ?? '').sort();
}

async function uploadsUnder(prefix: string): Promise<string[]> {
  const { client, bucket } = await swiftOnce();
  const listed = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return (listed.Uploads ?? []).map((upload) => upload.Key ?? '');
}

blobStoreContract('s3', () => newStore());
metadataStoreContract('s3', async () => {
  const { client, bucket } = await swiftOnce();
  stores += 1;
  return new S3MetadataDriver({ client, bucket, prefix: `meta-${stores}/` });
});

const big = randomBytes(2 * MIN_PART_BYTES + 12_345);
const bigDigest = parseDigest(digestOf(big));

test('s3: a multipart blob lands at <prefix>blobs/sha256/<2 hex>/<64 hex>, nothing else is left, and it reads back by range', async () => {
  const store = await newStore();
  // Written slowly, as a pull over a WAN arrives: from the third part on (SLOW_PARTS_IN_A_ROW
  // after the first), full parts upload while the blob is written, to its final key.
  const wan = randomBytes(3 * MIN_PART_BYTES + 999);
  const wanDigest = parseDigest(digestOf(wan));
  const writer = await store.createWriter(wanDigest);
  for (let at = 0; at < wan.byteLength; at += MIN_PART_BYTES / 4) {
    await writer.write(wan.subarray(at, at + MIN_PART_BYTES / 4));
    await setTimeout(SLOW_PART_FILL_MS / 2);
  }
  await pollUntil(async () => (await uploadsUnder(store.testPrefix)).length > 0, { timeoutMs: 10_000, what: 'a multipart upload to start' });
  assert.deepEqual(await uploadsUnder(store.testPrefix), [`${store.testPrefix}blobs/sha256/${wanDigest.hex.slice(0, 2)}/${wanDigest.hex}`]);
  assert.equal(await store.stat(wanDigest), undefined, 'parts are invisible before the commit');
  await writer.commit(wan.byteLength);
  writer.close();
  assert.deepEqual(await keysUnder(store.testPrefix), [`${store.testPrefix}blobs/sha256/${wanDigest.hex.slice(0, 2)}/${wanDigest.hex}`]);
  assert.deepEqual(await uploadsUnder(store.testPrefix), []);
  const handle = await store.open(wanDigest);
  assert.ok(handle);
  const start = MIN_PART_BYTES - 7;
  assert.ok((await buffer(handle.stream({ start, end: start + 99 }))).equals(wan.subarray(start, start + 100)));
  assert.ok((await buffer((await store.open(wanDigest))!.stream())).equals(wan));
});

test('s3: a slow start or one slow part alone sends nothing before the digest check', async () => {
  const store = await newStore();
  const writer = await store.createWriter(bigDigest);
  try {
    // The first part slowly (the download's start), the second at once, then one slow part,
    // then the rest at once.
    const quarter = MIN_PART_BYTES / 4;
    for (let at = 0; at < MIN_PART_BYTES; at += quarter) {
      await writer.write(big.subarray(at, at + quarter));
      await setTimeout(SLOW_PART_FILL_MS / 2);
    }
    await writer.write(big.subarray(MIN_PART_BYTES, MIN_PART_BYTES + quarter));
    await setTimeout(2 * SLOW_PART_FILL_MS);
    await writer.write(big.subarray(MIN_PART_BYTES + quarter));
    await setTimeout(4 * SLOW_PART_FILL_MS);
    assert.deepEqual(await uploadsUnder(store.testPrefix), [], 'no multipart upload while the bytes are unverified');
    await writer.commit(big.byteLength);
  } finally {
    if (!(await store.stat(bigDigest))) await writer.abort();
    writer.close();
  }
  assert.ok((await store.readAll(bigDigest, big.byteLength))?.equals(big));
});

test('s3: parts of a blob that arrives fast wait for its digest check, then upload; nothing is sent before', async () => {
  const store = await newStore();
  const writer = await store.createWriter(bigDigest);
  try {
    // Two full parts and a remainder in one chunk: each part filled in no time, as from an
    // upstream on the LAN, where uploading alongside would take the CPU the client's stream needs.
    await writer.write(big);
    // Long enough for a part sent at once to have opened its multipart upload.
    await setTimeout(4 * SLOW_PART_FILL_MS);
    assert.deepEqual(await uploadsUnder(store.testPrefix), [], 'no multipart upload while the bytes are unverified');
    await writer.verify(big.byteLength);
    await pollUntil(async () => (await uploadsUnder(store.testPrefix)).length > 0, { timeoutMs: 10_000, what: 'the parts to upload once verified' });
    await writer.commit(big.byteLength);
  } finally {
    // A failed assertion must not leave parts uploading (the file would never end).
    if (!(await store.stat(bigDigest))) await writer.abort();
    writer.close();
  }
  assert.deepEqual(await keysUnder(store.testPrefix), [`${store.testPrefix}blobs/sha256/${bigDigest.hex.slice(0, 2)}/${bigDigest.hex}`]);
  assert.ok((await buffer((await store.open(bigDigest))!.stream())).equals(big));
});

test('s3: writeTo sends a hit straight into the response: whole, by range (a ranged GET, or the open GET once the object is deleted), empty', async () => {
  const store = await newStore();
  await store.put(bigDigest, big);
  const emptyBytes = Buffer.alloc(0);
  const emptyDigest = parseDigest(digestOf(emptyBytes));
  await store.put(emptyDigest, emptyBytes);
  const send = async (digest: typeof bigDigest, range?: { start: number; end: number }, before?: () => Promise<unknown>) => {
    const handle = await store.open(digest);
    const writeTo = handle?.writeTo?.bind(handle);
    assert.ok(writeTo);
    await before?.();
    const client = gatedSink({ open: true });
    await writeTo(client.destination, range);
    const { bytes, error } = await client.collect();
    assert.equal(error, undefined);
    return bytes;
  };
  assert.ok((await send(bigDigest)).equals(big));
  for (const range of [
    { start: 0, end: 99 },
    { start: MIN_PART_BYTES - 7, end: MIN_PART_BYTES + 99_999 },
    { start: big.byteLength - 10, end: big.byteLength - 1 },
  ]) {
    assert.ok((await send(bigDigest, range)).equals(big.subarray(range.start, range.end + 1)), `range ${JSON.stringify(range)}`);
  }
  assert.equal((await send(emptyDigest)).byteLength, 0);
  const start = 3 * 65_536 + 11;
  const afterDelete = await send(bigDigest, { start, end: start + 200_000 }, () => store.delete(bigDigest));
  assert.ok(afterDelete.equals(big.subarray(start, start + 200_001)), 'a range of a deleted object comes from the GET open() started');
});

/**
 * A whole-object hit whose client does not read yet, so its read stays in progress until the
 * caller collects what the client got: a lone GET, or (`shared`) a shared read it started or
 * joined, whose scratch file is held meanwhile.
 */
async function stalledHit(
  store: S3BlobStore,
  digest: Digest,
  options: { shared?: boolean; mayFail?: boolean } = {},
): Promise<GatedSink & { done: Promise<void> }> {
  const handle = await store.open(digest);
  assert.ok(handle?.writeTo !== undefined);
  const client = gatedSink();
  const done = handle.writeTo(client.destination);
  // A shared read that fails is unlisted at once (nobody joins it), so its start may not be seen.
  const started = () => (options.shared !== true || options.mayFail === true || store.sharedReadCount === 1) && (client.waiting > 0 || client.destination.destroyed);
  await pollUntil(() => Promise.resolve(started()), { timeoutMs: 10_000, intervalMs: 10, what: 'the hit to start' });
  return Object.assign(client, { done });
}

/** A whole hit (or a range) written to a client that reads at once. */
async function hit(store: S3BlobStore, digest: Digest, range?: { start: number; end: number }): Promise<{ bytes: Buffer; error: Error | undefined }> {
  const handle = await store.open(digest);
  assert.ok(handle?.writeTo !== undefined);
  const client = gatedSink({ open: true });
  await handle.writeTo(client.destination, range);
  return client.collect();
}

/** Scratch files in use. Spares (finished ones kept for reuse, spare-files.ts) are not. */
async function scratchFilesOf(scratchDir: string): Promise<string[]> {
  return (await readdir(path.join(scratchDir, 'tmp'))).filter((name) => !name.startsWith(SPARE_FILE_PREFIX));
}

/** Finished scratch files kept for later ones to write over, with their inode numbers and sizes. */
async function sparesOf(scratchDir: string): Promise<Array<{ ino: number; size: number }>> {
  const dir = path.join(scratchDir, 'tmp');
  const names = (await readdir(dir)).filter((name) => name.startsWith(SPARE_FILE_PREFIX));
  return Promise.all(names.map(async (name) => {
    const { ino, size } = await stat(path.join(dir, name));
    return { ino, size };
  }));
}

test('s3: a lone hit is a GET of its own; hits coming while it streams share one more GET, through a scratch copy that goes with its last reader', async (t) => {
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  const store = await newStore({ scratchDir });
  await store.put(bigDigest, big);
  const gets = countObjectGets(t, store.client);
  const alone = await stalledHit(store, bigDigest);
  assert.equal(store.sharedReadCount, 0, 'a lone hit is not shared');
  assert.deepEqual(await scratchFilesOf(scratchDir), [], 'and writes no scratch file');
  const sharing = await stalledHit(store, bigDigest, { shared: true });
  assert.equal((await scratchFilesOf(scratchDir)).length, 1, 'the second hit starts a shared read, in one scratch file');
  const followers = await Promise.all(
    [undefined, { start: MIN_PART_BYTES - 5, end: MIN_PART_BYTES + 70_000 }].map(async (range) => ({ range, result: await hit(store, bigDigest, range) })),
  );
  for (const stalled of [alone, sharing]) {
    const result = await stalled.collect();
    await stalled.done;
    assert.equal(result.error, undefined);
    assert.ok(result.bytes.equals(big), 'the stalled hits got every byte');
  }
  for (const { range, result } of followers) {
    assert.equal(result.error, undefined);
    assert.ok(result.bytes.equals(range ? big.subarray(range.start, range.end + 1) : big), `follower ${JSON.stringify(range)} got its bytes`);
  }
  assert.deepEqual(gets, [store.blobKey(bigDigest), store.blobKey(bigDigest)], 'two GETs of the object for four hits');
  await pollUntil(async () => store.sharedReadCount === 0 && (await scratchFilesOf(scratchDir)).length === 0, { timeoutMs: 10_000, intervalMs: 20, what: 'the scratch copy to go' });
  assert.ok((await hit(store, bigDigest)).bytes.equals(big));
  assert.equal(store.sharedReadCount, 0, 'alone again once the others are done');
  const small = randomBytes(SHARED_READ_MIN_BYTES - 1);
  const smallDigest = parseDigest(digestOf(small));
  await store.put(smallDigest, small);
  const smallAlone = await stalledHit(store, smallDigest);
  assert.ok((await hit(store, smallDigest)).bytes.equals(small));
  assert.equal(store.sharedReadCount, 0, 'a blob under SHARED_READ_MIN_BYTES is never shared');
  assert.ok((await smallAlone.collect()).bytes.equals(small));
});

test('s3: an object that does not match its digest fails every reader of a shared read before the final byte', async () => {
  const { client, bucket } = await swiftOnce();
  const store = await newStore();
  const corrupt = Buffer.from(big);
  const flipped = corrupt.byteLength >> 1;
  corrupt[flipped] = (corrupt[flipped] ?? 0) ^ 0xff;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: store.blobKey(bigDigest), Body: corrupt }));
  // A lone GET is sent as the bucket has it (as the reference's hits are); the hits that share
  // a read are checked.
  const alone = await stalledHit(store, bigDigest);
  const sharing = await stalledHit(store, bigDigest, { shared: true, mayFail: true });
  // The follower joins that read, or (if it failed already) starts one of its own: either way,
  // it must not get the whole body.
  const follower = hit(store, bigDigest);
  const results = [await sharing.collect(), await follower];
  await sharing.done;
  for (const result of results) {
    assert.match(String(result.error), /digest mismatch/);
    assert.ok(result.bytes.byteLength < big.byteLength, 'never the whole body');
  }
  await alone.collect();
});

test('s3: a delete takes a shared read out of reach while its readers still get every byte; a read every reader left stops and leaves no file', async (t) => {
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  const store = await newStore({ scratchDir });
  await store.put(bigDigest, big);
  const reading = [await stalledHit(store, bigDigest), await stalledHit(store, bigDigest, { shared: true })];
  assert.equal(await store.delete(bigDigest), true);
  assert.equal(await store.open(bigDigest), undefined, 'deleted: no handle, shared read or not');
  for (const stalled of reading) {
    const result = await stalled.collect();
    assert.equal(result.error, undefined);
    assert.ok(result.bytes.equals(big));
  }
  await store.put(bigDigest, big);
  const gets = countObjectGets(t, store.client);
  const abandoned = [await stalledHit(store, bigDigest), await stalledHit(store, bigDigest, { shared: true })];
  for (const stalled of abandoned) {
    stalled.destination.destroy();
    await stalled.done;
  }
  await pollUntil(async () => store.sharedReadCount === 0 && (await scratchFilesOf(scratchDir)).length === 0, { timeoutMs: 10_000, intervalMs: 20, what: 'the abandoned read to stop' });
  assert.ok((await hit(store, bigDigest)).bytes.equals(big), 'the next hit reads afresh');
  assert.equal(gets.length, 3, 'the two abandoned reads and the next hit: a GET each');
});

test('s3: a multipart blob whose digest does not match is aborted: no object, no upload left', async () => {
  const store = await newStore();
  const writer = await store.createWriter(bigDigest);
  await writer.write(big.subarray(0, big.byteLength - 1));
  await writer.write(Buffer.from('!'));
  await assert.rejects(writer.commit(), DigestMismatchError);
  writer.close();
  assert.deepEqual(await keysUnder(store.testPrefix), []);
  assert.deepEqual(await uploadsUnder(store.testPrefix), []);
});

test('s3: a blob whose digest comes at the end goes through a staging key and is copied; the staging key is gone', async () => {
  const store = await newStore();
  const writer = await store.createWriter();
  await writer.write(big);
  assert.ok((await uploadsUnder(store.testPrefix)).every((key) => key.startsWith(`${store.testPrefix}staging/`)));
  assert.deepEqual(await writer.commit(), bigDigest);
  writer.close();
  assert.deepEqual(await keysUnder(store.testPrefix), [`${store.testPrefix}blobs/sha256/${bigDigest.hex.slice(0, 2)}/${bigDigest.hex}`]);
  assert.ok((await store.readAll(bigDigest, big.byteLength))?.equals(big));
});

test('s3: a staged blob over the single-copy limit is copied to its key part by part', async () => {
  const { client, bucket } = await swiftOnce();
  stores += 1;
  const prefix = `store-${stores}/`;
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  // The 5 GiB CopyObject limit, scaled down: the 10 MiB blob is copied as two ranges.
  const store = new S3BlobStore({ client, bucket, prefix, scratchDir, partBytes: MIN_PART_BYTES, maxSingleCopyBytes: MIN_PART_BYTES });
  await store.init();
  const writer = await store.createWriter();
  await writer.write(big);
  assert.deepEqual(await writer.commit(), bigDigest);
  writer.close();
  assert.deepEqual(await keysUnder(prefix), [`${prefix}blobs/sha256/${bigDigest.hex.slice(0, 2)}/${bigDigest.hex}`]);
  assert.deepEqual(await uploadsUnder(prefix), []);
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}blobs/sha256/${bigDigest.hex.slice(0, 2)}/${bigDigest.hex}` }));
  assert.match(head.ETag ?? '', /-3"$/, 'a multipart object of three copied ranges');
  assert.ok((await store.readAll(bigDigest, big.byteLength))?.equals(big));
});

test('s3: verify, close, then commit (an import) needs nothing local at commit', async () => {
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  const store = await newStore({ scratchDir });
  const small = Buffer.from('a small verified blob');
  const smallDigest = parseDigest(digestOf(small));
  const staged = [];
  for (const [bytes, digest] of [
    [big, bigDigest],
    [small, smallDigest],
  ] as const) {
    const writer = await store.createWriter(digest);
    await writer.write(bytes);
    await writer.verify(bytes.byteLength);
    writer.close();
    staged.push(writer);
  }
  for (const writer of staged) await writer.commit();
  assert.ok((await store.readAll(bigDigest, big.byteLength))?.equals(big));
  assert.ok((await store.readAll(smallDigest, 100))?.equals(small));
  await setTimeout(100); // scratch files go in the background
  assert.deepEqual(await scratchFilesOf(scratchDir), [], 'no scratch file left in use');
});

test('s3: a finished scratch file is kept and the next write goes over it; a spare longer than the next blob leaves no stray bytes in the bucket', async () => {
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  const store = await newStore({ scratchDir });
  // As a cold miss stores a blob (put() sends bytes it has in memory in one PUT).
  const first = await store.createWriter(bigDigest);
  await first.write(big);
  await first.commit(big.byteLength);
  first.close();
  // Given back in the background, once the blob is in the bucket.
  await pollUntil(async () => (await sparesOf(scratchDir)).length === 1, { timeoutMs: 10_000, intervalMs: 20, what: 'the scratch file to be kept' });
  const [spare] = await sparesOf(scratchDir);
  assert.ok(spare !== undefined);
  assert.equal(spare.size, big.byteLength, "the write's scratch file is kept as a spare");
  assert.deepEqual(await scratchFilesOf(scratchDir), []);
  // Smaller than the spare, and more than a part: a multipart upload read from the spare.
  const next = randomBytes(MIN_PART_BYTES + 4321);
  const nextDigest = parseDigest(digestOf(next));
  const writer = await store.createWriter(nextDigest);
  const [inUse, ...others] = await scratchFilesOf(scratchDir);
  assert.equal(others.length, 0);
  assert.equal((await stat(path.join(scratchDir, 'tmp', inUse ?? ''))).ino, spare.ino, 'the write took the spare');
  assert.deepEqual(await sparesOf(scratchDir), []);
  await writer.write(next);
  await writer.commit(next.byteLength);
  writer.close();
  await pollUntil(async () => (await scratchFilesOf(scratchDir)).length === 0, { timeoutMs: 10_000, intervalMs: 20, what: 'the scratch file to be given back' });
  assert.deepEqual(await sparesOf(scratchDir), [spare], 'the same file is the spare again, as long as the longest blob written into it');
  const { client, bucket } = await swiftOnce();
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: store.blobKey(nextDigest) }));
  assert.equal(head.ContentLength, next.byteLength, 'the object is the blob, not the spare');
  assert.ok((await store.readAll(nextDigest, big.byteLength))?.equals(next));
  assert.ok((await hit(store, bigDigest)).bytes.equals(big), 'the first blob is untouched');
});

test('s3: sweeps abort old multipart uploads and staging objects a killed process left, and spare young ones', async () => {
  const store = await newStore();
  const { client, bucket } = await swiftOnce();
  await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `${store.testPrefix}blobs/sha256/ab/${'ab'.repeat(32)}` }));
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${store.testPrefix}staging/left-behind`, Body: 'x' }));
  assert.equal(await store.sweepStaging({ olderThanMs: 60_000 }), 0, 'young: spared');
  const later = Date.now() + 120_000;
  assert.equal(await store.sweepStaging({ olderThanMs: 60_000, now: later, dryRun: true }), 2);
  assert.equal((await uploadsUnder(store.testPrefix)).length, 1, 'a dry run changes nothing');
  assert.equal(await store.sweepStaging({ olderThanMs: 60_000, now: later }), 2);
  assert.deepEqual(await uploadsUnder(store.testPrefix), []);
  assert.deepEqual(await keysUnder(store.testPrefix), []);
});

test('s3: the bucket is the whole state: a new store on an empty scratch directory lists and serves every blob and record', async () => {
  const store = await newStore();
  const small = Buffer.from('config');
  await store.put(parseDigest(digestOf(small)), small);
  const writer = await store.createWriter(bigDigest);
  await writer.write(big);
  await writer.commit();
  writer.close();
  const { client, bucket } = await swiftOnce();
  const metadata = new S3MetadataDriver({ client, bucket, prefix: store.testPrefix });
  await metadata.put('mirror/hub/library/alpine/_tags/latest', { digest: bigDigest.text });

  const fresh = await newStore({ prefix: store.testPrefix });
  const listed = [];
  for await (const blob of fresh.list()) listed.push([blob.digest, blob.size]);
  assert.deepEqual(
    listed.sort((a, b) => Number(a[1]) - Number(b[1])),
    [
      [digestOf(small), small.byteLength],
      [bigDigest.text, big.byteLength],
    ],
  );
  assert.ok((await fresh.readAll(bigDigest, big.byteLength))?.equals(big));
  const freshMetadata = new S3MetadataDriver({ client, bucket, prefix: store.testPrefix });
  assert.deepEqual(await freshMetadata.get('mirror/hub/library/alpine/_tags/latest'), { digest: bigDigest.text });
  assert.deepEqual(
    (await keysUnder(store.testPrefix)).filter((key) => key.includes('/meta/')),
    [`${store.testPrefix}meta/mirror/hub/library/alpine/_tags/latest.json`],
  );
});

test('s3: start-up says clearly when the bucket is missing', async () => {
  const { client } = await swiftOnce();
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-scratch-'));
  const store = new S3BlobStore({ client, bucket: 'no-such-bucket-here', prefix: '', scratchDir, describeEndpoint: 'the test Swift' });
  await assert.rejects(store.init(), /S3 bucket "no-such-bucket-here" at the test Swift is not reachable: .*404/);
});

test('s3: serve refuses to start on a missing bucket, in one line naming it', async () => {
  const { swift } = await swiftOnce();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-s3-config-'));
  const configFile = path.join(dir, 'config.yaml');
  const storage = await s3StorageConfig(swift, 'missing-bucket');
  await writeFile(configFile, stringify({ listen: '127.0.0.1:0', storage: { ...storage, path: path.join(dir, 'scratch') } }));
  const result = await runCli(['serve', '--config', configFile], 60_000);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^longshore: cannot start: S3 bucket "missing-bucket" at http:\/\/127\.0\.0\.1:\d+ is not reachable: NotFound \(HTTP 404\)/);
  assert.equal(result.stderr.split('\n').length, 1, `one line: ${result.stderr}`);
});
