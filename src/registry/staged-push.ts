// The one write sequence of everything pushed or imported into the blob store: stream the body
// into a staged writer, verify it, mark it (private content) while it is still invisible, then
// publish it, and delete the staged bytes on any failure. v2 upload sessions, v1 layer PUTs and
// `longshore import` all go through it, so the crash guarantee (a crash at any point leaves the
// content invisible or marked, never visible unmarked; issue 14 point 6) and the full-disk
// behaviour (issue 14 point 10) are written once.
import type { Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import type { BlobStore, BlobWriter } from '../storage/blob-store.js';
import { noteBufferChurn } from '../util/buffer-churn.js';

/** A published (or verified, ready to publish) blob. */
export interface PushedBlob {
  digest: Digest;
  size: number;
}

/**
 * Runs once the bytes are verified and before they are visible under their digest: pushes mark
 * their content private here. Throwing stops the publish (the staged bytes are deleted).
 */
export type BeforeVisible = (digest: Digest, size: number) => Promise<void>;

export interface PublishOptions {
  /** The digest the client named (v2 `?digest=`): other bytes are DIGEST_INVALID, not stored. */
  claimed?: Digest;
  /** The size the bytes must have (a bundle's tar header); other sizes are refused. */
  size?: number;
  beforeVisible?: BeforeVisible;
}

/**
 * A blob being pushed: a BlobWriter with the push's own ending. Idempotent where the writer
 * is (abort, close); every failure path leaves nothing staged behind.
 */
export class StagedPush {
  private verified: PushedBlob | undefined;

  private constructor(readonly writer: BlobWriter) {}

  /** Stages a blob of known digest (imports), or one whose digest is learned from its bytes. */
  static async open(store: BlobStore, expected?: Digest): Promise<StagedPush> {
    return new StagedPush(await store.createWriter(expected));
  }

  get bytesWritten(): number {
    return this.writer.bytesWritten;
  }

  /**
   * Appends `body`, handing each chunk to `observe` once it is written (checksums over the
   * bytes). When the store refuses a write (a full disk) or `observe` throws, the rest of the
   * body is read and dropped before the error is raised: clients send their whole body before
   * they read the answer, and a request stream destroyed mid-body resets the connection, so the
   * client would never see the 507 (issue 14 point 10). The staged bytes stay; the caller
   * decides whether the push is over (`abort`).
   */
  async receive(body: AsyncIterable<Buffer>, observe?: (chunk: Buffer) => void | Promise<void>): Promise<void> {
    // Not `for await`: leaving that loop early destroys the request stream, and with it the socket.
    const chunks = body[Symbol.asyncIterator]();
    let failure: { error: unknown } | undefined;
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
      if (failure) continue;
      noteBufferChurn(next.value.byteLength);
      try {
        await this.writer.write(next.value);
        await observe?.(next.value);
      } catch (error) {
        failure = { error };
      }
    }
    if (failure) throw failure.error;
  }

  /**
   * Checks the staged bytes (their digest against `claimed`, their size against `size`)
   * without publishing; on a mismatch they are deleted and the error raised. No writes after.
   */
  async verify(options: Pick<PublishOptions, 'claimed' | 'size'> = {}): Promise<PushedBlob> {
    if (this.verified) return this.verified;
    try {
      const size = this.writer.bytesWritten;
      const digest = await this.writer.verify(options.size);
      if (options.claimed && digest.text !== options.claimed.text) {
        throw new RegistryError('DIGEST_INVALID', `uploaded content has digest ${digest.text}, not ${options.claimed.text}`, { detail: { digest: options.claimed.text } });
      }
      this.verified = { digest, size };
      return this.verified;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /**
   * Verifies (unless done), runs `beforeVisible`, then publishes under the digest. Any failure
   * deletes the staged bytes; nothing is visible unless every step succeeded.
   */
  async publish(options: PublishOptions = {}): Promise<PushedBlob> {
    const pushed = await this.verify(options);
    try {
      await options.beforeVisible?.(pushed.digest, pushed.size);
      await this.writer.commit();
      return pushed;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Deletes the staged bytes (a no-op once published). Never throws: it runs on failure paths. */
  async abort(): Promise<void> {
    await this.writer.abort().catch(() => undefined);
  }

  /** Gives back the descriptor (the bytes stay staged until publish or abort). Idempotent. */
  close(): void {
    this.writer.close();
  }

  /** See BlobWriter.suspend: an idle upload session holds no descriptor. */
  async suspend(): Promise<void> {
    await this.writer.suspend?.();
  }
}

/**
 * A whole push in one call (a v1 layer PUT, a single-request upload): stage `body`, publish it
 * with `options`, abort on any failure, close the writer either way.
 */
export async function storePushedBlob(
  store: BlobStore,
  body: AsyncIterable<Buffer>,
  options: PublishOptions & { observe?: (chunk: Buffer) => void | Promise<void> } = {},
): Promise<PushedBlob> {
  const staged = await StagedPush.open(store);
  try {
    await staged.receive(body, options.observe);
    return await staged.publish(options);
  } catch (error) {
    await staged.abort();
    throw error;
  } finally {
    staged.close();
  }
}

/**
 * The same order for content already in memory (manifests): marked while invisible, then
 * written; a crash in between leaves a mark on nothing, which is harmless.
 */
export async function publishInMemory<T>(pushed: PushedBlob, beforeVisible: BeforeVisible, write: () => Promise<T>): Promise<T> {
  await beforeVisible(pushed.digest, pushed.size);
  return write();
}
