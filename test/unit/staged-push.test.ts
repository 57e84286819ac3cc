// The one write sequence of pushes and imports (src/registry/staged-push.ts): marked before
// visible, nothing left staged or visible on any failure, and a refused write still reads the
// rest of the body (so the client gets to read the 507 instead of a reset connection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { RegistryError } from '../../src/protocol/errors.js';
import { StagedPush, storePushedBlob } from '../../src/registry/staged-push.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { MemoryBlobStore } from '../../src/storage/memory-blob-store.js';
import { SCAVENGE_EVERY_BYTES, churnScavenges } from '../../src/util/buffer-churn.js';

const bytes = Buffer.from('pushed layer bytes');
const digest = parseDigest(digestOf(bytes));

async function memoryStore(): Promise<MemoryBlobStore> {
  const store = new MemoryBlobStore();
  await store.init();
  return store;
}

async function staged(store: BlobStore): Promise<number> {
  return store.sweepStaging({ olderThanMs: -1, dryRun: true, now: Date.now() + 1000 });
}

test('the mark runs while the blob is invisible, and the blob is visible once publish resolves', async () => {
  const store = await memoryStore();
  const seen: Array<{ digest: string; size: number; visibleWhenMarked: boolean }> = [];
  const pushed = await storePushedBlob(store, Readable.from([bytes.subarray(0, 5), bytes.subarray(5)]), {
    beforeVisible: async (marked, size) => {
      seen.push({ digest: marked.text, size, visibleWhenMarked: (await store.stat(marked)) !== undefined });
    },
  });
  assert.deepEqual(seen, [{ digest: digest.text, size: bytes.byteLength, visibleWhenMarked: false }]);
  assert.deepEqual({ digest: pushed.digest.text, size: pushed.size }, { digest: digest.text, size: bytes.byteLength });
  assert.deepEqual(await store.stat(digest), { size: bytes.byteLength });
});

test('a failing mark publishes nothing and leaves nothing staged', async () => {
  const store = await memoryStore();
  await assert.rejects(
    storePushedBlob(store, Readable.from([bytes]), { beforeVisible: () => Promise.reject(new Error('metadata store down')) }),
    /metadata store down/,
  );
  assert.equal(await store.stat(digest), undefined);
  assert.equal(await staged(store), 0);
});

test('a claimed digest other than the bytes is DIGEST_INVALID, nothing marked or stored', async () => {
  const store = await memoryStore();
  let marked = false;
  const other = parseDigest(digestOf(Buffer.from('other')));
  await assert.rejects(
    storePushedBlob(store, Readable.from([bytes]), { claimed: other, beforeVisible: () => Promise.resolve(void (marked = true)) }),
    (error: unknown) => error instanceof RegistryError && error.code === 'DIGEST_INVALID',
  );
  assert.equal(marked, false);
  assert.equal(await store.stat(digest), undefined);
  assert.equal(await staged(store), 0);
});

test('a write the store refuses: the rest of the body is still read (not destroyed), then the error is raised', async () => {
  const store = await memoryStore();
  const push = await StagedPush.open(store);
  const refused = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  let writes = 0;
  const writer = push.writer as { write(chunk: Uint8Array): Promise<void> };
  const original = writer.write.bind(writer);
  writer.write = async (chunk) => {
    writes += 1;
    if (writes === 2) throw refused;
    await original(chunk);
  };
  const body = Readable.from(Array.from({ length: 10 }, () => Buffer.alloc(1000, 1)), { objectMode: false });
  await assert.rejects(push.receive(body), (error: unknown) => error === refused);
  assert.equal(writes, 2, 'no write after the refusal');
  assert.equal(body.readableEnded, true, 'the body was read to its end');
  assert.equal(body.destroyed, true);
  assert.equal(body.errored, null, 'the body ended normally, it was not destroyed with an error');
  await push.abort();
  push.close();
  assert.equal(await staged(store), 0);
});

test('a pushed body counts its chunks towards the early scavenges of buffer-churn', async () => {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const chunks = Array.from({ length: (2 * SCAVENGE_EVERY_BYTES) / chunk.byteLength }, () => chunk);
  const before = churnScavenges();
  const push = await StagedPush.open(new MemoryBlobStore());
  await push.receive(Readable.from(chunks));
  const ran = churnScavenges() - before;
  assert.ok(ran === 2 || ran === 3, `${ran} scavenges for two thresholds' worth`);
  await push.abort();
});
