// The staging ring of fs temp files (src/storage/direct-staging.ts) on a real temp file: blocks
// are written over only once written and hashed, and a download waits for its furthest reader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirectStaging, MAX_DIRECT_WRITES, STAGED_BYTES_PER_WRITER } from '../../src/storage/direct-staging.js';
import { pollUntil } from '../harness/wait.js';
import { STAGING_BLOCK_BYTES } from '../../src/storage/direct-io.js';

async function tempFile(t: test.TestContext) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-staging-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'blob');
  const handle = await open(file, 'w+');
  t.after(() => handle.close());
  return { file, staged: { buffered: () => Promise.resolve(handle), direct: () => Promise.resolve(undefined) } };
}

/** Whether `promise` settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true), sleep(ms).then(() => false)]);
}

test('staging: a download waits for a reader that keeps up before writing over the block it reads, and goes on as soon as the reader is past it', async (t) => {
  const { file, staged } = await tempFile(t);
  // Readers waited for as long as the test runs: only the reader's progress can free the block.
  const staging = new DirectStaging(staged, () => undefined, { patienceMs: 60_000, idleMs: 60_000 });
  const bytes = randomBytes(STAGED_BYTES_PER_WRITER + STAGING_BLOCK_BYTES);
  staging.readerAt(1000); // a reader in the first block
  assert.equal(staging.take(bytes.subarray(0, STAGED_BYTES_PER_WRITER)), undefined, 'the ring takes its own size at once');
  const waiting = staging.take(bytes.subarray(STAGED_BYTES_PER_WRITER));
  assert.ok(waiting, 'a block past the ring waits');
  // The first block is written long before this; it is kept for the reader.
  assert.equal(await settlesWithin(waiting, 300), false, 'the download waits while the reader is in the oldest block');
  const back = Buffer.alloc(64 * 1024);
  const read = staging.read(back, 1000, back.byteLength);
  assert.ok(Buffer.isBuffer(read) && read.equals(bytes.subarray(1000, 1000 + read.byteLength)), 'the reader gets its bytes from memory');
  staging.readerAt(STAGING_BLOCK_BYTES); // past the first block
  assert.equal(await settlesWithin(waiting, 5_000), true, 'and the download goes on once the reader is past it');
  await staging.finish();
  assert.ok((await readFile(file)).equals(bytes), 'every byte is in the file, once, in order');
});

test('staging: a reader that stopped, or none, does not hold the download up past the patience', async (t) => {
  const { file, staged } = await tempFile(t);
  const staging = new DirectStaging(staged, () => undefined, { patienceMs: 20, idleMs: 60_000 });
  const bytes = randomBytes(3 * STAGED_BYTES_PER_WRITER + 777);
  staging.readerAt(10);
  for (let at = 0; at < bytes.byteLength; at += 64 * 1024) await staging.take(bytes.subarray(at, at + 64 * 1024));
  await staging.finish();
  assert.ok((await readFile(file)).equals(bytes));
  // Bytes before the blocks still in memory come from the file.
  const far = staging.read(Buffer.alloc(16), 5, 16);
  assert.ok(!Buffer.isBuffer(far) && far.fileEnd === bytes.byteLength, 'after finish every byte is read from the file');
});

test('staging: a filesystem that opens O_DIRECT but refuses the writes (EINVAL) gets them through the ordinary descriptor, every byte in place', async (t) => {
  const { file, staged } = await tempFile(t);
  let refused = 0;
  // An in-process fake for the edge case: a descriptor whose every write fails as such a filesystem's would.
  const refusing = {
    writev: () => {
      refused += 1;
      return Promise.reject(Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' }));
    },
  } as unknown as FileHandle;
  const staging = new DirectStaging({ buffered: staged.buffered, direct: () => Promise.resolve(refusing) }, () => undefined);
  const bytes = randomBytes(3 * STAGING_BLOCK_BYTES + 5);
  for (let at = 0; at < bytes.byteLength; at += 64 * 1024) await staging.take(bytes.subarray(at, at + 64 * 1024));
  await staging.finish();
  assert.ok(refused >= 1 && refused <= 2, `the direct descriptor was tried, then left alone (${refused} tries; two writes may be in flight)`);
  assert.ok((await readFile(file)).equals(bytes));
});

test('staging: a block full while two direct writes are in flight goes through the page cache instead of waiting for them', async (t) => {
  const { file, staged } = await tempFile(t);
  const buffered = await staged.buffered();
  // An in-process fake for a slow device: direct writes land only when the test lets them.
  const held: Array<() => void> = [];
  const slowDirect = {
    writev: (buffers: Buffer[], position: number) =>
      new Promise((resolve, reject) => {
        held.push(() => void buffered.writev(buffers, position).then(resolve, reject));
      }),
  } as unknown as FileHandle;
  const staging = new DirectStaging({ buffered: staged.buffered, direct: () => Promise.resolve(slowDirect) }, () => undefined);
  const bytes = randomBytes(3 * STAGING_BLOCK_BYTES + 100);
  assert.equal(staging.take(bytes.subarray(0, 3 * STAGING_BLOCK_BYTES)), undefined);
  await pollUntil(async () => held.length === MAX_DIRECT_WRITES && (await readFile(file)).byteLength === 3 * STAGING_BLOCK_BYTES, { timeoutMs: 10_000, intervalMs: 10, what: 'the third block written through the page cache' });
  const third = (await readFile(file)).subarray(2 * STAGING_BLOCK_BYTES);
  assert.ok(third.equals(bytes.subarray(2 * STAGING_BLOCK_BYTES, 3 * STAGING_BLOCK_BYTES)), 'the third block is in the file while the first two wait on the device');
  assert.equal(held.length, MAX_DIRECT_WRITES, 'no third direct write was started');
  assert.equal(staging.take(bytes.subarray(3 * STAGING_BLOCK_BYTES)), undefined);
  const finishing = staging.finish();
  for (const release of held.splice(0)) release();
  await finishing;
  assert.ok((await readFile(file)).equals(bytes));
});
