// Early scavenges for streams of short-lived Buffers (issue 19: cold misses).
//
// Every chunk read from a socket is a fresh ArrayBuffer (64 KiB), whose memory V8 frees only when
// a GC finds its small JS object dead. Those objects fill the young generation so slowly that a
// cold 200 MiB miss saw a scavenge only every ~20 MiB, while V8 counts the backing stores
// allocated since the last mark-compact against the old generation's limit: the chunks, dead
// long before, started 10-15 full mark-compacts per miss (--trace-gc), 0.3-0.5 s of CPU on the
// GC threads, competing with the download for this project's two cores. A scavenge every few MiB
// of chunks frees them while they are young. Its pause (cold-cpu --trace-gc: median 1.3 ms, p95
// 6 ms, ~120 ms per 200 MiB miss) costs less than the collections it saves; one every 8 MiB
// halves the pauses but lets the mark-compacts come back (36-40 against 6).
// Measured with bench/cold-cpu.ts --trace-gc: 40-70 -> 5 mark-compacts over a warm-up and three
// misses (with MAX_UNFLUSHED_BYTES of fs-blob-store.ts at 2 MiB: see there).
//
// The scavenge comes from exposed-gc.ts. A Node that no longer hands gc out costs the early
// scavenges, never a transfer: this runs inside the data handlers of downloads and pushes.
import { exposedGc } from './exposed-gc.js';

/** Bytes of released chunks between two scavenges: a few writer batches' worth. */
export const SCAVENGE_EVERY_BYTES = 4 * 1024 * 1024;

let bytesSinceScavenge = 0;
let scavenges = 0;

/**
 * Counts `bytes` of chunks that are (or soon will be) garbage, and runs a scavenge each time
 * SCAVENGE_EVERY_BYTES of them accumulated, process-wide (concurrent transfers share one count).
 */
export function noteBufferChurn(bytes: number): void {
  bytesSinceScavenge += bytes;
  if (bytesSinceScavenge < SCAVENGE_EVERY_BYTES) return;
  bytesSinceScavenge = 0;
  scavenges += 1;
  exposedGc()({ type: 'minor' });
}

/** Scavenges run by noteBufferChurn so far (tests). */
export function churnScavenges(): number {
  return scavenges;
}
