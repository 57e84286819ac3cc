// The one positioned-write loop of the fs driver: the page-cache writer's batches
// (fs-blob-store.ts) and the staging blocks (direct-staging.ts) both go through it.
import type { FileHandle } from 'node:fs/promises';

/** pwritev until every byte of `buffers` is at `position` onwards (writev may write less). */
export async function writeAllAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let remaining = buffers;
  let at = position;
  while (remaining.length > 0) {
    let { bytesWritten } = await handle.writev(remaining, at);
    if (bytesWritten === 0) throw new Error('writev wrote nothing');
    at += bytesWritten;
    let done = 0;
    while (done < remaining.length && bytesWritten >= (remaining[done] as Buffer).byteLength) {
      bytesWritten -= (remaining[done] as Buffer).byteLength;
      done += 1;
    }
    remaining = remaining.slice(done);
    const first = remaining[0];
    if (first !== undefined && bytesWritten > 0) remaining[0] = first.subarray(bytesWritten);
  }
}
