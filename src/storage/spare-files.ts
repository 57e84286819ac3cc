// Finished scratch files kept for the next write to overwrite, the way PostgreSQL recycles WAL
// segments instead of creating new ones. On the S3 driver a scratch file (a cold miss, a push, a
// shared read) is thrown away once its bytes are in the bucket; the next one used to be a new
// file, whose page-cache pages the kernel had to find afresh. On this project's VM that is a
// large share of a cold miss's CPU: a new 200 MiB file cost 0.39-0.64 s in the writing threads
// once the page cache had grown, the same bytes written over a kept file 0.03-0.05 s
// (bench/page-cache-writes.ts --rewrite). A spare keeps its pages (and its disk blocks) for the
// next write.
//
// A spare may be longer than what is written over it: nothing reads a writer's file past the
// bytes it wrote (readers, the hasher and S3 parts all stop at bytesWritten), and a writer that
// renames its file into place truncates it first (FsBlobWriter.commit).
import { rename, unlink } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';

/** The S3 driver's default (storage.s3.spareScratchBytes in config/schema.ts says it again). */
export const DEFAULT_SPARE_SCRATCH_BYTES = 1024 * 1024 * 1024;
/** Names of spare files in their directory. */
export const SPARE_FILE_PREFIX = 'spare-';
/** Smaller files are not worth keeping: their pages cost little, and many would pile up. */
export const MIN_SPARE_BYTES = 1024 * 1024;
/** However much room maxBytes leaves: a burst of misses must not leave hundreds of files. */
export const MAX_SPARE_FILES = 8;

export class SpareFiles {
  /** Most recently given back last: its pages are the likeliest to be in memory still. */
  private spares: Array<{ file: string; size: number }> = [];
  private bytes = 0;
  /** Spares being renamed into place: counted against the bounds already. */
  private arriving = 0;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  get count(): number {
    return this.spares.length;
  }

  /** Bytes of disk the spares hold. */
  get size(): number {
    return this.bytes;
  }

  /**
   * Moves a spare to `file` and says how long it is, or undefined when there is none (the
   * caller creates a new file). A spare that is gone (someone cleared the directory) is skipped.
   */
  async take(file: string): Promise<number | undefined> {
    for (let spare = this.spares.pop(); spare !== undefined; spare = this.spares.pop()) {
      this.bytes -= spare.size;
      try {
        await rename(spare.file, file);
        return spare.size;
      } catch {
        // Gone or unusable: try the next one.
      }
    }
    return undefined;
  }

  /** Keeps `file` (`size` bytes long, nobody reading or writing it) as a spare, or deletes it. */
  async give(file: string, size: number): Promise<void> {
    if (size < MIN_SPARE_BYTES || this.spares.length + this.arriving >= MAX_SPARE_FILES || this.bytes + size > this.maxBytes) {
      await unlinkIfThere(file);
      return;
    }
    const spare = { file: path.join(this.dir, `${SPARE_FILE_PREFIX}${randomUUID()}`), size };
    // Counted before the rename, so concurrent gives stay under the bounds.
    this.bytes += size;
    this.arriving += 1;
    try {
      await rename(file, spare.file);
    } catch (error) {
      this.bytes -= size;
      await unlinkIfThere(file);
      throw error;
    } finally {
      this.arriving -= 1;
    }
    this.spares.push(spare);
  }

  /** Deletes every spare (the disk is short of room). */
  async dropAll(): Promise<void> {
    await Promise.all(this.forget().map((spare) => unlinkIfThere(spare.file)));
  }

  /** Forgets every spare (their directory was emptied), and returns them. */
  forget(): Array<{ file: string; size: number }> {
    const forgotten = this.spares;
    this.spares = [];
    // Not zero: spares still arriving are counted in bytes.
    for (const spare of forgotten) this.bytes -= spare.size;
    return forgotten;
  }
}

async function unlinkIfThere(file: string): Promise<void> {
  await unlink(file).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw error;
  });
}
