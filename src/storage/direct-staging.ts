// How an fs blob writer gets its bytes into its temp file without the page cache (direct-io.ts):
// each chunk is copied into a ring of aligned staging blocks; a full block is written with
// O_DIRECT and handed to the hash thread, which hashes it where it is (no read-back); readers a
// little behind copy from the blocks, and the download waits a little for the furthest one so it
// stays there; readers further behind read the file through the page cache. So a cold miss with
// a client that keeps up puts each byte on the device once and in no page-cache page: on this
// project's VM new page-cache pages were most of a miss's CPU (issue 19).
//
// The last block is written through the ordinary descriptor: it needs no padding and no
// truncate, and a blob smaller than a block never opens an O_DIRECT descriptor at all.
import type { FileHandle } from 'node:fs/promises';
import { ChangeSignal } from '../util/deferred.js';
import { sliceOfChunks, type PositionedChunk } from './blob-store.js';
import { STAGING_BLOCK_BYTES, giveStagingBlock, takeStagingBlock, type StagingBlock } from './direct-io.js';
import { writeAllAt } from './write-all.js';

// Blocks per writer: one filling, two being written (MAX_DIRECT_WRITES) and hashed, one kept for
// a reader a little behind. 8 MiB per cold miss.
const BLOCKS_PER_WRITER = 4;
/** Bytes a writer takes before its writeNow asks the caller to wait (tests). */
export const STAGED_BYTES_PER_WRITER = BLOCKS_PER_WRITER * STAGING_BLOCK_BYTES;
// How long a download waits, per block, for its furthest reader before writing over the block
// that reader is on (sending it to the file): at least 2 MiB per 10 ms, ~200 MB/s, whatever
// the clients do. A reader that has not moved for READER_IDLE_MS is not waited for at all.
const READER_PATIENCE_MS = 10;
const READER_IDLE_MS = 100;
// Direct writes in flight at once; a block full while this many are is written through the page
// cache. Two: the device takes the second while the first completes (one more gained nothing in
// a 200 MiB write here: 175-185 ms at one, two or four in flight, alone on the machine).
export const MAX_DIRECT_WRITES = 2;

interface RingEntry {
  readonly block: StagingBlock;
  /** Offset in the blob of the block's first byte (a multiple of STAGING_BLOCK_BYTES). */
  start: number;
  filled: number;
  submitted: boolean;
  /** The write and the hash not yet done with the block. */
  busy: number;
}

/** Hashes a block's first `length` bytes, calling `onDone` once it no longer reads them; undefined: hashed elsewhere. */
export type BlockHasher = ((block: StagingBlock, length: number, onDone: () => void) => void) | undefined;

/** Where the writer's file is: the ordinary descriptor, and an O_DIRECT one opened on first use. */
export interface StagedFile {
  buffered(): Promise<FileHandle>;
  /** The O_DIRECT descriptor, or undefined where the filesystem refuses O_DIRECT. */
  direct(): Promise<FileHandle | undefined>;
}

export class DirectStaging {
  /** Blocks in blob order. */
  private readonly ring: RingEntry[] = [];
  /** Chunks taken while no block was free, in order after `copied`. */
  private waiting: PositionedChunk[] = [];
  /** Bytes [0, copied) are in blocks or in the file. */
  private copied = 0;
  private readonly progress = new ChangeSignal();
  failure: Error | undefined;
  private stopped = false;
  /** The furthest position a reader delivered, and when it last moved (performance.now()). */
  private readerFront = 0;
  private readerMovedAt = Number.NEGATIVE_INFINITY;
  private paceTimer: NodeJS.Timeout | undefined;
  /** The block being kept for a reader (its start), and since when. */
  private pacedBlock = -1;
  private pacedSince = 0;
  /** A direct write was refused: the rest go through the ordinary descriptor. */
  private directRefused = false;
  /** Direct writes in flight. */
  private directWrites = 0;

  constructor(
    private readonly file: StagedFile,
    private readonly hasher: () => BlockHasher,
    /** How long to wait for readers (tests stretch them). */
    private readonly pacing = { patienceMs: READER_PATIENCE_MS, idleMs: READER_IDLE_MS },
  ) {}

  /**
   * Takes `chunk` (the next bytes of the blob): copied into blocks at once while there are free
   * ones; otherwise kept, and a promise comes back to wait for before the next chunk.
   */
  take(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (this.waiting.length === 0) {
      const copied = this.copyIn(chunk);
      if (copied === chunk.byteLength) return undefined;
      chunk = chunk.subarray(copied);
    }
    const last = this.waiting.at(-1);
    this.waiting.push({ start: last ? last.start + last.chunk.byteLength : this.copied, chunk });
    return this.drained();
  }

  /** Resolves once no chunk waits for a block; throws if a write failed. */
  private async drained(): Promise<void> {
    while (this.waiting.length > 0 && !this.failure && !this.stopped) await this.progress.next();
    if (this.failure) throw this.failure;
  }

  /** Copies as much of `chunk` as free blocks take; returns how much. */
  private copyIn(chunk: Buffer): number {
    let done = 0;
    while (done < chunk.byteLength) {
      const entry = this.fillingBlock();
      if (!entry) break;
      const n = Math.min(chunk.byteLength - done, STAGING_BLOCK_BYTES - entry.filled);
      // set(), not Buffer.copy, which wraps each call in a new view and a JS helper: 64 KiB
      // chunks into a shared block, 200 MiB, 11-14 ms with set() against 23-31 ms with copy().
      entry.block.bytes.set(n === chunk.byteLength ? chunk : chunk.subarray(done, done + n), entry.filled);
      entry.filled += n;
      this.copied += n;
      done += n;
      if (entry.filled === STAGING_BLOCK_BYTES) this.submit(entry, false);
    }
    return done;
  }

  /** The block being filled: the last one, a new one, or the oldest once it is idle. */
  private fillingBlock(): RingEntry | undefined {
    const last = this.ring.at(-1);
    if (last && !last.submitted) return last;
    if (this.ring.length < BLOCKS_PER_WRITER) {
      const entry: RingEntry = { block: takeStagingBlock(), start: this.copied, filled: 0, submitted: false, busy: 0 };
      this.ring.push(entry);
      return entry;
    }
    const oldest = this.ring[0] as RingEntry;
    // After a failed write a block's bytes may not be in the file: it is never written over.
    if (oldest.busy > 0 || this.failure) return undefined;
    if (this.readerNeeds(oldest)) return undefined;
    this.ring.shift();
    oldest.start = this.copied;
    oldest.filled = 0;
    oldest.submitted = false;
    this.ring.push(oldest);
    return oldest;
  }

  /** Writes a block (the last one through the ordinary descriptor) and has it hashed. */
  private submit(entry: RingEntry, last: boolean): void {
    entry.submitted = true;
    entry.busy = 1;
    const length = entry.filled;
    const hash = this.hasher();
    if (hash) {
      entry.busy += 1;
      hash(entry.block, length, () => this.release(entry));
    }
    const start = entry.start;
    // With MAX_DIRECT_WRITES in flight the device is behind: this block goes through the page
    // cache rather than hold the download back, so a slow disk (a throttled cloud volume) never
    // makes a miss slower than buffered writes would. The slot is taken here, synchronously:
    // blocks filled by one chunk are submitted before any of their writes starts.
    const directSlot = !last && !this.directRefused && this.directWrites < MAX_DIRECT_WRITES;
    if (directSlot) this.directWrites += 1;
    // Not one after the other: a second write in flight keeps the device busy while the first
    // completes (writes to different ranges may finish in any order).
    void (async () => {
      try {
        if (this.failure || this.stopped) return;
        const direct = directSlot && !this.directRefused ? await this.file.direct() : undefined;
        try {
          await writeAllAt(direct ?? (await this.file.buffered()), [entry.block.bytes.subarray(0, length)], start);
        } catch (error) {
          // A filesystem may open O_DIRECT and still refuse the writes (EINVAL): this writer
          // goes on through the page cache, starting with this block.
          if (!direct || (error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
          this.directRefused = true;
          await writeAllAt(await this.file.buffered(), [entry.block.bytes.subarray(0, length)], start);
        }
      } catch (error) {
        this.failure ??= error instanceof Error ? error : new Error(String(error));
      } finally {
        if (directSlot) this.directWrites -= 1;
        this.release(entry);
      }
    })();
  }

  /**
   * Whether to keep `entry` for the furthest reader rather than write over it, which would send
   * that reader to the file: it is not past the block, moved within READER_IDLE_MS, and the
   * download has waited less than READER_PATIENCE_MS for it. So a client as fast as the
   * download stays in memory, and a slow or stalled one costs the download little.
   */
  private readerNeeds(entry: RingEntry): boolean {
    if (this.readerFront >= entry.start + entry.filled) return false;
    const now = performance.now();
    if (now - this.readerMovedAt >= this.pacing.idleMs) return false;
    if (this.pacedBlock !== entry.start) {
      this.pacedBlock = entry.start;
      this.pacedSince = now;
    }
    const waited = now - this.pacedSince;
    if (waited >= this.pacing.patienceMs) return false;
    this.paceTimer ??= setTimeout(() => {
      this.paceTimer = undefined;
      this.pump();
    }, this.pacing.patienceMs - waited);
    return true;
  }

  /** A reader delivered the bytes before `position`. */
  readerAt(position: number): void {
    this.readerMovedAt = performance.now();
    if (position <= this.readerFront) return;
    const oldest = this.ring[0];
    const wasNeeded = oldest !== undefined && this.readerFront < oldest.start + oldest.filled;
    this.readerFront = position;
    if (wasNeeded && this.waiting.length > 0 && position >= oldest.start + oldest.filled) this.pump();
  }

  private release(entry: RingEntry): void {
    entry.busy -= 1;
    if (entry.busy > 0) return;
    this.pump();
  }

  /** Copies chunks waiting for a block into blocks that came free. */
  private pump(): void {
    // A block came free: chunks waiting for one go in now.
    while (this.waiting.length > 0 && !this.failure && !this.stopped) {
      const first = this.waiting[0] as PositionedChunk;
      const copied = this.copyIn(first.chunk);
      if (copied < first.chunk.byteLength) {
        this.waiting[0] = { start: first.start + copied, chunk: first.chunk.subarray(copied) };
        break;
      }
      this.waiting.shift();
    }
    this.progress.fire();
  }

  /**
   * Every byte taken is written (the last partial block too) and hashed; then the blocks go back
   * to the pool: the file is all there is from here on. Throws if a write failed.
   */
  async finish(): Promise<void> {
    await this.drained();
    const last = this.ring.at(-1);
    if (last && !last.submitted && last.filled > 0) this.submit(last, true);
    await this.idle();
    if (this.failure) throw this.failure;
  }

  /** Stops taking and writing: the writer was aborted. Blocks in use finish first (idle()). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.paceTimer);
    this.waiting = [];
    this.progress.fire();
  }

  /** Resolves once no write or hash uses any block, then gives the blocks back. */
  async idle(): Promise<void> {
    while (this.ring.some((entry) => entry.busy > 0)) await this.progress.next();
    for (const entry of this.ring.splice(0)) giveStagingBlock(entry.block);
  }

  /**
   * Bytes at `position` from memory: copied into `buffer` from a block, or a view of a chunk
   * still waiting. `{ fileEnd }` when they are only in the file: read it there, before `fileEnd`.
   */
  read(buffer: Buffer, position: number, length: number): Buffer | { fileEnd: number } {
    if (this.failure) throw this.failure;
    const wanted = Math.min(length, buffer.byteLength);
    if (position >= this.copied) return sliceOfChunks(this.waiting, position, wanted);
    for (const entry of this.ring) {
      if (position < entry.start || position >= entry.start + entry.filled) continue;
      const from = position - entry.start;
      const n = Math.min(wanted, entry.filled - from);
      buffer.set(entry.block.bytes.subarray(from, from + n));
      return buffer.subarray(0, n);
    }
    // Blocks leave the ring only once written: what is before the oldest one is in the file.
    return { fileEnd: this.ring[0]?.start ?? this.copied };
  }
}
