// writeBody: how a body arriving in chunks goes into the client's response (S3 hits, fetches in
// progress), with in-memory streams standing in for undici's body and the response.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import { WRITE_QUEUE_BYTES, writeBody } from '../../src/storage/write-body.js';
import { SCAVENGE_EVERY_BYTES, churnScavenges } from '../../src/util/buffer-churn.js';
import { recordingSink } from '../support/recording-sink.js';

const CHUNK = 64 * 1024;

/** A body that sends `bytes` in 64 KiB chunks (undici's size), then ends unless told not to. */
function body(bytes: Buffer, options: { end?: boolean } = {}): PassThrough {
  const source = new PassThrough({ highWaterMark: CHUNK });
  // The store's own listener (getObject): an 'error' nobody else takes is no crash.
  source.on('error', () => undefined);
  void (async () => {
    for (let at = 0; at < bytes.length; at += CHUNK) {
      if (source.destroyed) return;
      if (!source.write(bytes.subarray(at, at + CHUNK))) await new Promise((resolve) => source.once('drain', resolve));
    }
    if (options.end ?? true) source.end();
  })();
  return source;
}

test('writeBody sends the whole body, or the range after `skip`, across chunk boundaries', async () => {
  const bytes = randomBytes(5 * CHUNK + 123);
  for (const [skip, length] of [
    [0, bytes.length],
    [0, 1],
    [0, CHUNK + 1],
    [CHUNK - 1, 2],
    [3 * CHUNK + 5, bytes.length - (3 * CHUNK + 5)],
    [7, 0],
  ] as const) {
    const source = body(bytes);
    const { destination, received, finished } = recordingSink();
    await writeBody({ body: source, skip, size: bytes.length }, length, destination);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(finished(), `ended cleanly: skip ${skip}, length ${length}`);
    assert.ok(received().equals(bytes.subarray(skip, skip + length)), `bytes of skip ${skip}, length ${length}`);
  }
});

test('writeBody lets a body read to its end end by itself (undici reuses the connection), and drops one that holds more', async () => {
  const bytes = randomBytes(3 * CHUNK);
  const whole = body(bytes);
  await writeBody({ body: whole, skip: 0, size: bytes.length }, bytes.length, recordingSink().destination);
  assert.ok(whole.readableEnded, 'the whole body ended');

  const more = body(bytes, { end: false });
  await writeBody({ body: more, skip: 0, size: bytes.length }, CHUNK, recordingSink().destination);
  assert.ok(more.destroyed, 'a body with more than the range is destroyed once the range is sent');
});

test('writeBody: a body that fails or ends short destroys the response, which never ends cleanly', async () => {
  const bytes = randomBytes(4 * CHUNK);
  const failing = body(bytes, { end: false });
  const failed = recordingSink();
  failing.once('data', () => setImmediate(() => failing.destroy(new Error('socket hang up'))));
  await writeBody({ body: failing, skip: 0, size: bytes.length }, bytes.length, failed.destination);
  assert.equal(failed.destination.errored?.message, 'socket hang up');
  assert.ok(!failed.finished(), 'no clean end');

  const short = recordingSink();
  await writeBody({ body: body(bytes.subarray(0, 3 * CHUNK)), skip: 0, size: bytes.length }, bytes.length, short.destination);
  assert.match(short.destination.errored?.message ?? '', /body ended 65536 bytes short/);
  assert.ok(!short.finished(), 'no clean end');
});

test('writeBody holds at most WRITE_QUEUE_BYTES and a chunk in a stalled response, and the rest follows once it drains', { timeout: 10_000 }, async () => {
  const bytes = randomBytes(8 * 1024 * 1024 + 3);
  const parts: Buffer[] = [];
  const held: Array<() => void> = [];
  const destination = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      parts.push(Buffer.from(chunk));
      held.push(callback);
    },
  });
  const sent = writeBody({ body: body(bytes), skip: 0, size: bytes.length }, bytes.length, destination);
  await new Promise((resolve) => setTimeout(resolve, 300)); // time to read far ahead, if it would
  const waiting = destination.writableLength;
  assert.ok(waiting > 0, 'something was sent');
  assert.ok(waiting <= WRITE_QUEUE_BYTES + CHUNK, `${waiting} bytes given to a stalled destination`);
  const release = setInterval(() => held.splice(0).forEach((done) => done()), 1);
  await sent;
  await new Promise((resolve) => destination.once('finish', resolve));
  clearInterval(release);
  assert.ok(Buffer.concat(parts).equals(bytes), 'every byte, in order, once drained');
});

test('writeBody stops and destroys the body when the response goes away, before or during the send', { timeout: 10_000 }, async () => {
  const bytes = randomBytes(8 * CHUNK);
  const source = body(bytes, { end: false });
  let received = 0;
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received >= 2 * CHUNK) destination.destroy();
      callback();
    },
  });
  await writeBody({ body: source, skip: 0, size: bytes.length }, bytes.length, destination);
  assert.ok(source.destroyed, 'the body is destroyed');

  const late = body(bytes);
  const gone = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  gone.destroy();
  await new Promise((resolve) => setImmediate(resolve));
  await writeBody({ body: late, skip: 0, size: bytes.length }, bytes.length, gone);
  assert.ok(late.destroyed, 'the body of a send to a closed response is destroyed');
});

test('writeBody counts the chunks of a fresh body (an S3 GET) towards the early scavenges, and not views counted where they came from', async () => {
  const bytes = randomBytes(3 * SCAVENGE_EVERY_BYTES);
  const counted = async (options: { freshChunks?: boolean }) => {
    const before = churnScavenges();
    const { destination, received } = recordingSink();
    await writeBody({ body: body(bytes), skip: 0, size: bytes.length }, bytes.length, destination, options);
    assert.ok(received().equals(bytes));
    return churnScavenges() - before;
  };
  assert.equal(await counted({}), 0);
  const fresh = await counted({ freshChunks: true });
  // Three thresholds' worth, plus whatever earlier bytes left counted: three or four.
  assert.ok(fresh === 3 || fresh === 4, `${fresh} scavenges`);
});
