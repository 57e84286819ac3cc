// Resolves an image through a registry (a running Longshore) into the manifests and blobs a
// client would pull: the top manifest, the selected platforms' manifests, their configs and
// layers. `warm` fetches them to fill the cache, `export` to write a bundle.
import { digestOf } from '../protocol/digest.js';
import { formatPlatform, mirrorRepositoryName, platformMatches, type ImageRef, type Platform } from '../protocol/image-ref.js';
import { MODERN_MANIFEST_TYPES } from '../protocol/media-types.js';
import { parseManifest, type Descriptor } from '../protocol/manifest.js';
import type { UpstreamRegistry } from '../upstream/upstream.js';

export type PlatformChoice = { all: true } | { all: false; platforms: Platform[] };

export const DEFAULT_PLATFORMS: PlatformChoice = { all: false, platforms: [{ os: 'linux', architecture: 'amd64' }] };

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface ImagePlan {
  ref: ImageRef;
  repository: string;
  top: FetchedManifest;
  /** Image manifests of the selected platforms (the top one itself for single images). */
  images: FetchedManifest[];
  /** Index children that were not selected (a bundle records them, but does not hold them). */
  skippedPlatforms: string[];
  /** Configs and layers, each once. */
  blobs: Descriptor[];
}

async function fetchManifest(registry: UpstreamRegistry, repository: string, reference: string): Promise<FetchedManifest> {
  const manifest = await registry.getManifest(repository, reference, MODERN_MANIFEST_TYPES);
  if (!manifest) throw new Error(`manifest ${repository}:${reference} not found`);
  const digest = digestOf(manifest.bytes);
  if (reference.includes(':') && digest !== reference) throw new Error(`manifest ${repository}@${reference} arrived with digest ${digest}`);
  return { digest, mediaType: manifest.mediaType, bytes: manifest.bytes };
}

export async function planImage(registry: UpstreamRegistry, ref: ImageRef, choice: PlatformChoice): Promise<ImagePlan> {
  const repository = mirrorRepositoryName(ref);
  const top = await fetchManifest(registry, repository, ref.digest ?? (ref.tag as string));
  const parsed = parseManifest(top.bytes, top.mediaType);
  const images: FetchedManifest[] = [];
  const skippedPlatforms: string[] = [];
  if (parsed.kind === 'index') {
    for (const child of parsed.manifests) {
      const wanted = choice.all || choice.platforms.some((p) => platformMatches(p, child.platform));
      if (wanted) images.push(await fetchManifest(registry, repository, child.digest));
      else skippedPlatforms.push(formatPlatform(child.platform));
    }
    if (images.length === 0) {
      const available = parsed.manifests.map((m) => formatPlatform(m.platform)).join(', ');
      throw new Error(`${ref.text}: no manifest for the requested platforms (available: ${available})`);
    }
  } else {
    images.push(top);
  }
  const blobs = new Map<string, Descriptor>();
  for (const image of images) {
    const manifest = parseManifest(image.bytes, image.mediaType);
    if (manifest.kind !== 'image') throw new Error(`${ref.text}: manifest ${image.digest} (${image.mediaType}) is not an image manifest`);
    for (const descriptor of [manifest.config, ...manifest.layers]) blobs.set(descriptor.digest, descriptor);
  }
  return { ref, repository, top, images, skippedPlatforms, blobs: [...blobs.values()] };
}
