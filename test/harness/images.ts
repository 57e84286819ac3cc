// Test images without docker: real gzip'd tar layers of random bytes, valid configs and
// manifests, written as OCI image layouts (for skopeo to push) or pushed over HTTP (for Docker
// media types, which skopeo 1.9 cannot read from an OCI layout).
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { digestHex, sha256Digest } from './digests.js';
import { MEDIA_TYPES, putManifest, uploadBlob } from './registry-client.js';
import { makeTempDir } from './tmp.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface GeneratedLayer {
  /** sha256 of the gzip'd tar (the blob). */
  digest: string;
  /** Size of the gzip'd tar (the blob). */
  size: number;
  mediaType: string;
  /** sha256 of the uncompressed tar (rootfs.diff_ids entry). */
  diffId: string;
  /** Size of the uncompressed tar. */
  tarSize: number;
}

export interface GeneratedImage {
  /** The tag in the layout/registry; undefined for a platform image referenced only from an index. */
  tag: string | undefined;
  platform: Platform;
  manifestDigest: string;
  manifestMediaType: string;
  manifestBytes: Buffer;
  configDigest: string;
  configMediaType: string;
  configBytes: Buffer;
  layers: GeneratedLayer[];
}

export interface GeneratedIndex {
  tag: string;
  /** Digest of the OCI image index / Docker manifest list. */
  indexDigest: string;
  indexMediaType: string;
  indexBytes: Buffer;
  /** The platform images it references, in index order. */
  manifests: GeneratedImage[];
}

export interface ImageSpec {
  tag: string;
  /** Random content bytes of the single file in each layer (the tar and blob are a bit larger). */
  layerSizes: number[];
  platform?: Platform;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
export const DEFAULT_INDEX_PLATFORMS: Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
  { os: 'linux', architecture: 's390x' },
];
const DEFAULT_LIST_PLATFORMS: Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64', variant: 'v8' },
];
const SMALL_LAYER_BYTES = 4 * 1024;
// A fixed timestamp keeps configs comparable across runs; only layer contents are random.
const CREATED = '2024-01-01T00:00:00Z';
const RANDOM_CHUNK_BYTES = 1024 * 1024;
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

type Flavour = 'oci' | 'docker';
const FLAVOUR_TYPES = {
  oci: { manifest: MEDIA_TYPES.ociManifest, index: MEDIA_TYPES.ociIndex, config: MEDIA_TYPES.ociConfig, layer: MEDIA_TYPES.ociLayer },
  docker: { manifest: MEDIA_TYPES.dockerManifest, index: MEDIA_TYPES.dockerManifestList, config: MEDIA_TYPES.dockerConfig, layer: MEDIA_TYPES.dockerLayer },
} as const;

// ---------------------------------------------------------------------------------------------
// Layers: one ustar archive holding one regular file of random bytes, gzip level 1.

function writeOctal(header: Buffer, value: number, offset: number, fieldLength: number): void {
  // Octal digits, zero-padded, NUL-terminated: the classic ustar numeric field.
  header.write(`${value.toString(8).padStart(fieldLength - 1, '0')}\0`, offset, fieldLength, 'ascii');
}

function ustarFileHeader(name: string, size: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  if (size >= 8 ** 11) throw new Error(`tar entry too large for a ustar size field: ${size}`);
  const header = Buffer.alloc(512, 0);
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, 0o644, 100, 8); // mode
  writeOctal(header, 0, 108, 8); // uid
  writeOctal(header, 0, 116, 8); // gid
  writeOctal(header, size, 124, 12);
  writeOctal(header, Date.parse(CREATED) / 1000, 136, 12); // mtime
  header.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  header.write('0', 156, 1, 'ascii'); // typeflag: regular file
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  header.write('root', 265, 32, 'ascii'); // uname
  header.write('root', 297, 32, 'ascii'); // gname
  writeOctal(header, 0, 329, 8); // devmajor
  writeOctal(header, 0, 337, 8); // devminor
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return header;
}

/** The tar stream, chunk by chunk, so a 50 MiB layer is never held in memory at once. */
function* randomFileTar(fileName: string, contentBytes: number): Generator<Buffer> {
  yield ustarFileHeader(fileName, contentBytes);
  for (let remaining = contentBytes; remaining > 0; remaining -= RANDOM_CHUNK_BYTES) {
    yield randomBytes(Math.min(remaining, RANDOM_CHUNK_BYTES));
  }
  const padding = (512 - (contentBytes % 512)) % 512;
  // Pad the file to a whole block, then two zero blocks end the archive.
  yield Buffer.alloc(padding + 1024, 0);
}

class HashingCounter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** Writes one gzip'd tar layer into `blobDir` under its hex digest; returns its descriptor. */
async function writeRandomLayer(blobDir: string, contentBytes: number, mediaType: string): Promise<GeneratedLayer> {
  const fileName = `file-${randomBytes(6).toString('hex')}.bin`;
  const tmpPath = join(blobDir, `.tmp-${fileName}.tar.gz`);
  const uncompressed = new HashingCounter();
  const compressed = new HashingCounter();
  try {
    await pipeline(Readable.from(randomFileTar(fileName, contentBytes)), uncompressed, createGzip({ level: 1 }), compressed, createWriteStream(tmpPath));
    const digest = `sha256:${compressed.hash.digest('hex')}`;
    await rename(tmpPath, join(blobDir, digestHex(digest)));
    return { digest, size: compressed.bytes, mediaType, diffId: `sha256:${uncompressed.hash.digest('hex')}`, tarSize: uncompressed.bytes };
  } finally {
    await rm(tmpPath, { force: true });
  }
}

async function writeBlob(blobDir: string, bytes: Buffer): Promise<string> {
  const digest = sha256Digest(bytes);
  await writeFile(join(blobDir, digestHex(digest)), bytes);
  return digest;
}

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function platformFields(platform: Platform): Platform {
  return platform.variant === undefined
    ? { os: platform.os, architecture: platform.architecture }
    : { os: platform.os, architecture: platform.architecture, variant: platform.variant };
}

function describePlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter((part) => part !== undefined).join('/');
}

/** Layers, config and manifest of one image, all written as blobs into `blobDir`. */
async function buildImage(blobDir: string, flavour: Flavour, tag: string | undefined, layerSizes: number[], platform: Platform): Promise<GeneratedImage> {
  const types = FLAVOUR_TYPES[flavour];
  const layers: GeneratedLayer[] = [];
  for (const size of layerSizes) layers.push(await writeRandomLayer(blobDir, size, types.layer));
  const configBytes = jsonBytes({
    created: CREATED,
    ...platformFields(platform),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Labels: { 'org.longshore.test.image': `${tag ?? 'untagged'} ${describePlatform(platform)}` },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map((layer, index) => ({
      created: CREATED,
      created_by: `longshore test harness: layer ${index + 1} (${layer.tarSize} byte tar of random data)`,
    })),
  });
  const configDigest = await writeBlob(blobDir, configBytes);
  const manifestBytes = jsonBytes({
    schemaVersion: 2,
    mediaType: types.manifest,
    config: { mediaType: types.config, digest: configDigest, size: configBytes.length },
    layers: layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
  });
  const manifestDigest = await writeBlob(blobDir, manifestBytes);
  return { tag, platform, manifestDigest, manifestMediaType: types.manifest, manifestBytes, configDigest, configMediaType: types.config, configBytes, layers };
}

function indexBytesFor(flavour: Flavour, images: GeneratedImage[]): Buffer {
  return jsonBytes({
    schemaVersion: 2,
    mediaType: FLAVOUR_TYPES[flavour].index,
    manifests: images.map((image) => ({
      mediaType: image.manifestMediaType,
      digest: image.manifestDigest,
      size: image.manifestBytes.length,
      platform: platformFields(image.platform),
    })),
  });
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts.

interface LayoutDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

async function prepareLayout(dir: string): Promise<string> {
  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return blobDir;
}

/** Adds tagged entries to index.json, replacing earlier entries of the same tags (layouts can be grown call by call). */
async function addToLayoutIndex(dir: string, entries: LayoutDescriptor[]): Promise<void> {
  const indexPath = join(dir, 'index.json');
  let existing: LayoutDescriptor[] = [];
  try {
    existing = (JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: LayoutDescriptor[] }).manifests;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const newTags = new Set(entries.map((entry) => entry.annotations?.[REF_NAME_ANNOTATION]));
  const kept = existing.filter((entry) => !newTags.has(entry.annotations?.[REF_NAME_ANNOTATION]));
  await writeFile(indexPath, JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [...kept, ...entries] }));
}

/**
 * Writes (or adds to) an OCI image layout in `dir` with one single-platform image per spec,
 * tagged through the org.opencontainers.image.ref.name annotation. Returns them in spec order.
 */
export async function makeOciLayout(dir: string, images: ImageSpec[]): Promise<GeneratedImage[]> {
  const blobDir = await prepareLayout(dir);
  const generated: GeneratedImage[] = [];
  for (const spec of images) {
    generated.push(await buildImage(blobDir, 'oci', spec.tag, spec.layerSizes, spec.platform ?? DEFAULT_PLATFORM));
  }
  await addToLayoutIndex(
    dir,
    generated.map((image) => ({
      mediaType: image.manifestMediaType,
      digest: image.manifestDigest,
      size: image.manifestBytes.length,
      annotations: { [REF_NAME_ANNOTATION]: image.tag as string },
    })),
  );
  return generated;
}

/**
 * Writes (or adds to) an OCI image layout in `dir` with an OCI image index under `tag` that
 * references one small single-layer image per platform (push it with skopeo --all).
 */
export async function makeOciIndexLayout(
  dir: string,
  tag: string,
  platforms: Platform[] = DEFAULT_INDEX_PLATFORMS,
  opts: { layerSize?: number } = {},
): Promise<GeneratedIndex> {
  const blobDir = await prepareLayout(dir);
  const manifests: GeneratedImage[] = [];
  for (const platform of platforms) {
    manifests.push(await buildImage(blobDir, 'oci', undefined, [opts.layerSize ?? SMALL_LAYER_BYTES], platform));
  }
  const indexBytes = indexBytesFor('oci', manifests);
  const indexDigest = await writeBlob(blobDir, indexBytes);
  await addToLayoutIndex(dir, [{ mediaType: MEDIA_TYPES.ociIndex, digest: indexDigest, size: indexBytes.length, annotations: { [REF_NAME_ANNOTATION]: tag } }]);
  return { tag, indexDigest, indexMediaType: MEDIA_TYPES.ociIndex, indexBytes, manifests };
}

// ---------------------------------------------------------------------------------------------
// Docker schema2 images and manifest lists, pushed over plain HTTP.

async function uploadImage(registryUrl: string, repo: string, blobDir: string, image: GeneratedImage, headers: Record<string, string> = {}): Promise<void> {
  for (const layer of image.layers) {
    await uploadBlob(registryUrl, repo, layer.digest, { path: join(blobDir, digestHex(layer.digest)), size: layer.size }, headers);
  }
  await uploadBlob(registryUrl, repo, image.configDigest, image.configBytes, headers);
}

async function putManifestChecked(
  registryUrl: string,
  repo: string,
  ref: string,
  bytes: Buffer,
  mediaType: string,
  expectedDigest: string,
  headers: Record<string, string> = {},
): Promise<void> {
  const digest = await putManifest(registryUrl, repo, ref, bytes, mediaType, headers);
  if (digest !== expectedDigest) {
    throw new Error(`registry stored ${repo}:${ref} as ${digest}, but the pushed bytes hash to ${expectedDigest}`);
  }
}

/** Builds a Docker schema2 image and pushes its blobs, then its manifest under `tag`. */
export async function pushDockerImage(
  registryUrl: string,
  repo: string,
  tag: string,
  layerSizes: number[],
  opts: { platform?: Platform; headers?: Record<string, string> } = {},
): Promise<GeneratedImage> {
  const work = await makeTempDir('docker-image');
  try {
    const image = await buildImage(work.path, 'docker', tag, layerSizes, opts.platform ?? DEFAULT_PLATFORM);
    // headers: e.g. Authorization, for registries that need credentials to push.
    await uploadImage(registryUrl, repo, work.path, image, opts.headers);
    await putManifestChecked(registryUrl, repo, tag, image.manifestBytes, image.manifestMediaType, image.manifestDigest, opts.headers);
    return image;
  } finally {
    await work.remove();
  }
}

/**
 * Pushes a Docker manifest list under `tag` referencing one small Docker schema2 image per
 * platform (default linux/amd64 and linux/arm64/v8). The platform manifests go up by digest
 * first: the registry refuses a list that references manifests it does not have.
 */
export async function pushDockerManifestList(
  registryUrl: string,
  repo: string,
  tag: string,
  opts: { platforms?: Platform[]; layerSize?: number } = {},
): Promise<GeneratedIndex> {
  const work = await makeTempDir('docker-list');
  try {
    const manifests: GeneratedImage[] = [];
    for (const platform of opts.platforms ?? DEFAULT_LIST_PLATFORMS) {
      const image = await buildImage(work.path, 'docker', undefined, [opts.layerSize ?? SMALL_LAYER_BYTES], platform);
      await uploadImage(registryUrl, repo, work.path, image);
      await putManifestChecked(registryUrl, repo, image.manifestDigest, image.manifestBytes, image.manifestMediaType, image.manifestDigest);
      manifests.push(image);
    }
    const indexBytes = indexBytesFor('docker', manifests);
    const indexDigest = sha256Digest(indexBytes);
    await putManifestChecked(registryUrl, repo, tag, indexBytes, MEDIA_TYPES.dockerManifestList, indexDigest);
    return { tag, indexDigest, indexMediaType: MEDIA_TYPES.dockerManifestList, indexBytes, manifests };
  } finally {
    await work.remove();
  }
}
