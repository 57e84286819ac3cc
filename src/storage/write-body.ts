// Writing a body that arrives as a stream of network-sized chunks into an HTTP response: an S3
// hit's GET body (S3BlobHandle.writeTo) read alone, not shared. (Clients of a blob still landing,
// a fetch or a shared read, are written by writeFollowing in storage/growing-blob.ts.)
import type { Readable, Writable } from 'node:stream';
import { noteBufferChurn } from '../util/buffer-churn.js';

// Bytes that may wait in the response before the body is paused (writeBody).
export const WRITE_QUEUE_BYTES = 1024 * 1024;

/** Bytes [skip, skip + length) of a stream, picked out of its chunks as they come. */
export class ByteWindow {
  constructor(
    private toSkip: number,
    /** Bytes of the window still to come. */
    public left: number,
  ) {}

  /** The part of `chunk` inside the window (empty before it and after it). */
  take(chunk: Buffer): Buffer {
    let piece = chunk;
    if (this.toSkip > 0) {
      const dropped = Math.min(this.toSkip, piece.byteLength);
      piece = piece.subarray(dropped);
      this.toSkip -= dropped;
    }
    if (piece.byteLength > this.left) piece = piece.subarray(0, this.left);
    this.left -= piece.byteLength;
    return piece;
  }
}

/**
 * Writes `length` bytes of `source.body` (which holds `source.size`), after its first
 * `source.skip`, into `destination` and ends it; an
 * error of `source` (or a source ending short) destroys `destination` instead, so a client never
 * sees a short body end cleanly. Resolves once done or once `destination` went away (the source
 * is destroyed then). Chunks are written as they arrive, corked until the event loop's check
 * phase so that those of one poll go out in one writev, and up to WRITE_QUEUE_BYTES may wait in
 * `destination` before the source is paused: with the socket's 16 KiB mark, every 64 KiB chunk
 * would otherwise be its own write.
 */
export function writeBody(
  { body: source, skip, size }: { body: Readable; skip: number; size: number },
  length: number,
  destination: Writable,
  /** The source's chunks are its own fresh buffers (an S3 GET), not views counted elsewhere. */
  options: { freshChunks?: boolean } = {},
): Promise<void> {
  const fresh = options.freshChunks === true;
  // A body read to its end is left to end by itself: destroyed before its end, undici would
  // close the connection instead of reusing it.
  const readsToEnd = skip + length === size;
  return new Promise<void>((resolve) => {
    const window = new ByteWindow(skip, length);
    let corked = false;
    let settled = false;
    const uncork = () => {
      if (!corked) return;
      corked = false;
      destination.uncork();
    };
    const settle = (outcome: { error?: Error; gone?: boolean } = {}) => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      destination.off('close', onClose);
      destination.off('drain', onDrain);
      uncork();
      // Whatever is left unread (a range that ends early, a client gone) is dropped; the source's
      // owner listens for the abort it may report (an S3 store: undici's).
      source.destroy();
      if (outcome.error) destination.destroy(outcome.error);
      else if (!outcome.gone) destination.end();
      resolve();
    };
    const onData = (chunk: Buffer) => {
      if (fresh) noteBufferChurn(chunk.byteLength);
      if (window.left === 0) return;
      const piece = window.take(chunk);
      if (piece.byteLength === 0) return;
      if (!corked) {
        corked = true;
        destination.cork();
        setImmediate(uncork);
      }
      destination.write(piece);
      if (window.left === 0) {
        if (!readsToEnd) settle();
      } else if (destination.writableLength > WRITE_QUEUE_BYTES) {
        source.pause();
        destination.once('drain', onDrain);
      }
    };
    const onDrain = () => source.resume();
    const onEnd = () => settle(window.left > 0 ? { error: new Error(`body ended ${window.left} bytes short`) } : {});
    const onError = (error: Error) => settle({ error });
    const onClose = () => settle({ gone: true });
    if (destination.destroyed) {
      settle({ gone: true });
      return;
    }
    if (window.left === 0 && !readsToEnd) {
      settle();
      return;
    }
    destination.on('close', onClose);
    source.on('error', onError);
    source.on('end', onEnd);
    source.on('data', onData);
  });
}
