// Repository names, tags and the /v2/ path grammar of the OCI Distribution spec.
import { RegistryError } from './errors.js';
import { looksLikeDigest, parseDigest, type Digest } from './digest.js';

const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const REPOSITORY_NAME = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
// The Go registry's limit; longer names cannot be stored by most registries either.
const MAX_NAME_LENGTH = 255;

export function isValidRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && REPOSITORY_NAME.test(name);
}

export function assertRepositoryName(name: string): string {
  if (!isValidRepositoryName(name)) {
    throw new RegistryError('NAME_INVALID', `invalid repository name "${name}"`, { detail: { name } });
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseManifestReference(reference: string): ManifestReference {
  if (looksLikeDigest(reference)) return { kind: 'digest', digest: parseDigest(reference) };
  if (!isValidTag(reference)) {
    throw new RegistryError('MANIFEST_INVALID', `invalid tag "${reference}"`, { status: 400, detail: { tag: reference } });
  }
  return { kind: 'tag', tag: reference };
}

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string; uploadId: string | undefined }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

// Names contain slashes, so each route is matched from the right: the greedy name group
// takes everything before the last "/manifests/", "/blobs/" and so on.
const V2_PATTERNS: Array<[RegExp, (m: RegExpExecArray) => V2Route]> = [
  [/^(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^(.+)\/blobs\/uploads\/([^/]*)$/, (m) => ({ kind: 'upload', name: m[1]!, uploadId: m[2] || undefined })],
  [/^(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]! , digest: m[2]! })],
];

/** Classifies the part of a path after "/v2/" (no query string). Undefined: no such endpoint. */
export function parseV2Path(rest: string): V2Route | undefined {
  if (rest === '') return { kind: 'base' };
  if (rest === '_catalog') return { kind: 'catalog' };
  for (const [pattern, build] of V2_PATTERNS) {
    const match = pattern.exec(rest);
    if (match) return build(match);
  }
  return undefined;
}
