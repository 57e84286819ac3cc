// The record cache in front of the S3 metadata driver (storage/s3-record-cache.ts): the
// metadata contract unchanged, write-once records and private repositories' links read from
// the driver once, everything else (and every absence) read every time, cached values that
// callers cannot corrupt, and deletes by another process (a replica, gc) seen through the
// bucket's delete notice.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest, digestOf } from '../../src/protocol/digest.js';
import { inProcessCoordinator } from '../../src/coordination/in-process.js';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { collectGarbage } from '../../src/lifecycle/gc.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { CoordinatedMetadataStore, type MetadataDriver } from '../../src/storage/metadata-store.js';
import { RecordCache } from '../../src/storage/s3-record-cache.js';
import { metadataStoreContract } from '../support/metadata-store-contract.js';

metadataStoreContract('record cache over memory', () => Promise.resolve(new RecordCache(new MemoryMetadataDriver())));

/** A driver that counts the reads that reach it, per key. */
class CountingDriver extends MemoryMetadataDriver {
  readonly reads = new Map<string, number>();
  override async get<T>(key: string): Promise<T | undefined> {
    this.reads.set(key, (this.reads.get(key) ?? 0) + 1);
    return super.get<T>(key);
  }
}

const digest = parseDigest(digestOf(Buffer.from('a manifest')));
const imageId = 'a'.repeat(64);

async function readTimes(driver: MetadataDriver, key: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await driver.get(key);
}

test('write-once records (manifest records, v1 chains, completed private v1 images) and private links reach the driver once', async () => {
  const inner = new CountingDriver();
  const keys = [
    metadataKeys.manifest(digest),
    metadataKeys.v1MirrorChain('hub', digest),
    `${metadataKeys.v1PrivateImages}/${imageId}`,
    metadataKeys.localManifest('corp/app', digest),
    metadataKeys.localLayer('corp/app', digest),
  ];
  await inner.put(keys[0]!, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 });
  await inner.put(keys[1]!, { top: imageId });
  await inner.put(keys[2]!, { id: imageId, json: 'e30=', ancestry: [imageId], complete: true });
  await inner.put(keys[3]!, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 });
  await inner.put(keys[4]!, { size: 10 });
  const cache = new RecordCache(inner);
  for (const key of keys) {
    await readTimes(cache, key, 5);
    assert.equal(inner.reads.get(key), 1, key);
  }
  assert.equal(inner.reads.get(metadataKeys.recordsChanged), 1, 'the delete notice, read once within its interval');
});

test('mutable records, incomplete v1 pushes and absent records are read from the driver every time', async () => {
  const inner = new CountingDriver();
  const mutable = [
    metadataKeys.mirrorTag('hub', 'library/alpine', 'latest'),
    metadataKeys.localTag('corp/app', 'v1'),
    metadataKeys.privateBlob(digest),
    metadataKeys.provenance(digest),
    `${metadataKeys.v1MirroredImagesOf('hub')}/${imageId}`,
    `${metadataKeys.v1PrivateImages}/${imageId}`, // not complete yet
  ];
  for (const key of mutable) await inner.put(key, key.startsWith('v1/') ? { id: imageId, complete: false } : { digest: digest.text });
  const absent = metadataKeys.manifest(parseDigest(digestOf(Buffer.from('not stored'))));
  const cache = new RecordCache(inner);
  for (const key of [...mutable, absent]) {
    await readTimes(cache, key, 3);
    assert.equal(inner.reads.get(key), 3, key);
  }
  // A record written after its absence was read is found: absence is never cached.
  await cache.put(absent, { mediaType: 'x', size: 1 });
  assert.deepEqual(await cache.get(absent), { mediaType: 'x', size: 1 });
});

test('a push that completes is cached from its write; a delete forgets it; callers cannot change what is cached', async () => {
  const inner = new CountingDriver();
  const cache = new RecordCache(inner);
  const key = `${metadataKeys.v1PrivateImages}/${imageId}`;
  await cache.put(key, { id: imageId, complete: false });
  await cache.put(key, { id: imageId, complete: true, layer: { digest: digest.text, size: 3 } });
  const first = await cache.get<{ layer: { size: number } }>(key);
  assert.equal(inner.reads.get(key), undefined, 'served from the write');
  first!.layer.size = 999;
  assert.equal((await cache.get<{ layer: { size: number } }>(key))!.layer.size, 3);
  assert.equal(await cache.delete(key), true);
  assert.equal(await cache.get(key), undefined);
  assert.equal(inner.reads.get(key), 1);
});

test('a write that fails leaves nothing cached', async () => {
  const inner = new CountingDriver();
  const cache = new RecordCache(inner);
  const key = metadataKeys.manifest(digest);
  await cache.put(key, { mediaType: 'old', size: 1 });
  inner.put = () => Promise.reject(new Error('bucket refused'));
  await assert.rejects(cache.put(key, { mediaType: 'new', size: 1 }), /bucket refused/);
  assert.deepEqual(await cache.get(key), { mediaType: 'old', size: 1 }, 'read again from the driver, which kept the old value');
  assert.equal(inner.reads.get(key), 1);
});

test('the cache is bounded in bytes: the least recently used records go', async () => {
  const inner = new CountingDriver();
  const cache = new RecordCache(inner, { maxBytes: 4096 });
  const keys = Array.from({ length: 20 }, (_, i) => metadataKeys.manifest(parseDigest(digestOf(Buffer.from(`m${i}`)))));
  for (const key of keys) await inner.put(key, { mediaType: 'x'.repeat(200), size: 1 });
  for (const key of keys) await cache.get(key);
  for (const key of keys.slice(15)) await cache.get(key);
  await cache.get(keys[0]!);
  for (const key of keys.slice(15)) assert.equal(inner.reads.get(key), 1, 'the most recent stay');
  assert.equal(inner.reads.get(keys[0]!), 2, 'the oldest was dropped and read again');
});

test('a link deleted by another process (a replica on the same bucket) is no longer served from memory once the notice is read', async () => {
  const bucket = new CountingDriver();
  const key = metadataKeys.localManifest('corp/app', digest);
  await bucket.put(key, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 });
  const deleting = new RecordCache(bucket);
  const serving = new RecordCache(bucket, { noticeCheckMs: 0 });
  for (let i = 0; i < 3; i++) assert.ok(await serving.get(key));
  assert.equal(bucket.reads.get(key), 1, 'cached');
  assert.equal(await deleting.delete(key), true);
  assert.equal(await serving.get(key), undefined, 'the notice made the serving process forget it');
  // A delete of a record nobody caches writes no notice.
  const notices = await bucket.get(metadataKeys.recordsChanged);
  await bucket.put(metadataKeys.localTag('corp/app', 'v1'), { digest: digest.text });
  await deleting.delete(metadataKeys.localTag('corp/app', 'v1'));
  assert.deepEqual(await bucket.get(metadataKeys.recordsChanged), notices);
});

test('gc in another process deleting a cached manifest record: the serving process no longer returns it', async () => {
  // One bucket; the server and a gc beside it each have their own cache over it.
  const bucket = new MemoryMetadataDriver();
  const blobs = new MemoryBlobStore();
  await blobs.init();
  const serving = new RecordCache(bucket, { noticeCheckMs: 0 });
  const gcMetadata = new CoordinatedMetadataStore(new RecordCache(bucket), inProcessCoordinator().locks);
  const privateContent = new InProcessPrivateContent(gcMetadata);
  await privateContent.load();
  // A manifest record whose manifest blob is gone (evicted): gc drops the dangling record.
  const key = metadataKeys.manifest(digest);
  await serving.put(key, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 10 });
  assert.ok(await serving.get(key));
  const report = await collectGarbage({ blobs, metadata: gcMetadata, privateContent }, { dryRun: false, graceMs: 0 });
  assert.equal(report.removedRecords, 1);
  assert.equal(await bucket.get(key), undefined, 'gone from the bucket');
  assert.equal(await serving.get(key), undefined, 'and from what the server serves');
});
