// Aligned memory for O_DIRECT. A direct write bypasses the page cache: the kernel hands the
// buffer to the device instead of copying it into new page-cache pages, and on this project's VM
// those new pages are what a buffered write costs (200 MiB: 0.44-0.62 s of system CPU buffered,
// 0.03-0.05 s direct; dd with 1 MiB blocks). The price is alignment: the buffer's address, the
// file offset and the length must be multiples of the device's block size.
//
// Node has no aligned allocator, but a WebAssembly.Memory's backing store is whole pages mapped
// by V8 on its own, so it starts on a page boundary, and blocks cut from it at multiples of the
// block size are aligned too. The memory is shared (a SharedArrayBuffer), so the hash thread can
// hash a block where it is instead of reading it back from the file (file-hasher.ts).
import { constants } from 'node:fs';

/**
 * One direct write, and one hash request. A multiple of any device's block size, as are the
 * blocks' file offsets (the last, partial block is not written direct: direct-staging.ts).
 * Each hash request is a message each way between the threads (see HASH_REQUEST_BYTES in
 * fs-blob-store.ts for what one costs), so not smaller.
 */
export const STAGING_BLOCK_BYTES = 2 * 1024 * 1024;
// Blocks per WebAssembly.Memory: one mapping serves several writers. A block's pages are resident
// once touched; blocks go back to the pool when their writer closes.
const BLOCKS_PER_SLAB = 8;
const WASM_PAGE_BYTES = 64 * 1024;
// Free blocks kept for reuse (one slab's worth; a block once used stays resident). Past this a
// block is dropped, and its slab's memory goes once none of its blocks is held (the hash thread
// that was given the slab is then told to let it go: file-hasher.ts): a burst of writers does
// not pin its memory for ever.
const MAX_FREE_BLOCKS = BLOCKS_PER_SLAB;

/** O_DIRECT where the platform has it (Linux); undefined elsewhere. */
export const O_DIRECT: number | undefined = (constants as { O_DIRECT?: number }).O_DIRECT;

// The one WebAssembly API used here; the project's lib settings (ES2023, no DOM) do not declare it.
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer } };

/** Shared memory blocks are cut from; `id` names it to the hash thread. */
export interface StagingSlab {
  readonly id: number;
  readonly memory: SharedArrayBuffer;
}

/** An aligned block of STAGING_BLOCK_BYTES at `offset` in its slab. */
export interface StagingBlock {
  readonly slab: StagingSlab;
  readonly offset: number;
  readonly bytes: Buffer;
}

let nextSlabId = 1;
const freeBlocks: StagingBlock[] = [];

/** An aligned block; give it back with giveStagingBlock once no write, read or hash uses it. */
export function takeStagingBlock(): StagingBlock {
  const block = freeBlocks.pop();
  if (block) return block;
  const pages = (BLOCKS_PER_SLAB * STAGING_BLOCK_BYTES) / WASM_PAGE_BYTES;
  const slab: StagingSlab = { id: nextSlabId++, memory: new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer };
  const cut = (index: number): StagingBlock => {
    const offset = index * STAGING_BLOCK_BYTES;
    return { slab, offset, bytes: Buffer.from(slab.memory, offset, STAGING_BLOCK_BYTES) };
  };
  for (let i = BLOCKS_PER_SLAB - 1; i > 0; i--) freeBlocks.push(cut(i));
  return cut(0);
}

export function giveStagingBlock(block: StagingBlock): void {
  if (freeBlocks.length < MAX_FREE_BLOCKS) freeBlocks.push(block);
}
