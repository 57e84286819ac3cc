// `longshore gc`: deletes blobs that no manifest references and that are older than a grace
// period, deletes records that point at deleted manifests, and clears abandoned temp files.
// Safe while a server runs on the same data: the server treats a vanished blob as a miss,
// and the grace period protects blobs that are being fetched or were just fetched.
import type { BlobEvents, PrivateContent } from '../coordination/ports.js';
import { parseDigest } from '../protocol/digest.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { referencedDigests } from '../protocol/manifest.js';
import type { BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { allMirroredImages } from '../storage/v1-image-store.js';

export interface GcOptions {
  dryRun: boolean;
  /** Blobs and temp files younger than this are kept (ms). */
  graceMs: number;
  now?: number;
}

export interface GcReport {
  dryRun: boolean;
  scannedBlobs: number;
  keptBlobs: number;
  removedBlobs: Array<{ digest: string; size: number }>;
  freedBytes: number;
  removedTempFiles: number;
  removedRecords: number;
}

/** The storage ports gc works on: nothing of the serving graph. */
export interface GcTargets {
  blobs: BlobStore;
  metadata: MetadataStore;
  privateContent: PrivateContent;
  /** Told of every deleted blob, so the caches of a server beside gc can forget it. */
  events?: BlobEvents;
}

async function* walkRecords(metadata: MetadataStore, prefix: string): AsyncGenerator<string> {
  for (const name of await metadata.list(prefix)) {
    const key = `${prefix}/${name}`;
    const children = await metadata.list(key);
    if (children.length > 0) yield* walkRecords(metadata, key);
    else yield key;
  }
}

export async function collectGarbage(targets: GcTargets, options: GcOptions): Promise<GcReport> {
  const now = options.now ?? Date.now();
  const report: GcReport = { dryRun: options.dryRun, scannedBlobs: 0, keptBlobs: 0, removedBlobs: [], freedBytes: 0, removedTempFiles: 0, removedRecords: 0 };

  // Roots: every manifest we hold a record for, and everything it references.
  const referenced = new Set<string>();
  const danglingManifests = new Set<string>();
  for (const key of await collect(walkRecords(targets.metadata, metadataKeys.manifestsRoot))) {
    const [, algorithm, hex] = key.split('/');
    const digest = `${algorithm}:${hex}`;
    const record = await targets.metadata.get<{ mediaType: string }>(key);
    // Only a missing file makes a record dangling: any other read error (EIO, EMFILE, a file
    // over the limit) stops gc, rather than deleting a manifest and then its layers.
    const bytes = await targets.blobs.readAll(parseDigest(digest), MAX_MANIFEST_BYTES).catch((error: unknown) => {
      throw new Error(`gc stopped: cannot read manifest ${digest} (${(error as Error).message}); nothing was deleted after it`, { cause: error });
    });
    if (!record || !bytes) {
      danglingManifests.add(digest);
      if (!options.dryRun) await targets.metadata.delete(key);
      report.removedRecords += 1;
      continue;
    }
    referenced.add(digest);
    for (const child of referencedDigests(bytes, record.mediaType)) referenced.add(child);
  }

  // v1 images cached by the mirror point at their layers (v1 layers have no manifest).
  for await (const image of allMirroredImages(targets.metadata)) {
    if (image.layer) referenced.add(image.layer.digest);
  }

  // Tags that point at a manifest that is gone would answer with nothing: drop them.
  for (const key of await collect(walkRecords(targets.metadata, metadataKeys.mirrorRoot))) {
    if (!key.includes('/_tags/')) continue;
    const tag = await targets.metadata.get<{ digest: string }>(key);
    if (tag && (danglingManifests.has(tag.digest) || !(await targets.blobs.stat(parseDigest(tag.digest))))) {
      if (!options.dryRun) await targets.metadata.delete(key);
      report.removedRecords += 1;
    }
  }

  for await (const blob of targets.blobs.list()) {
    report.scannedBlobs += 1;
    const keep = referenced.has(blob.digest) || (await targets.privateContent.has(blob.digest)) || now - blob.storedAt < options.graceMs;
    if (keep) {
      report.keptBlobs += 1;
      continue;
    }
    if (!options.dryRun && (await targets.blobs.delete(parseDigest(blob.digest)))) {
      targets.events?.publish({ type: 'removed', digest: blob.digest, reason: 'collected' });
    }
    report.removedBlobs.push({ digest: blob.digest, size: blob.size });
    report.freedBytes += blob.size;
  }

  report.removedTempFiles = await targets.blobs.sweepStaging({ olderThanMs: options.graceMs, dryRun: options.dryRun, now });
  return report;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
