// A blob landing in a writer's file while readers follow it: how its bytes are taken in
// (receiveBody) and read as they land (FollowingReader). Two things are such a blob: a fetch
// from the upstream (BlobFetch, mirror/inflight.ts) and an object read from S3 that concurrent
// hits share (storage/shared-reads.ts).
import { Readable, type Writable } from 'node:stream';
import { READ_CHUNK_BYTES, giveReadBuffer, readIntoBuffer, takeReadBuffer, writeChunk, type BlobWriter, type ByteRange } from './blob-store.js';
import { WRITE_QUEUE_BYTES } from './write-body.js';

/** What a FollowingReader needs to know of the blob it follows. */
export interface FollowedBlob {
  /** Set once the bytes cannot complete: readers fail with it. */
  readonly failed: Error | undefined;
  /** Every byte is in and checked: readers may deliver the final one. */
  readonly verified: boolean;
  /** The blob's length, when known. */
  readonly size: number | undefined;
  /**
   * The chunk written last. Readers that keep up take their bytes from it instead of reading
   * the file back: no copy and no allocation per chunk on the hot path.
   */
  readonly recent: { start: number; chunk: Buffer } | undefined;
  /** Resolves at the next progress or state change. */
  changed(): Promise<void>;
  /** A reader is done: balances the hold taken for it. */
  leave(): void;
}

/** Where a growing blob's bytes are read back (its writer, or what wraps it). */
export type GrowingFile = Pick<BlobWriter, 'bytesWritten' | 'readAt' | 'readInto' | 'readerAt'>;

/**
 * Takes `body` into `writer` chunk by chunk, through 'data' events: no async iterator, no
 * promise and no tick per chunk (a 200 MiB blob is ~3,200 chunks, and this thread also serves
 * every reader). `onChunk` sees each chunk, at its offset, just before the writer takes it; it
 * throws to stop. The body is paused only while the writer is behind (writeNow's promise; every
 * write() of a writer without writeNow), so writes stay in order, one at a time, and memory stays
 * bounded by the writer's own limit. Resolves once the body ended and its last write is done.
 */
export function receiveBody(body: Readable, writer: BlobWriter, label: string, onChunk: (start: number, chunk: Buffer) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let waiting: Promise<void> | undefined;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      body.off('data', onData).off('end', onEnd).off('error', settle).off('close', onClose);
      body.on('error', ignoreLateError); // the body is done with: an error it emits now changes nothing
      if (error === undefined) resolve();
      else reject(error);
    };
    const onData = (chunk: Buffer) => {
      if (settled) return;
      try {
        onChunk(writer.bytesWritten, chunk);
        const pending = writeChunk(writer, chunk);
        if (pending) {
          waiting = pending;
          body.pause();
          pending.then(() => {
            waiting = undefined;
            if (!settled) body.resume();
          }, settle);
        }
      } catch (error) {
        settle(error as Error);
      }
    };
    // The last write may still be waiting for the file when the body ends.
    const onEnd = () => {
      if (waiting) waiting.then(() => settle(), settle);
      else settle();
    };
    const onClose = () => {
      if (!body.readableEnded) settle(new Error(`${label} closed before its end`));
    };
    body.on('data', onData).on('end', onEnd).on('error', settle).on('close', onClose);
  });
}

function ignoreLateError(): void {}

/**
 * How far a reader at `position` may read now (exclusive), or undefined once it delivered its
 * last byte (the blob verified). The final byte is held back until the blob is verified.
 */
function readLimit(blob: FollowedBlob, file: GrowingFile, position: number, range: ByteRange | undefined): number | undefined {
  const verified = blob.verified;
  const available = file.bytesWritten;
  // Inclusive index of the last byte to deliver. With no Content-Length the end is unknown until
  // verified; the response is chunked and its terminator is what waits.
  const size = blob.size;
  const last = range?.end ?? (size !== undefined ? size - 1 : verified ? available - 1 : Number.POSITIVE_INFINITY);
  if (verified && position > last) return undefined;
  const limit = Math.min(available, last + 1);
  return verified ? limit : Math.min(limit, last);
}

/** The bytes at `position` from the chunk just written, when a reader is that close behind. */
function fromRecent(blob: FollowedBlob, position: number, limit: number): Buffer | undefined {
  const recent = blob.recent;
  if (!recent) return undefined;
  const offset = position - recent.start;
  if (offset < 0 || offset >= recent.chunk.byteLength) return undefined;
  return recent.chunk.subarray(offset, offset + Math.min(limit - position, recent.chunk.byteLength - offset));
}

/**
 * A stream of a growing blob (or a range of it) that follows it as it lands, and holds back
 * the final byte until the blob is verified: a client of a blob that turns out corrupt or cut
 * short sees an aborted response, never a complete-looking wrong one. Leaves the blob when
 * destroyed (it takes over the hold its opener took).
 */
export class FollowingReader extends Readable {
  private position: number;
  private pumping = false;
  private released = false;

  constructor(
    private readonly blob: FollowedBlob,
    private readonly writer: GrowingFile,
    private readonly range: ByteRange | undefined,
  ) {
    super({ highWaterMark: READ_CHUNK_BYTES });
    this.position = range?.start ?? 0;
  }

  override _read(): void {
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (;;) {
        if (this.destroyed) return;
        if (this.blob.failed) {
          this.destroy(this.blob.failed);
          return;
        }
        const limit = readLimit(this.blob, this.writer, this.position, this.range);
        if (limit === undefined) {
          this.push(null);
          return;
        }
        if (this.position < limit) {
          const chunk = fromRecent(this.blob, this.position, limit) ?? (await this.writer.readAt(this.position, Math.min(limit - this.position, READ_CHUNK_BYTES)));
          if (this.destroyed) return;
          this.position += chunk.byteLength;
          this.writer.readerAt?.(this.position);
          if (!this.push(chunk)) return; // resume on the next _read
          continue;
        }
        await this.blob.changed();
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.pumping = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.released) {
      this.released = true;
      this.blob.leave();
    }
    callback(error);
  }
}

/**
 * Pooled buffers one writeFollowing may have in its destination at once. Each client of a blob
 * being fetched reads the file back ahead of its socket only by this much, so sixteen clients
 * stay within the pool's 32. With a megabyte of them each (the write queue's bound) the pool ran
 * dry and peak RSS during 16 cold GETs rose from ~117 to ~150 MB; with 2 each it was 134 MB, with
 * 1 it is 125 MB, and the 16 GETs take as long (3.5-3.9 s for all three; `npm run bench --
 * --only coalesce`: 16 clients on 2 CPUs keep the file busy without read-ahead per client).
 */
const MAX_BUFFERS_OUT = 1;

/**
 * A growing blob (or a range of it) written into `destination` as it lands, which is ended
 * once the blob is verified and destroyed if it fails; leaves the blob when done (it takes over
 * the hold its caller took). A FollowingReader piped into the response, without the stream:
 * bytes that are in the file are read into pooled buffers (GrowingFile.readInto), each given
 * back when the destination's write callback says it is done with it; bytes of the chunk just
 * written go as they are. Resolves when done, or when `destination` went away.
 */
export async function writeFollowing(blob: FollowedBlob, file: GrowingFile, destination: Writable, range: ByteRange | undefined): Promise<void> {
  let position = range?.start ?? 0;
  // A wait for the blob (or for the client to drain) ends early when the client goes away.
  let wakeOnClose: (() => void) | undefined;
  const onClose = () => wakeOnClose?.();
  destination.on('close', onClose);
  const until = (event: Promise<unknown>) =>
    new Promise<void>((resolve) => {
      wakeOnClose = resolve;
      event.then(
        () => resolve(),
        () => resolve(),
      );
    });
  // Chunks of one poll of the event loop leave in one writev (as in writeBody).
  let corked = false;
  const uncork = () => {
    if (!corked) return;
    corked = false;
    destination.uncork();
  };
  // Pooled buffers handed to the destination and not yet called back.
  let buffersOut = 0;
  let wakeOnBufferBack: (() => void) | undefined;
  const write = (chunk: Buffer, written?: () => void) => {
    if (!corked) {
      corked = true;
      destination.cork();
      setImmediate(uncork);
    }
    destination.write(chunk, written);
  };
  try {
    for (;;) {
      if (destination.destroyed) return;
      if (blob.failed) throw blob.failed;
      const limit = readLimit(blob, file, position, range);
      if (limit === undefined) {
        uncork();
        // Done once the response finished (or went away), as writeBody is.
        await until(new Promise((resolve) => destination.end(resolve)));
        return;
      }
      if (position >= limit) {
        await until(blob.changed());
        continue;
      }
      if (destination.writableLength > WRITE_QUEUE_BYTES) {
        await until(new Promise((resolve) => destination.once('drain', resolve)));
        continue;
      }
      const recent = fromRecent(blob, position, limit);
      if (recent) {
        position += recent.byteLength;
        file.readerAt?.(position);
        write(recent);
        continue;
      }
      if (buffersOut >= MAX_BUFFERS_OUT) {
        await until(new Promise<void>((resolve) => (wakeOnBufferBack = resolve)));
        continue;
      }
      const buffer = takeReadBuffer();
      let chunk: Buffer;
      try {
        chunk = await readIntoBuffer(file, buffer, position, limit - position);
      } catch (error) {
        giveReadBuffer(buffer);
        throw error;
      }
      if (destination.destroyed) {
        giveReadBuffer(buffer);
        return;
      }
      position += chunk.byteLength;
      file.readerAt?.(position);
      buffersOut += 1;
      write(chunk, () => {
        buffersOut -= 1;
        giveReadBuffer(buffer);
        wakeOnBufferBack?.();
      });
    }
  } catch (error) {
    uncork();
    destination.destroy(error instanceof Error ? error : new Error(String(error)));
  } finally {
    destination.off('close', onClose);
    blob.leave();
  }
}
