import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, readlink, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { FsBlobStore, MAX_UNFLUSHED_BYTES } from '../../src/storage/fs-blob-store.js';
import { STAGED_BYTES_PER_WRITER } from '../../src/storage/direct-staging.js';
import { MAX_SPARE_FILES, MIN_SPARE_BYTES, SPARE_FILE_PREFIX } from '../../src/storage/spare-files.js';
import { READ_CHUNK_BYTES } from '../../src/storage/blob-store.js';
import { hashThreadCount, setHashThreadIdleMs, terminateHashThreads } from '../../src/storage/file-hasher.js';
import { blobStoreContract } from '../support/blob-store-contract.js';
import { parseConfig } from '../../src/config/load.js';
import { openStorage } from '../../src/storage/open-storage.js';
import { pino } from 'pino';
import { pollUntil } from '../harness/wait.js';
import { O_DIRECT } from '../../src/storage/direct-io.js';

async function newStore(options: { directWrites?: boolean } = {}): Promise<FsBlobStore> {
  const store = new FsBlobStore(await mkdtemp(path.join(os.tmpdir(), 'ls-blobs-')), options);
  await store.init();
  return store;
}

blobStoreContract('fs', () => newStore());
// The S3 driver's scratch store, and any fs store with spares, writes through the page cache.
blobStoreContract('fs (page cache)', () => newStore({ directWrites: false }));

test('fs: blobs live at blobs/<algorithm>/<2 hex>/<hex>', async () => {
  const store = await newStore();
  const bytes = Buffer.from('layer');
  const digest = parseDigest(digestOf(bytes));
  await store.put(digest, bytes);
  assert.deepEqual(await readdir(path.join(store.root, 'blobs', 'sha256', digest.hex.slice(0, 2))), [digest.hex]);
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
});

test('fs: start-up removes temp files a crash left behind, and never serves them', async () => {
  const store = await newStore();
  const bytes = Buffer.from('partial layer');
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  await writer.write(bytes.subarray(0, 4)); // a crash here leaves a temp file
  writer.close();
  assert.equal((await readdir(path.join(store.root, 'tmp'))).length, 1);

  const restarted = new FsBlobStore(store.root);
  await restarted.init();
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
  assert.equal(await restarted.open(digest), undefined);
});

test('fs: written bytes are readable through the writer at once, and commit waits until all are in the file', async () => {
  const store = await newStore();
  // More than the writer keeps in memory (8 MiB), in network-sized chunks: write() must wait
  // for the file to catch up, and reads must come from memory and from the file.
  const bytes = Buffer.alloc(12 * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(i, i);
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  const chunk = 64 * 1024;
  for (let offset = 0; offset < bytes.length; offset += chunk) {
    await writer.write(bytes.subarray(offset, offset + chunk));
    assert.equal(writer.bytesWritten, offset + chunk);
    const back = await writer.readAt(offset, chunk);
    assert.ok(back.byteLength > 0 && bytes.subarray(offset, offset + back.byteLength).equals(back), `read back at ${offset}`);
  }
  const early = await writer.readAt(0, 1024 * 1024);
  assert.ok(bytes.subarray(0, early.byteLength).equals(early));
  await writer.commit(bytes.length);
  writer.close();
  const handle = await store.open(digest);
  assert.ok(handle);
  const chunks: Buffer[] = [];
  for await (const piece of handle.stream()) chunks.push(piece as Buffer);
  assert.ok(Buffer.concat(chunks).equals(bytes));
});

for (const [mode, bound] of [
  ['page cache', MAX_UNFLUSHED_BYTES],
  ['direct', STAGED_BYTES_PER_WRITER],
] as const) {
  test(`fs (${mode}): writeNow takes chunks without a promise until ${bound} bytes wait for the file, then answers one to wait for`, async () => {
    const store = await newStore({ directWrites: mode === 'direct' });
    const bytes = randomBytes(12 * 1024 * 1024);
    const digest = parseDigest(digestOf(bytes));
    const writer = await store.createWriter(digest);
    assert.ok(typeof writer.writeNow === 'function', 'the fs writer has the fast path');
    const chunk = 64 * 1024;
    let firstWait: number | undefined;
    for (let offset = 0; offset < bytes.length; offset += chunk) {
      const waiting = writer.writeNow?.(bytes.subarray(offset, offset + chunk));
      assert.equal(writer.bytesWritten, offset + chunk, 'taken at once');
      if (waiting) {
        firstWait ??= offset + chunk;
        await waiting;
      }
    }
    // Nothing was awaited before the first wait, so the file could not have caught up: the
    // first promise comes exactly past the bound.
    assert.equal(firstWait, bound + chunk);
    await writer.commit(bytes.length);
    writer.close();
    assert.ok((await store.readAll(digest, bytes.length))?.equals(bytes));
    const closed = await store.createWriter(digest);
    await closed.abort();
    assert.throws(() => closed.writeNow?.call(closed, Buffer.from('late')), /write after aborted/);
  });
}

/** Descriptors of this process open on `file`, with their open flags (/proc/self/fdinfo). */
// The platform's O_DIRECT bit, as /proc/PID/fdinfo reports it in the flags (Linux: these tests need it).
const O_DIRECT_FLAG = O_DIRECT ?? 0o40000;

async function descriptorFlags(file: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== file) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    const octal = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
    if (octal !== undefined) flags.push(parseInt(octal, 8));
  }
  return flags;
}

test('fs direct: a big blob goes to the file through an O_DIRECT descriptor, and reads at any point during the write (blocks, waiting chunks, the file) give its bytes', async () => {
  const store = await newStore();
  const bytes = randomBytes(5 * STAGED_BYTES_PER_WRITER + 12_345);
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  const tempDir = path.join(store.root, 'tmp');
  const [tempName] = await readdir(tempDir);
  assert.ok(tempName);
  const buffer = Buffer.alloc(READ_CHUNK_BYTES);
  let checks = 0;
  for (let at = 0, size = 1000; at < bytes.byteLength; at += size, size = ((size * 7) % 400_000) + 1) {
    const waiting = writer.writeNow?.(bytes.subarray(at, at + size));
    // Some waits not awaited at once: reads then also hit chunks still waiting for a block.
    if (waiting && checks % 3 === 0) await waiting;
    else if (waiting) waiting.catch(() => undefined);
    const written = writer.bytesWritten;
    for (const position of [0, written - 1, Math.floor(written / 2), Math.max(0, written - STAGED_BYTES_PER_WRITER - 5)]) {
      const got = await writer.readInto?.(buffer, position, buffer.byteLength);
      assert.ok(got && got.byteLength > 0, `bytes at ${position} of ${written}`);
      assert.ok(got.equals(bytes.subarray(position, position + got.byteLength)), `the right bytes at ${position} of ${written}`);
      checks += 1;
    }
  }
  const flags = await descriptorFlags(path.join(tempDir, tempName));
  assert.ok(flags.some((flag) => (flag & O_DIRECT_FLAG) !== 0), `an O_DIRECT descriptor is open on the temp file (flags ${flags.map((f) => f.toString(8)).join(', ')})`);
  assert.equal((await writer.commit(bytes.length)).text, digest.text);
  writer.close();
  assert.ok((await store.readAll(digest, bytes.length))?.equals(bytes));
});

test('fs direct: one wrong byte in a block hashed in place is refused, and a reader that stopped does not hold the writer up', { timeout: 20_000 }, async () => {
  const store = await newStore();
  const bytes = randomBytes(4 * STAGED_BYTES_PER_WRITER);
  const digest = parseDigest(digestOf(bytes));
  const tampered = Buffer.from(bytes);
  tampered[STAGED_BYTES_PER_WRITER + 3] = (tampered[STAGED_BYTES_PER_WRITER + 3] ?? 0) ^ 1;
  const writer = await store.createWriter(digest);
  writer.readerAt?.(10); // a reader that read ten bytes and then never again
  await writeInChunks(writer, tampered);
  await assert.rejects(writer.commit(bytes.length), /digest/);
  writer.close();
  assert.equal(await store.stat(digest), undefined);
});

/** A destination that copies what it is given only later, the way a slow socket would hold on to it. */
function slowSink(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback) {
      setImmediate(() => {
        parts.push(Buffer.from(chunk)); // the copy is made after other work ran meanwhile
        callback();
      });
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

test('fs: writeTo sends whole blobs and ranges through pooled buffers, concurrently, without mixing bytes up', async () => {
  const store = await newStore();
  const blobs = [randomBytes(3 * 1024 * 1024 + 17), randomBytes(2 * 1024 * 1024 + 5)];
  for (const bytes of blobs) await store.put(parseDigest(digestOf(bytes)), bytes);
  const sends = blobs.flatMap((bytes) =>
    [undefined, { start: 1000, end: 2 * 1024 * 1024 }].map(async (range) => {
      const handle = await store.open(parseDigest(digestOf(bytes)));
      const writeTo = handle?.writeTo?.bind(handle);
      assert.ok(writeTo);
      const { sink, bytes: received } = slowSink();
      await Promise.all([writeTo(sink, range), finished(sink)]);
      const expected = range ? bytes.subarray(range.start, range.end + 1) : bytes;
      assert.ok(received().equals(expected), `blob of ${bytes.length} bytes, range ${JSON.stringify(range)}`);
    }),
  );
  await Promise.all(sends);
});

test('fs: writeTo respects a stalled destination: at most two read buffers wait in it, and the rest follows once it drains', { timeout: 10_000 }, async () => {
  const store = await newStore();
  const bytes = randomBytes(8 * 1024 * 1024 + 3);
  await store.put(parseDigest(digestOf(bytes)), bytes);
  const handle = await store.open(parseDigest(digestOf(bytes)));
  const writeTo = handle?.writeTo?.bind(handle);
  assert.ok(writeTo);
  // A client that reads nothing: every write waits until released. A hit's memory per client
  // is what it has handed to the socket and not had back, so this is the bound that matters.
  const parts: Buffer[] = [];
  const held: Array<() => void> = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback) {
      parts.push(Buffer.from(chunk));
      held.push(callback);
    },
  });
  const sent = Promise.all([writeTo(sink), finished(sink)]);
  await new Promise((resolve) => setTimeout(resolve, 300)); // time to read far ahead, if it would
  // writableLength: bytes written to the destination and not yet called back, queued or not.
  const waiting = sink.writableLength;
  assert.ok(waiting > 0, 'something was sent');
  assert.ok(waiting <= 2 * READ_CHUNK_BYTES, `${waiting} bytes given to a stalled destination`);
  const release = setInterval(() => held.splice(0).forEach((done) => done()), 1);
  await sent;
  clearInterval(release);
  assert.ok(Buffer.concat(parts).equals(bytes), 'every byte, in order, once drained');
});

test('fs: writeTo stops reading and closes the file when the destination goes away', { timeout: 10_000 }, async () => {
  const store = await newStore();
  const bytes = randomBytes(8 * 1024 * 1024);
  await store.put(parseDigest(digestOf(bytes)), bytes);
  const blobFile = store.blobPath(parseDigest(digestOf(bytes)));
  // Descriptors of this process open on the blob's file (Linux: /proc/self/fd links).
  const openOnBlob = async () => {
    const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
    return links.filter((link) => link === blobFile).length;
  };
  const handle = await store.open(parseDigest(digestOf(bytes)));
  const writeTo = handle?.writeTo?.bind(handle);
  assert.ok(writeTo);
  assert.equal(await openOnBlob(), 1);
  let received = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > 1024 * 1024) sink.destroy();
      callback();
    },
  });
  await writeTo(sink);
  assert.ok(received < bytes.length, 'stopped early');
  assert.equal(await openOnBlob(), 0, 'the blob file is closed');

  // A destination gone before the send starts (its 'close' already fired): settles, closes.
  const late = await store.open(parseDigest(digestOf(bytes)));
  const lateWriteTo = late?.writeTo?.bind(late);
  assert.ok(lateWriteTo);
  const gone = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  gone.destroy();
  await new Promise((resolve) => setImmediate(resolve));
  await lateWriteTo(gone);
  assert.equal(await openOnBlob(), 0, 'the blob file is closed after a send to a closed destination');
});

test('fs: a suspended writer holds no descriptor, and reopens on the next write with bytes and hash whole', async () => {
  const store = await newStore();
  const bytes = randomBytes(200_000);
  const writer = await store.createWriter();
  const descriptors = async () => (await readdir('/proc/self/fd')).length;
  const open = await descriptors();
  await writer.write(bytes.subarray(0, 120_000));
  await writer.suspend?.();
  assert.equal(await descriptors(), open - 1, 'suspend closed the temp file');
  await writer.write(bytes.subarray(120_000));
  assert.ok((await writer.readAt(0, 10)).equals(bytes.subarray(0, 10)));
  assert.equal((await writer.commit(bytes.byteLength)).text, digestOf(bytes));
  writer.close();
  const handle = await store.open(parseDigest(digestOf(bytes)));
  assert.equal(handle?.size, bytes.byteLength);
  await handle?.close();
});

// Past 1 MiB the digest is computed by a worker thread reading the temp file back, handed 4 MiB
// at a time: this size takes two full requests and a remainder handed over by commit().
const BIG = 9 * 1024 * 1024 + 12_345;

/** Writes `bytes` in uneven chunks, as a network body arrives. */
async function writeInChunks(writer: { write(chunk: Uint8Array): Promise<void> }, bytes: Buffer): Promise<void> {
  for (let at = 0, size = 1000; at < bytes.byteLength; at += size, size = (size * 7) % 300_000 + 1) await writer.write(bytes.subarray(at, at + size));
}

test('fs: a big write is hashed off the event loop: the right bytes commit, one wrong byte anywhere is refused and leaves nothing', async () => {
  const store = await newStore();
  const bytes = randomBytes(BIG);
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  await writeInChunks(writer, bytes);
  assert.equal((await writer.commit(bytes.byteLength)).text, digest.text);
  writer.close();
  assert.equal((await store.stat(digest))?.size, BIG);

  // A byte flipped in the first MiB (hashed inline before the switch), and one in each request.
  for (const position of [100, 2 * 1024 * 1024 + 5, 6 * 1024 * 1024 + 7, BIG - 3]) {
    const other = randomBytes(BIG);
    const otherDigest = parseDigest(digestOf(other));
    const wrong = Buffer.from(other);
    wrong[position] = wrong[position]! ^ 0x01;
    const bad = await store.createWriter(otherDigest);
    await writeInChunks(bad, wrong);
    await assert.rejects(bad.commit(BIG), /content digest mismatch/);
    bad.close();
    assert.equal(await store.stat(otherDigest), undefined);
    assert.deepEqual(await readdir(path.join(store.root, 'tmp')), [], 'the temp file is gone');
  }
});

test('fs: an upload without a digest gets the digest of its bytes from the hash thread, across suspends', async () => {
  const store = await newStore();
  const bytes = randomBytes(BIG);
  const writer = await store.createWriter();
  await writer.write(bytes.subarray(0, 1_500_000));
  await writer.suspend?.();
  await writer.write(bytes.subarray(1_500_000, 5_000_000));
  await writer.suspend?.();
  await writer.write(bytes.subarray(5_000_000));
  assert.equal((await writer.commit(BIG)).text, digestOf(bytes));
  writer.close();
});

test('fs: a hash thread that dies fails the writes it was hashing (no hang), and the next write gets a fresh thread', { timeout: 20_000 }, async () => {
  const store = await newStore();
  const bytes = randomBytes(BIG);
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  await writeInChunks(writer, bytes);
  await terminateHashThreads();
  await assert.rejects(writer.commit(BIG), /hash worker thread exited/);
  writer.close();
  assert.equal(await store.stat(digest), undefined, 'nothing unverified is stored');
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);

  const again = await store.createWriter(digest);
  await writeInChunks(again, bytes);
  assert.equal((await again.commit(BIG)).text, digest.text);
  again.close();
});

test('fs: an idle hash thread ends (its ~9 MB given back), and the next big write starts a fresh one', { timeout: 30_000 }, async (t) => {
  const idleMs = setHashThreadIdleMs(500);
  t.after(() => setHashThreadIdleMs(idleMs));
  const store = await newStore();
  const bytes = randomBytes(BIG);
  const digest = parseDigest(digestOf(bytes));
  const writer = await store.createWriter(digest);
  await writeInChunks(writer, bytes);
  assert.equal(hashThreadCount(), 1, 'a big write has a hash thread');
  assert.equal((await writer.commit(BIG)).text, digest.text);
  writer.close();
  await pollUntil(() => Promise.resolve(hashThreadCount() === 0), { timeoutMs: 15_000, what: 'the idle hash thread to end' });

  const other = randomBytes(BIG);
  const again = await store.createWriter(parseDigest(digestOf(other)));
  await writeInChunks(again, other);
  assert.equal(hashThreadCount(), 1);
  assert.equal((await again.commit(BIG)).text, digestOf(other));
  again.close();
});

void test('a serving store whose hash thread is idle lets the process exit', async () => {
  // Regression: the worker was unref'd before its 'message' listener was attached, which
  // re-ref'd it, so every process that opened a serving store never exited on its own.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'longshore-hash-exit-'));
  const storeModule = new URL('../../src/storage/fs-blob-store.ts', import.meta.url).href;
  const digestModule = new URL('../../src/protocol/digest.ts', import.meta.url).href;
  // A big write starts the thread; once committed it is idle (and ends only seconds later).
  const script = [
    `const { FsBlobStore } = await import(${JSON.stringify(storeModule)});`,
    `const { digestOf, parseDigest } = await import(${JSON.stringify(digestModule)});`,
    `const store = new FsBlobStore(${JSON.stringify(dir)}); await store.init();`,
    `const bytes = Buffer.alloc(${BIG}, 7); const writer = await store.createWriter(parseDigest(digestOf(bytes)));`,
    `await writer.write(bytes); await writer.commit(bytes.byteLength); writer.close();`,
  ].join(' ');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
  const exitCode = await new Promise<number | null | 'still running'>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running');
    }, 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  assert.equal(exitCode, 0);
});

// Spare files (spare-files.ts): the S3 driver's scratch store keeps aborted writers' files for
// later writers to write over.
async function storeWithSpares(spareBytes = 64 * 1024 * 1024): Promise<FsBlobStore> {
  const store = new FsBlobStore(await mkdtemp(path.join(os.tmpdir(), 'ls-spares-')), { spareBytes });
  await store.init();
  return store;
}

/** tmp/'s files by name, with their inode numbers and sizes. */
async function tmpFiles(store: FsBlobStore): Promise<Array<{ name: string; ino: number; size: number }>> {
  const dir = path.join(store.root, 'tmp');
  return Promise.all((await readdir(dir)).map(async (name) => ({ name, ...(await stat(path.join(dir, name))) })));
}

/** A writer that got `bytes` and was aborted (as a scratch file is once its bytes are in S3). */
async function abortedWriter(store: FsBlobStore, bytes: Buffer): Promise<void> {
  const writer = await store.createWriter(parseDigest(digestOf(bytes)));
  await writer.write(bytes);
  await writer.verify(bytes.byteLength);
  await writer.abort();
  writer.close();
}

test('fs spares: an aborted file is kept, and the next writer writes over it; bytes past its own are never read, hashed or committed', async () => {
  const store = await storeWithSpares();
  const first = randomBytes(3 * 1024 * 1024);
  await abortedWriter(store, first);
  const [spare, ...others] = await tmpFiles(store);
  assert.equal(others.length, 0);
  assert.ok(spare !== undefined && spare.name.startsWith(SPARE_FILE_PREFIX), "the file is kept as a spare");
  assert.equal(spare.size, first.byteLength);
  assert.deepEqual(store.spareFiles, { count: 1, bytes: first.byteLength });

  const second = randomBytes(2 * 1024 * 1024 + 7);
  const digest = parseDigest(digestOf(second));
  const writer = await store.createWriter(digest);
  const [reused] = await tmpFiles(store);
  assert.equal(reused?.ino, spare.ino, 'the writer writes over the spare');
  assert.equal(store.spareFiles.count, 0);
  await writeInChunks(writer, second);
  assert.equal((await writer.readAt(second.byteLength, 4096)).byteLength, 0, 'nothing past the written bytes is readable');
  assert.ok((await writer.readAt(second.byteLength - 10, 4096)).equals(second.subarray(-10)));
  assert.equal((await writer.commit(second.byteLength)).text, digest.text, 'the hash covers only the written bytes');
  writer.close();
  const committed = await store.readAll(digest, 10 * 1024 * 1024);
  assert.ok(committed?.equals(second), 'the committed file was cut to the blob: no tail of the spare');
  assert.deepEqual(await tmpFiles(store), [], 'the spare became the blob');
});

test('fs spares: kept up to spareBytes and MAX_SPARE_FILES; files under MIN_SPARE_BYTES are deleted', async () => {
  const store = await storeWithSpares(5 * 1024 * 1024);
  await abortedWriter(store, randomBytes(3 * 1024 * 1024));
  await abortedWriter(store, randomBytes(MIN_SPARE_BYTES - 1));
  assert.deepEqual(store.spareFiles, { count: 1, bytes: 3 * 1024 * 1024 }, 'a small file is not kept');
  // Both at once: neither can take the other's spare, and the second is over the byte bound.
  const writers = await Promise.all([store.createWriter(), store.createWriter()]);
  for (const writer of writers) {
    await writer.write(randomBytes(3 * 1024 * 1024));
    await writer.abort();
  }
  assert.deepEqual(store.spareFiles, { count: 1, bytes: 3 * 1024 * 1024 });
  assert.equal((await tmpFiles(store)).length, 1, 'and the other file is deleted');

  const roomy = await storeWithSpares();
  const many = await Promise.all(Array.from({ length: MAX_SPARE_FILES + 3 }, () => roomy.createWriter()));
  await Promise.all(many.map(async (writer) => (await writer.write(randomBytes(MIN_SPARE_BYTES)), await writer.abort())));
  assert.equal(roomy.spareFiles.count, MAX_SPARE_FILES);
  assert.equal((await tmpFiles(roomy)).length, MAX_SPARE_FILES);
});

test('fs spares: a writer aborted with writes in flight gives its file up only after them: the next writer of the spare gets its own bytes', async () => {
  const store = await storeWithSpares();
  for (let round = 0; round < 5; round++) {
    const discarded = await store.createWriter();
    // Far more than MAX_UNFLUSHED_BYTES taken at once: batches are still being written at abort.
    for (let at = 0; at < 8 * 1024 * 1024; at += 64 * 1024) void discarded.writeNow?.(Buffer.alloc(64 * 1024, 0xee))?.catch(() => undefined);
    const aborting = discarded.abort();
    const kept = randomBytes(6 * 1024 * 1024);
    await aborting;
    const writer = await store.createWriter(parseDigest(digestOf(kept)));
    await writeInChunks(writer, kept);
    assert.equal((await writer.commit(kept.byteLength)).text, digestOf(kept), `round ${round}: the spare holds only the new writer's bytes`);
    writer.close();
    discarded.close();
  }
});

test('fs spares: when the disk is short, the spares go first; a restart clears them', async () => {
  const store = await storeWithSpares();
  await abortedWriter(store, randomBytes(2 * 1024 * 1024));
  assert.equal(store.spareFiles.count, 1);
  assert.equal(await store.hasRoomFor(2 ** 52), false, 'no disk has 4 PiB free');
  assert.equal(store.spareFiles.count, 0, 'the spares were deleted for room');
  assert.deepEqual(await tmpFiles(store), []);
  await abortedWriter(store, randomBytes(2 * 1024 * 1024));
  assert.equal(await store.hasRoomFor(1024), true);
  assert.equal(store.spareFiles.count, 1, 'kept while there is room');
  const restarted = new FsBlobStore(store.root, { spareBytes: 64 * 1024 * 1024 });
  await restarted.init();
  assert.deepEqual(await tmpFiles(restarted), [], 'start-up clears what the last process kept');
});

test('fs: without spareBytes an aborted file is deleted', async () => {
  const store = await newStore();
  await abortedWriter(store, randomBytes(2 * 1024 * 1024));
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
  assert.deepEqual(store.spareFiles, { count: 0, bytes: 0 });
});

test('storage.directWrites: false reaches the fs store: a big write opens no O_DIRECT descriptor', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-open-'));
  const storage = await openStorage(parseConfig({ storage: { path: dir, directWrites: false } }), pino({ level: 'silent' }));
  t.after(() => storage.close());
  const bytes = randomBytes(3 * 1024 * 1024);
  const writer = await storage.blobs.createWriter(parseDigest(digestOf(bytes)));
  await writer.write(bytes);
  const [tempName] = await readdir(path.join(dir, 'tmp'));
  assert.ok(tempName);
  const flags = await descriptorFlags(path.join(dir, 'tmp', tempName));
  assert.ok(flags.length > 0 && flags.every((flag) => (flag & O_DIRECT_FLAG) === 0), `no O_DIRECT descriptor (flags ${flags.map((f) => f.toString(8)).join(', ')})`);
  await writer.commit(bytes.length);
  writer.close();
});
