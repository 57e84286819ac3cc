// The sizes the mirror knows for blobs before it fetches them: every mirrored image manifest it
// serves names its config and layers with their sizes. A blob miss passes the size down to the
// upstream client, which refuses a Content-Length that disagrees and cuts a body sent without
// one at that size (issue 14 point 4): an upstream streaming forever cannot fill the disk.
//
// Learned per upstream (a size one upstream's manifest states never bounds another's blob), in
// bounded memory. A manifest is read once per process: hits of the same manifest cost a lookup.
import { growingLru } from '../util/growing-lru.js';
import { parseManifest } from '../protocol/manifest.js';
import type { StoredManifest } from '../storage/manifest-store.js';

const SIZES_KEPT = 100_000;
const MANIFESTS_KEPT = 20_000;

export class ExpectedBlobSizes {
  private readonly sizes = growingLru<string, number>(SIZES_KEPT);
  /** Manifests already read (upstream + digest), so a hit does not parse its manifest again. */
  private readonly read = growingLru<string, true>(MANIFESTS_KEPT);
  /** The upstream each manifest object in memory was last read for (weakly held). */
  private readonly lastReadBy = new WeakMap<StoredManifest, string>();

  /** Remembers the sizes of the config and layers `manifest` (from `upstream`) references. */
  learn(upstream: string, manifest: StoredManifest): void {
    // A hot tag is served the same StoredManifest object (the manifest store's memory) request
    // after request: one WeakMap look-up, no key string nor LRU bookkeeping per request.
    if (this.lastReadBy.get(manifest) === upstream) return;
    this.lastReadBy.set(manifest, upstream);
    const key = `${upstream}|${manifest.digest}`;
    if (this.read.has(key)) return;
    this.read.set(key, true);
    let parsed;
    try {
      parsed = parseManifest(manifest.bytes, manifest.mediaType);
    } catch {
      return; // not ours to judge here: the client gets the manifest as the upstream sent it
    }
    if (parsed.kind !== 'image') return;
    for (const blob of [parsed.config, ...parsed.layers]) {
      if (Number.isSafeInteger(blob.size) && blob.size >= 0) this.sizes.set(`${upstream}|${blob.digest}`, blob.size);
    }
  }

  /** The size a manifest from `upstream` gave `digest`, if the mirror has seen one. */
  sizeOf(upstream: string, digest: string): number | undefined {
    return this.sizes.get(`${upstream}|${digest}`);
  }
}
