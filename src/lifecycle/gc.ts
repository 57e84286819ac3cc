// `longshore gc`: deletes blobs that no manifest references and that are older than a grace
// period, private blobs that no repository links any more (after the same grace), records
// that point at deleted manifests, and abandoned staged writes.
// Safe while a server runs on the same data: the server treats a vanished blob as a miss,
// and the grace period protects blobs that are being fetched or were just fetched.
import type { BlobEvents, PrivateContent } from '../coordination/ports.js';
import { parseDigest } from '../protocol/digest.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { referencedDigests } from '../protocol/manifest.js';
import type { BlobStore } from '../storage/blob-store.js';
import { linkedDigest, metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { allMirroredImages, V1_IMAGE_PREFIXES, V1ImageStore } from '../storage/v1-image-store.js';
import { announceCacheChange } from './cache-changes.js';

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
  /** private: content pushed here that no repository links any more. */
  removedBlobs: Array<{ digest: string; size: number; private: boolean }>;
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

  // What private repositories link (as a layer or a manifest): private content with no link
  // left anywhere is reclaimed (a secret pushed by mistake and deleted must not stay on disk).
  const linkedPrivate = new Set<string>();
  for (const key of await collect(walkRecords(targets.metadata, metadataKeys.localRoot))) {
    const linked = linkedDigest(key);
    if (linked !== undefined) linkedPrivate.add(linked);
  }
  // v1 images are global by id and outlive their repositories: their layers stay.
  const privateV1 = new V1ImageStore(targets.metadata, V1_IMAGE_PREFIXES.private);
  for (const id of await privateV1.list()) {
    const layer = (await privateV1.get(id))?.layer;
    if (layer) linkedPrivate.add(layer.digest);
  }
  // What mirrored tags point at (a manifest both mirrored and pushed stays a mirrored root).
  const mirrorTagKeys = (await collect(walkRecords(targets.metadata, metadataKeys.mirrorRoot))).filter((key) => key.includes('/_tags/'));
  const tagged = new Map<string, string>();
  for (const key of mirrorTagKeys) {
    const tag = await targets.metadata.get<{ digest: string }>(key);
    if (tag) tagged.set(key, tag.digest);
  }
  const taggedDigests = new Set(tagged.values());

  // Roots: every manifest we hold a record for (a private one only while a repository links
  // it), and everything it references.
  const referenced = new Set<string>();
  const danglingManifests = new Set<string>();
  for (const key of await collect(walkRecords(targets.metadata, metadataKeys.manifestsRoot))) {
    const [, algorithm, hex] = key.split('/');
    const digest = `${algorithm}:${hex}`;
    if (!linkedPrivate.has(digest) && !taggedDigests.has(digest) && (await targets.privateContent.has(digest))) continue;
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
  for (const [key, digest] of tagged) {
    if (danglingManifests.has(digest) || !(await targets.blobs.stat(parseDigest(digest)))) {
      if (!options.dryRun) await targets.metadata.delete(key);
      report.removedRecords += 1;
    }
  }

  for await (const blob of targets.blobs.list()) {
    report.scannedBlobs += 1;
    const isPrivate = await targets.privateContent.has(blob.digest);
    const keep = referenced.has(blob.digest) || (isPrivate && linkedPrivate.has(blob.digest)) || now - blob.storedAt < options.graceMs;
    if (keep) {
      report.keptBlobs += 1;
      continue;
    }
    if (!options.dryRun) {
      const digest = parseDigest(blob.digest);
      // The bytes go first, then the private mark: never readable without it.
      if (await targets.blobs.delete(digest)) targets.events?.publish({ type: 'removed', digest: blob.digest, reason: 'collected' });
      if (isPrivate) {
        await targets.privateContent.remove(digest);
        if (await targets.metadata.delete(metadataKeys.manifest(digest))) report.removedRecords += 1;
      }
    }
    report.removedBlobs.push({ digest: blob.digest, size: blob.size, private: isPrivate });
    report.freedBytes += blob.size;
  }

  report.removedTempFiles = await targets.blobs.sweepStaging({ olderThanMs: options.graceMs, dryRun: options.dryRun, now });
  // Servers on this storage keep figures in memory (cache size, private bytes): tell them.
  if (!options.dryRun && (report.removedBlobs.length > 0 || report.removedRecords > 0)) await announceCacheChange(targets.metadata, 'gc');
  return report;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
