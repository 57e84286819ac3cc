// Where a follower replica keeps its copy of a blob it follows from the leader: a scratch
// file, so that every client of this replica asking for that blob reads one copy as it lands
// (one peer stream per replica, not one per client). The copy is checked like a fetch (the
// digest, or the v1 checksum) but never published: the leader commits the blob to the shared
// store, and the copy is deleted once its last reader is done.
import path from 'node:path';
import type { DigestAlgorithm, Digest } from '../protocol/digest.js';
import { writeChunk, type BlobWriter } from '../storage/blob-store.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';

/** The subdirectory of storage.path that holds followers' copies (cleared at start-up). */
export const PEER_COPIES_DIR = 'peer-copies';

export class PeerCopyStore extends FsBlobStore {
  constructor(storagePath: string) {
    super(path.join(storagePath, PEER_COPIES_DIR));
  }

  override async createWriter(expected?: Digest, options: { algorithm?: DigestAlgorithm } = {}): Promise<BlobWriter> {
    return new UnpublishedCopy(await super.createWriter(expected, options));
  }
}

/**
 * A scratch file checked as a blob is before its commit, whose "commit" publishes nothing.
 * slowCommit: readers get their final byte once the check passed, as on the leader.
 */
class UnpublishedCopy implements BlobWriter {
  readonly slowCommit = true;

  constructor(private readonly file: BlobWriter) {}

  get expected(): Digest | undefined {
    return this.file.expected;
  }

  get bytesWritten(): number {
    return this.file.bytesWritten;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.file.write(chunk);
  }

  writeNow(chunk: Uint8Array): Promise<void> | undefined {
    return writeChunk(this.file, chunk);
  }

  readAt(position: number, length: number): Promise<Buffer> {
    return this.file.readAt(position, length);
  }

  verify(expectedSize?: number): Promise<Digest> {
    return this.file.verify(expectedSize);
  }

  /** Checks the copy; the leader publishes the blob. */
  commit(expectedSize?: number): Promise<Digest> {
    return this.file.verify(expectedSize);
  }

  abort(): Promise<void> {
    return this.file.abort();
  }

  /** Nobody reads the copy any more: it goes. */
  close(): void {
    this.file.close();
    void this.file.abort().catch(() => undefined);
  }
}

/** The copies' store under storage.path, emptied of what a killed process left. */
export async function openPeerCopies(storagePath: string): Promise<PeerCopyStore> {
  const store = new PeerCopyStore(path.resolve(storagePath));
  await store.init({ clearStaging: true });
  return store;
}
