// `longshore export`: writes images as an OCI image layout in a tar (oci-layout, index.json
// with each image's full name in `org.opencontainers.image.ref.name`, blobs/sha256/…), taken
// through a Longshore (cache, or upstream on a miss). Blobs stream from the registry into the
// tar, hashed on the way; the file appears under its name only when complete.
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { Progress } from '../cli/progress.js';
import { createDigester, digestOf, parseDigest } from '../protocol/digest.js';
import { formatImageRef, type ImageRef } from '../protocol/image-ref.js';
import type { Descriptor } from '../protocol/manifest.js';
import type { UpstreamRegistry } from '../upstream/upstream.js';
import { planImage, type FetchedManifest, type ImagePlan, type PlatformChoice } from './image-walker.js';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

function blobPath(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return `blobs/${algorithm}/${hex}`;
}

async function addBytes(pack: tar.Pack, name: string, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => pack.entry({ name, size: bytes.byteLength }, bytes, (error) => (error ? reject(error) : resolve())));
}

export interface ExportResult {
  images: Array<{ image: string; error?: Error }>;
  bytes: number;
}

export async function exportBundle(
  client: UpstreamRegistry,
  refs: ImageRef[],
  platforms: PlatformChoice,
  outFile: string,
  progress: Progress,
): Promise<ExportResult> {
  const partial = `${outFile}.partial`;
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(partial));
  const written = new Set<string>();
  const indexEntries: Descriptor[] = [];
  const result: ExportResult = { images: [], bytes: 0 };
  try {
    await addBytes(pack, 'oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    for (const ref of refs) {
      try {
        const plan = await planImage(client, ref, platforms);
        const top = bundledTop(plan);
        const pending = plan.blobs.filter((b) => !written.has(b.digest));
        progress.begin(ref.text, pending.reduce((n, b) => n + b.size, 0), pending.length);
        for (const manifest of [top, ...plan.images]) {
          if (written.has(manifest.digest)) continue;
          await addBytes(pack, blobPath(manifest.digest), manifest.bytes);
          written.add(manifest.digest);
        }
        for (const blob of pending) {
          await copyBlob(client, plan.repository, blob, pack, (n) => {
            result.bytes += n;
            progress.advance(ref.text, n);
          });
          written.add(blob.digest);
          progress.blobDone(ref.text);
        }
        indexEntries.push({
          mediaType: top.mediaType,
          digest: top.digest,
          size: top.bytes.byteLength,
          annotations: {
            [REF_NAME_ANNOTATION]: formatImageRef(ref),
            ...(top === plan.top ? {} : { [SOURCE_INDEX_ANNOTATION]: plan.top.digest }),
          },
        });
        progress.end(ref.text);
        result.images.push({ image: ref.text });
      } catch (error) {
        progress.end(ref.text, error as Error);
        result.images.push({ image: ref.text, error: error as Error });
        // A failure inside a blob leaves the tar stream unusable: stop here.
        if ((error as { fatal?: boolean }).fatal) throw error;
      }
    }
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: indexEntries };
    await addBytes(pack, 'index.json', Buffer.from(JSON.stringify(index, null, 2)));
    pack.finalize();
    await writing;
    if (result.images.some((i) => i.error)) {
      await rm(partial, { force: true });
    } else {
      await rename(partial, outFile);
    }
    return result;
  } catch (error) {
    pack.destroy(error as Error);
    await writing.catch(() => undefined);
    await rm(partial, { force: true });
    throw error;
  }
}

/** Where a platform-filtered index came from: the upstream's full index digest. */
export const SOURCE_INDEX_ANNOTATION = 'io.longshore.export.source-index';

/**
 * The top manifest as the bundle holds it. With some platforms left out, the upstream's index
 * would name manifests the bundle lacks, and `skopeo copy --all` from the bundle would fail on
 * them: the bundle gets a copy of the index listing only the platforms it holds.
 */
function bundledTop(plan: ImagePlan): FetchedManifest {
  if (plan.skippedPlatforms.length === 0) return plan.top;
  const index = JSON.parse(plan.top.bytes.toString('utf8')) as { manifests: Descriptor[] };
  const held = new Set(plan.images.map((image) => image.digest));
  const bytes = Buffer.from(JSON.stringify({ ...index, manifests: index.manifests.filter((m) => held.has(m.digest)) }, null, 3));
  return { digest: digestOf(bytes), mediaType: plan.top.mediaType, bytes };
}

async function copyBlob(client: UpstreamRegistry, repository: string, blob: Descriptor, pack: tar.Pack, counted: (bytes: number) => void): Promise<void> {
  const response = await client.fetchBlob(repository, blob.digest, blob.size);
  if (!response) throw new Error(`blob ${blob.digest} not found`);
  const expected = parseDigest(blob.digest);
  const hash = createDigester(expected.algorithm);
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      counted(chunk.byteLength);
      callback(null, chunk);
    },
  });
  const entry = pack.entry({ name: blobPath(blob.digest), size: blob.size });
  try {
    await pipeline(response.body, tap, entry);
  } catch (error) {
    throw Object.assign(new Error(`blob ${blob.digest}: ${(error as Error).message}`), { fatal: true });
  }
  const actual = `${expected.algorithm}:${hash.digest('hex')}`;
  if (actual !== blob.digest) throw Object.assign(new Error(`blob ${blob.digest} arrived as ${actual}`), { fatal: true });
}
