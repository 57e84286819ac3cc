// The contract every BlobStore driver passes. A driver's test file calls
// `blobStoreContract(name, factory)`: fs in unit/fs-blob-store.test.ts, memory in
// unit/memory-blob-store.test.ts; an S3 driver adds one call.
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

  test(`${driver}: list yields every committed blob once, with its size and when it was stored, and nothing staged`, async () => {
    const store = await createStore();
    const before = Date.now();
    const blobs = ['a', 'bb', 'ccc'].map((s) => Buffer.from(s));
    for (const bytes of blobs) await store.put(parseDigest(digestOf(bytes)), bytes);
    const staged = await store.createWriter(sampleDigest);
    await staged.write(sample.subarray(0, 10));
    const listed = [];
    for await (const blob of store.list()) {
      assert.ok(blob.storedAt >= before - 2000 && blob.storedAt <= Date.now() + 2000, `storedAt ${blob.storedAt} is about now`);
      listed.push({ digest: blob.digest, size: blob.size });
    }
    assert.deepEqual(
      listed.sort((x, y) => x.size - y.size),
      blobs.map((b) => ({ digest: digestOf(b), size: b.byteLength })),
    );
    await staged.abort();
    staged.close();
  });

  test(`${driver}: followers read what was written before and after the commit, through the writer`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    const half = sample.byteLength / 2;
    await writer.write(sample.subarray(0, half));
    const early = await writer.readAt(0, half);
    assert.ok(sample.subarray(0, early.byteLength).equals(early) && early.byteLength > 0);
    await writer.write(sample.subarray(half));
    await writer.commit(sample.byteLength);
    // A follower that fell behind catches up after the commit.
    const parts: Buffer[] = [];
    for (let at = 0; at < sample.byteLength; ) {
      const piece = await writer.readAt(at, 64 * 1024);
      assert.ok(piece.byteLength > 0, `bytes at ${at}`);
      parts.push(piece);
      at += piece.byteLength;
    }
    writer.close();
    assert.ok(Buffer.concat(parts).equals(sample));
  });

  test(`${driver}: sweepStaging removes staged writes older than the grace only; a dry run only counts`, async () => {
    const store = await createStore();
    const writer = await store.createWriter(sampleDigest);
    await writer.write(sample.subarray(0, 100));
    assert.equal(await store.sweepStaging({ olderThanMs: 60_000 }), 0, 'young: kept');
    const later = Date.now() + 120_000;
    assert.equal(await store.sweepStaging({ olderThanMs: 60_000, now: later, dryRun: true }), 1);
    assert.equal(await store.sweepStaging({ olderThanMs: 60_000, now: later }), 1);
    assert.equal(await store.sweepStaging({ olderThanMs: 60_000, now: later }), 0, 'gone');
    await writer.abort();
    writer.close();
    assert.equal(await store.stat(sampleDigest), undefined);
  });

  test(`${driver}: the store reports itself writable and the probe leaves nothing behind`, async () => {
    const store = await createStore();
    assert.equal(await store.checkWritable(), undefined);
    assert.equal(await store.sweepStaging({ olderThanMs: 0, now: Date.now() + 1000, dryRun: true }), 0, 'no probe left staged');
    const listed = [];
    for await (const blob of store.list()) listed.push(blob);
    assert.deepEqual(listed, []);
  });

  test(`${driver}: close() drops staged writes (shutdown); committed blobs stay`, async () => {
    const store = await createStore();
    await store.put(sampleDigest, sample);
    const other = Buffer.from('staged only');
    const writer = await store.createWriter(parseDigest(digestOf(other)));
    await writer.write(other);
    await store.close();
    await assert.rejects(writer.commit(), 'a staged write does not survive close');
    writer.close();
    assert.equal(await store.stat(parseDigest(digestOf(other))), undefined);
    assert.deepEqual(await store.stat(sampleDigest), { size: sample.byteLength });
  });
}
