// Reading the references out of image manifests and indexes (OCI and Docker alike).
import { MediaType } from './media-types.js';
import type { Platform } from './image-ref.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Partial<Platform>;
  annotations?: Record<string, string>;
}

export type ParsedManifest =
  | { kind: 'index'; manifests: Descriptor[] }
  | { kind: 'image'; config: Descriptor; layers: Descriptor[] }
  | { kind: 'other' };

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);

function isDescriptor(value: unknown): value is Descriptor {
  const d = value as Descriptor | undefined;
  return typeof d?.digest === 'string' && typeof d.size === 'number';
}

export function parseManifest(bytes: Uint8Array, mediaType: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`manifest is not JSON: ${(error as Error).message}`);
  }
  if (INDEX_TYPES.has(mediaType) || Array.isArray(doc.manifests)) {
    const manifests = Array.isArray(doc.manifests) ? doc.manifests.filter(isDescriptor) : [];
    return { kind: 'index', manifests };
  }
  if (isDescriptor(doc.config) && Array.isArray(doc.layers)) {
    return { kind: 'image', config: doc.config, layers: doc.layers.filter(isDescriptor) };
  }
  return { kind: 'other' };
}

/** Every digest a manifest points at (children, config, layers, subject). */
export function referencedDigests(bytes: Uint8Array, mediaType: string): string[] {
  const parsed = parseManifest(bytes, mediaType);
  const digests =
    parsed.kind === 'index' ? parsed.manifests.map((m) => m.digest) : parsed.kind === 'image' ? [parsed.config.digest, ...parsed.layers.map((l) => l.digest)] : [];
  const subject = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { subject?: unknown }).subject;
  if (isDescriptor(subject)) digests.push(subject.digest);
  return digests;
}
