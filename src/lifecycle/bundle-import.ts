// `longshore import`: loads an OCI image-layout tar (as `export` writes) into a data
// directory, so an offline site can pull those images by their original names.
// All or nothing: every blob is written to a temp file and verified against its digest, and
// every manifest's references are checked, before anything is published. A truncated or
// corrupted bundle changes nothing.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import tar from 'tar-stream';
import type { Progress } from '../cli/progress.js';
import { speaksV2, type Config } from '../config/schema.js';
import type { CacheTracker } from '../mirror/pull-through.js';
import { UpstreamRouter, type RoutableUpstream } from '../mirror/router.js';
import { TagRecords } from '../mirror/tag-records.js';
import { parseDigest, tryParseDigest, type Digest } from '../protocol/digest.js';
import { parseImageRef, mirrorRepositoryName } from '../protocol/image-ref.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { parseManifest, type Descriptor } from '../protocol/manifest.js';
import { sniffManifestMediaType } from '../protocol/media-types.js';
import type { BlobStore } from '../storage/blob-store.js';
import { ManifestStore } from '../storage/manifest-store.js';
import { openStorage } from '../storage/open-storage.js';
import { REF_NAME_ANNOTATION } from './bundle-export.js';
import { StagedPush } from '../registry/staged-push.js';
import { announceCacheChange } from './cache-changes.js';

export interface ImportTargets {
  blobs: BlobStore;
  manifests: ManifestStore;
  tags: TagRecords;
  /** Routing only (names to upstreams): import never contacts an upstream. */
  router: UpstreamRouter<RoutableUpstream>;
  tracker: CacheTracker;
}

/**
 * What `longshore import` works on, and nothing more: the storage ports, the manifest and tag
 * records, a router built from the configured names, and a cache index that records the
 * imported blobs' access times. It neither rebuilds nor bounds: this process sees only what
 * it imports, and the server's index orders and bounds them when it starts.
 */
export async function openImportTargets(config: Config, log: Logger): Promise<ImportTargets & { close(options?: { changed?: boolean }): Promise<void> }> {
  const storage = await openStorage(config, log, { ownsStaging: false });
  const { blobs, metadata } = storage;
  const tracker = storage.createCacheIndex(undefined);
  const router = new UpstreamRouter<RoutableUpstream>(
    config.upstreams.filter(speaksV2).map((u) => ({ name: u.name, hosts: u.hosts, isDefault: u.default, libraryPrefix: u.libraryPrefix })),
  );
  return {
    blobs,
    manifests: new ManifestStore(blobs, metadata),
    tags: new TagRecords(metadata),
    router,
    tracker,
    /** changed: something was imported; servers on this storage are told, once the access times are written. */
    close: async ({ changed = false } = {}) => {
      await tracker.close();
      if (changed) await announceCacheChange(metadata, 'import');
      await storage.close();
    },
  };
}

export interface ImportResult {
  blobs: number;
  bytes: number;
  tags: string[];
}

interface Staged {
  push: StagedPush;
  digest: Digest;
  size: number;
  /** The bytes of small JSON blobs (manifests, configs), which the plan reads back. */
  json: Buffer | undefined;
}

export class BundleError extends Error {
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(`bundle ${file}: ${message}`, options);
    this.name = 'BundleError';
  }
}

export async function importBundle(file: string, targets: ImportTargets, progress: Progress): Promise<ImportResult> {
  const staged = new Map<string, Staged>();
  const small = new Map<string, Buffer>(); // oci-layout, index.json
  let bytes = 0;
  try {
    const extract = tar.extract();
    const reading = pipeline(createReadStream(file), extract);
    // If an entry fails, the loop below stops and the pipeline rejects with a premature
    // close: the entry's error is the one to report, so this rejection is observed but not raised.
    reading.catch(() => undefined);
    // The blob count is learned as the tar is read; the bytes to read are the file's.
    progress.begin(file, (await stat(file)).size, 0);
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      const blob = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
      if (entry.header.type !== 'file') {
        entry.resume();
      } else if (blob) {
        const digest = tryParseDigest(`${blob[1]}:${blob[2]}`);
        if (!digest) throw new BundleError(file, `entry ${name} is not named by a valid digest`);
        if (staged.has(digest.text)) {
          entry.resume(); // the same content twice: the first copy is verified already
          continue;
        }
        const size = entry.header.size ?? 0;
        const entryStaged: Staged = { push: await StagedPush.open(targets.blobs, digest), digest, size, json: undefined };
        staged.set(digest.text, entryStaged);
        const kept: Buffer[] = [];
        await entryStaged.push.receive(entry as AsyncIterable<Buffer>, (chunk) => {
          if (size <= MAX_MANIFEST_BYTES) kept.push(chunk);
          bytes += chunk.byteLength;
          progress.advance(file, chunk.byteLength);
        });
        await entryStaged.push.verify({ size });
        // Verified: the temp file waits for its publish without its descriptor, so a bundle of
        // thousands of blobs does not run out of them.
        entryStaged.push.close();
        const head = kept[0];
        if (head !== undefined && head[0] === 0x7b /* { */) entryStaged.json = Buffer.concat(kept);
        progress.blobDone(file);
      } else if (name === 'oci-layout' || name === 'index.json') {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          size += chunk.byteLength;
          if (size > MAX_MANIFEST_BYTES) throw new BundleError(file, `${name} is larger than ${MAX_MANIFEST_BYTES} bytes`);
          chunks.push(chunk);
        }
        small.set(name, Buffer.concat(chunks));
      } else {
        entry.resume();
      }
    }
    await reading;

    const plan = await checkBundle(file, small, staged, targets);
    // Publish: blobs first, then manifest records, then tags, so a crash in between leaves at
    // worst unreferenced blobs, never a tag pointing at something missing.
    for (const { push, digest, size } of staged.values()) {
      await push.publish();
      targets.tracker.added(digest.text, size);
    }
    for (const manifest of plan.manifests) {
      await targets.manifests.put(parseDigest(manifest.digest), manifest.bytes, manifest.mediaType);
    }
    const now = Date.now();
    for (const tag of plan.tags) {
      await targets.tags.put(tag.upstream, tag.repository, tag.tag, { digest: tag.digest, mediaType: tag.mediaType, checkedAt: now });
    }
    progress.end(file);
    return { blobs: staged.size, bytes, tags: plan.tags.map((t) => t.name) };
  } catch (error) {
    for (const { push } of staged.values()) await push.abort();
    const wrapped = error instanceof BundleError ? error : new BundleError(file, (error as Error).message, { cause: error });
    progress.end(file, wrapped);
    throw wrapped;
  } finally {
    for (const { push } of staged.values()) push.close();
  }
}

interface ImportPlan {
  manifests: Array<{ digest: string; mediaType: string; bytes: Buffer }>;
  tags: Array<{ name: string; upstream: string; repository: string; tag: string; digest: string; mediaType: string }>;
}

async function checkBundle(file: string, small: Map<string, Buffer>, staged: Map<string, Staged>, targets: ImportTargets): Promise<ImportPlan> {
  const layout = small.get('oci-layout');
  if (!layout || !(JSON.parse(layout.toString('utf8')) as { imageLayoutVersion?: string }).imageLayoutVersion) {
    throw new BundleError(file, 'no oci-layout file: not an OCI image layout');
  }
  const indexBytes = small.get('index.json');
  if (!indexBytes) throw new BundleError(file, 'no index.json');
  const index = parseManifest(indexBytes, 'application/vnd.oci.image.index.v1+json');
  if (index.kind !== 'index') throw new BundleError(file, 'index.json is not an image index');

  const present = async (digest: string) => staged.has(digest) || (await targets.blobs.stat(parseDigest(digest))) !== undefined;
  const readManifest = async (descriptor: Descriptor): Promise<Buffer> => {
    const stagedBlob = staged.get(descriptor.digest);
    if (stagedBlob) {
      if (!stagedBlob.json) throw new BundleError(file, `manifest ${descriptor.digest} is not JSON`);
      return stagedBlob.json;
    }
    const stored = await targets.blobs.readAll(parseDigest(descriptor.digest), MAX_MANIFEST_BYTES);
    if (!stored) throw new BundleError(file, `manifest ${descriptor.digest} is missing`);
    return stored;
  };

  const plan: ImportPlan = { manifests: [], tags: [] };
  const visit = async (descriptor: Descriptor, requiredBy: string): Promise<void> => {
    if (!(await present(descriptor.digest))) throw new BundleError(file, `manifest ${descriptor.digest} (${requiredBy}) is missing`);
    const bytes = await readManifest(descriptor);
    const mediaType = descriptor.mediaType || sniffManifestMediaType(bytes) || 'application/vnd.oci.image.manifest.v1+json';
    plan.manifests.push({ digest: descriptor.digest, mediaType, bytes });
    const parsed = parseManifest(bytes, mediaType);
    if (parsed.kind === 'index') {
      // Platforms left out at export are allowed; those included must be complete.
      for (const child of parsed.manifests) if (await present(child.digest)) await visit(child, descriptor.digest);
    } else if (parsed.kind === 'image') {
      for (const blob of [parsed.config, ...parsed.layers]) {
        if (!(await present(blob.digest))) throw new BundleError(file, `blob ${blob.digest} referenced by ${descriptor.digest} is missing`);
      }
    }
  };

  for (const entry of index.manifests) {
    const name = entry.annotations?.[REF_NAME_ANNOTATION];
    await visit(entry, name ?? 'index.json');
    if (!name) continue;
    const ref = parseImageRef(name);
    if (!ref.tag) continue;
    const target = targets.router.resolve(mirrorRepositoryName(ref), undefined);
    if (!target) throw new BundleError(file, `no upstream in the configuration serves "${name}" (add one whose hosts include ${ref.host ?? 'its registry'})`);
    plan.tags.push({ name, upstream: target.upstream.name, repository: target.repository, tag: ref.tag, digest: entry.digest, mediaType: entry.mediaType });
  }
  return plan;
}
