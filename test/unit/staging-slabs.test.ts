// Staging memory (src/storage/direct-io.ts) after a burst of writers: blocks past the free pool
// are dropped, and the hash thread, which was given their slabs, must let them go too, or a
// burst's staging memory stays mapped for as long as the thread lives. Its own file: the pool
// and the hash thread are per process, and this test counts both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STAGING_BLOCK_BYTES, giveStagingBlock, takeStagingBlock, type StagingBlock } from '../../src/storage/direct-io.js';
import { FileHasher, hashThreadSlabCount } from '../../src/storage/file-hasher.js';
import { exposedGc } from '../../src/util/exposed-gc.js';
import { pollUntil } from '../harness/wait.js';

const BLOCKS_PER_SLAB = 8; // direct-io.ts; the pool keeps one slab's worth of free blocks
const SLABS = 9;
const MiB = 1024 * 1024;

/** Takes SLABS slabs' worth of blocks, touches every page, has one block of each slab hashed by `hasher`, and gives them all back. */
async function burst(hasher: FileHasher): Promise<number> {
  const blocks: StagingBlock[] = Array.from({ length: SLABS * BLOCKS_PER_SLAB }, () => takeStagingBlock());
  for (const block of blocks) block.bytes.fill(7);
  const slabIds = new Set(blocks.map((block) => block.slab.id));
  assert.equal(slabIds.size, SLABS, 'a fresh pool cuts the blocks from new slabs');
  const firstOfEach = [...slabIds].map((id) => blocks.find((block) => block.slab.id === id) as StagingBlock);
  await Promise.all(firstOfEach.map((block) => new Promise<void>((resolve) => hasher.hashBlock(block, 4096, resolve))));
  // The pool keeps the first BLOCKS_PER_SLAB given back: one slab's; the others' slabs are garbage.
  for (const block of blocks) giveStagingBlock(block);
  return process.memoryUsage().rss;
}

test('staging slabs: a slab dropped by the main thread is let go by the hash thread too, and its memory is unmapped', async (t) => {
  const hasher = new FileHasher('sha256');
  t.after(() => hasher.drop()); // a failed assertion must not leave the thread keeping the process alive
  const rssHeld = await burst(hasher);
  assert.equal(hashThreadSlabCount(), SLABS, 'the hash thread was given every slab');
  // The main thread's collection finds the slabs dead; the thread is told, and collects its own heap.
  await pollUntil(
    () => {
      exposedGc()();
      return Promise.resolve(hashThreadSlabCount() === 1);
    },
    { timeoutMs: 10_000, what: 'the hash thread to hold only the pooled slab' },
  );
  // 8 slabs of 16 MiB were touched: most of it must leave the process, the worker's share
  // included. Soon, not at some later collection: an idle hash thread collects nothing on its
  // own (without the thread's own collection this took 8 s here).
  const expectedDrop = ((SLABS - 1) * BLOCKS_PER_SLAB * STAGING_BLOCK_BYTES * 3) / 4;
  await pollUntil(() => Promise.resolve(process.memoryUsage().rss < rssHeld - expectedDrop), {
    timeoutMs: 3_000,
    what: `RSS to fall by ${expectedDrop / MiB} MiB from ${Math.round(rssHeld / MiB)} MiB`,
  });
  assert.match(await hasher.digest(), /^[0-9a-f]{64}$/, 'the session hashed on from the pooled slab');
});
