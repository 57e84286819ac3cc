// `longshore warm`: pulls images through the mirror so their manifests and blobs are cached
// before anyone asks (a new cluster node, an air-gapped site about to be cut off).
import type { Progress } from '../cli/progress.js';
import { servedFromCache } from '../protocol/cache-status.js';
import type { ImageRef } from '../protocol/image-ref.js';
import type { UpstreamRegistry } from '../upstream/upstream.js';
import { planImage, type PlatformChoice } from './image-walker.js';

// A few blobs at a time: enough to overlap latency, few enough not to flood the upstream.
const BLOB_CONCURRENCY = 3;

export interface WarmResult {
  image: string;
  error?: Error;
  blobs: number;
  bytes: number;
}

export async function warmImage(client: UpstreamRegistry, ref: ImageRef, platforms: PlatformChoice, progress: Progress): Promise<WarmResult> {
  let bytes = 0;
  try {
    const plan = await planImage(client, ref, platforms);
    progress.begin(ref.text, plan.blobs.reduce((n, b) => n + b.size, 0), plan.blobs.length);
    const queue = [...plan.blobs];
    const worker = async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) {
        const response = await client.fetchBlob(plan.repository, blob.digest, blob.size);
        if (!response) throw new Error(`blob ${blob.digest} not found`);
        let blobBytes = 0;
        for await (const chunk of response.body as AsyncIterable<Buffer>) {
          blobBytes += chunk.byteLength;
          progress.advance(ref.text, chunk.byteLength);
        }
        bytes += blobBytes;
        // The mirror says whether it had the blob (Cache-Status). A private repository's blob
        // has no such header: it is stored here, so it counts as cached, not fetched.
        progress.blobDone(ref.text, { cached: servedFromCache(response.cacheStatus) ?? true, bytes: blobBytes });
      }
    };
    await Promise.all(Array.from({ length: Math.min(BLOB_CONCURRENCY, queue.length) }, worker));
    progress.end(ref.text);
    return { image: ref.text, blobs: plan.blobs.length, bytes };
  } catch (error) {
    progress.end(ref.text, error as Error);
    return { image: ref.text, error: error as Error, blobs: 0, bytes };
  }
}
