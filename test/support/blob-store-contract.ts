// The contract every BlobStore driver passes. A driver's test file calls
// `blobStoreContract(name, factory)`; the fs driver's is unit/fs-blob-store.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { text } from 'node:stream/consumers';
import { buffer } from 'node:stream/consumers';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { DigestMismatchError, SizeMismatchError, type BlobStore } from '../../src/storage/blob-store.js';

export function blobStoreContract(driver: string, createStore: () => Promise<BlobStore>): void {
  const sample = randomBytes(200_000);
  const sampleDigest = parseDigest(digestOf(sample));

  test(`${driver}: a put blob reads back whole and by range`, async () => {
    const store = await createStore();
    await store.put(sampleDigest, sample);
    assert.deepEqual(await store.stat(sampleDigest), { size: sample.byteLength });
    const handle = await store.open(sampleDigest);
    assert.ok(handle);
    assert.equal(handle.size, sample.byteLength);
    assert.ok((await buffer(handle.stream())).equals(sample));
    const ranged = await store.open(sampleDigest);
    assert.ok((await buffer(ranged!.stream({ start: 10, end: 19 }))).equals(sample.subarray(10, 20)));
    assert.ok((await store.readAll(sampleDigest, 1e6))?.equals(sample));
    await assert.rejects(store.readAll(sampleDigest, 10), /over the 10-byte limit/);
  });

  test(`${driver}: an empty blob is a blob`, async () => {
    const store = await createStore();
    const empty = parseDigest(digestOf(Buffer.alloc(0)));
    await store.put(empty, Buffer.alloc(0));
    const handle = await store.open(empty);
    assert.equal(handle?.size, 0);
    assert.equal(await text(handle.stream()), '');
  });

  test(`${driver}: bytes that do not match the digest never become a blob`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    await writer.write(sample.subarray(0, 1000));
    await writer.write(Buffer.from('tampered'));
    await assert.rejects(writer.commit(), DigestMismatchError);
    writer.close();
    assert.equal(await store.stat(sampleDigest), undefined);
    assert.equal(await store.open(sampleDigest), undefined);
  });

  test(`${driver}: a size different from the expected one is refused even if the hash matches`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    await writer.write(sample);
    await assert.rejects(writer.commit(sample.byteLength + 1), SizeMismatchError);
    writer.close();
    assert.equal(await store.stat(sampleDigest), undefined);
  });

  test(`${driver}: an uncommitted blob is invisible, readable through its writer, and gone after abort`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    await writer.write(sample.subarray(0, 5000));
    assert.equal(writer.bytesWritten, 5000);
    assert.equal(await store.stat(sampleDigest), undefined);
    assert.ok((await writer.readAt(100, 50)).equals(sample.subarray(100, 150)));
    assert.equal((await writer.readAt(4990, 100)).byteLength, 10, 'reads stop at what was written');
    await writer.abort();
    writer.close();
    assert.equal(await store.stat(sampleDigest), undefined);
  });

  test(`${driver}: a committed blob stays readable through a handle opened before its deletion`, async () => {
    const store = await createStore();
    await store.put(sampleDigest, sample);
    const handle = await store.open(sampleDigest);
    assert.equal(await store.delete(sampleDigest), true);
    assert.equal(await store.delete(sampleDigest), false);
    assert.equal(await store.stat(sampleDigest), undefined);
    assert.ok((await buffer(handle!.stream())).equals(sample));
  });

  test(`${driver}: a writer without an expected digest stores under the digest of what it got`, async () => {
    const store = await createStore();
    const writer = await store.createWriter();
    await writer.write(sample.subarray(0, 1000));
    await writer.write(sample.subarray(1000));
    assert.equal(writer.expected, undefined);
    const digest = await writer.commit(sample.byteLength);
    writer.close();
    assert.deepEqual(digest, sampleDigest);
    assert.ok((await store.readAll(sampleDigest, 1e6))?.equals(sample));
  });

  test(`${driver}: verify checks without publishing; commit then publishes`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    await writer.write(sample);
    assert.deepEqual(await writer.verify(sample.byteLength), sampleDigest);
    await assert.rejects(writer.write(Buffer.from('more')), /write after verify/);
    assert.equal(await store.stat(sampleDigest), undefined, 'verified is not yet published');
    await writer.commit();
    writer.close();
    assert.equal((await store.stat(sampleDigest))?.size, sample.byteLength);

    const bad = await store.createWriter(sampleDigest);
    await bad.write(sample.subarray(1));
    await assert.rejects(bad.verify(), DigestMismatchError);
    bad.close();
  });

  test(`${driver}: two writers of one blob both succeed and leave one correct copy`, async () => {
    const store = await createStore();
    const [a, b] = await Promise.all([store.createWriter(sampleDigest), store.createWriter(sampleDigest)]);
    await Promise.all([a.write(sample), b.write(sample)]);
    await Promise.all([a.commit(), b.commit()]);
    a.close();
    b.close();
    assert.ok((await store.readAll(sampleDigest, 1e6))?.equals(sample));
  });
}
