// Docker Registry v1: names, image ids, tags, the /v1/ path grammar and the error format.
// Pure code; the routes and the registry build on it. Spec: docs/v1-protocol.md §2, §3, §5.
import { createHash, type Hash } from 'node:crypto';
import { RegistryError, type OciErrorCode } from './errors.js';

// The v1 API's errors carry only a status and a message; as members of the one coded error
// hierarchy they get the OCI code that says the same, so either edge can render them.
const CODE_BY_STATUS: Readonly<Record<number, OciErrorCode>> = {
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NAME_UNKNOWN',
  405: 'UNSUPPORTED',
  413: 'SIZE_INVALID',
  429: 'TOOMANYREQUESTS',
};

/** An error written by v1 code, with the status the Python registry sent (rendered as `{"error": "..."}` at the v1 edge). */
export class V1Error extends RegistryError {
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(CODE_BY_STATUS[status] ?? 'UNKNOWN', message, { status, headers });
    this.name = 'V1Error';
  }
}

export function v1ErrorBody(message: string): { error: string } {
  return { error: message };
}

// Clients check `^([a-f0-9]{64})$` before fetching; the Python registry also took 16-hex ids
// from Docker 0.x, which no client after 1.0 produces.
const IMAGE_ID = /^[a-f0-9]{64}$/;
// Lower case only, as in v2, so a v1 repository is also a valid v2 name (shared storage).
const NAME_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
// The Python registry's RE_VALID_TAG.
const TAG = /^[\w][\w.-]{0,127}$/;

export function isValidImageId(id: string): boolean {
  return IMAGE_ID.test(id);
}

export function assertImageId(id: string): string {
  if (!isValidImageId(id)) throw new V1Error(400, `invalid image id "${truncate(id)}": expected 64 lower-case hex characters`);
  return id;
}

export function isValidV1Tag(tag: string): boolean {
  return TAG.test(tag);
}

/**
 * "X" and "library/X" are one repository (§3: clients use both forms for one push), so
 * single-component names get the library namespace. Undefined for anything else than
 * one or two valid components.
 */
export function normalizeV1Repository(segments: readonly string[]): string | undefined {
  const parts = segments.length === 1 ? ['library', segments[0] as string] : segments;
  if (parts.length !== 2 || !parts.every((p) => NAME_COMPONENT.test(p))) return undefined;
  return parts.join('/');
}

export type ImageResource = 'json' | 'layer' | 'ancestry' | 'checksum';

export type V1Route =
  | { kind: 'ping' }
  | { kind: 'users' }
  | { kind: 'user'; username: string }
  | { kind: 'repository'; repository: string }
  | { kind: 'repositoryImages'; repository: string }
  | { kind: 'tags'; repository: string }
  | { kind: 'tag'; repository: string; tag: string }
  | { kind: 'image'; id: string; resource: ImageResource }
  | { kind: 'search' };

const IMAGE_RESOURCES = new Set<string>(['json', 'layer', 'ancestry', 'checksum']);

/**
 * Classifies a path (without query). Repository paths may name "X" or "NS/REPO"; when both
 * readings fit (".../a/tags/tags"), the two-component repository wins, because that is the
 * form clients use for tag calls (§3). Ids and tags are returned unvalidated, so the route
 * can answer 400 with the offending value rather than a generic 404.
 */
export function parseV1Path(path: string): V1Route | undefined {
  if (path === '/_ping' || path === '/v1/_ping' || path === '/v1/_ping/') return { kind: 'ping' };
  if (!path.startsWith('/v1/')) return undefined;
  const rest = path.slice('/v1/'.length);
  if (rest === 'users' || rest === 'users/') return { kind: 'users' };
  if (rest === 'search') return { kind: 'search' };
  const user = /^users\/([^/]+)\/?$/.exec(rest);
  if (user) return { kind: 'user', username: decodePathSegment(user[1] as string, 'user name') };
  const image = /^images\/([^/]+)\/([a-z]+)$/.exec(rest);
  if (image) {
    const resource = image[2] as string;
    return IMAGE_RESOURCES.has(resource) ? { kind: 'image', id: image[1] as string, resource: resource as ImageResource } : undefined;
  }
  if (!rest.startsWith('repositories/')) return undefined;
  return parseRepositoryPath(rest.slice('repositories/'.length).split('/'));
}

function parseRepositoryPath(segments: string[]): V1Route | undefined {
  const candidates: V1Route[] = [];
  const repo = (count: number) => (count >= 1 && count <= 2 ? normalizeV1Repository(segments.slice(0, count)) : undefined);
  const n = segments.length;
  const last = segments[n - 1];
  const push = (route: V1Route | undefined) => route && candidates.push(route);
  if (last === '') {
    const repository = repo(n - 1);
    push(repository ? { kind: 'repository', repository } : undefined);
  }
  if (last === 'images') {
    const repository = repo(n - 1);
    push(repository ? { kind: 'repositoryImages', repository } : undefined);
  }
  if (last === 'tags') {
    const repository = repo(n - 1);
    push(repository ? { kind: 'tags', repository } : undefined);
  }
  if (n >= 3 && segments[n - 2] === 'tags' && last !== '') {
    const repository = repo(n - 2);
    push(repository ? { kind: 'tag', repository, tag: decodeTag(last as string) } : undefined);
  }
  // Prefer the reading whose repository was written with its namespace.
  const explicitNamespace = candidates.find((route) => 'repository' in route && repositoryComponents(route, segments) === 2);
  return explicitNamespace ?? candidates[0];
}

/**
 * A percent-encoded path segment, decoded. Broken escapes ("%E0"), NUL and "/" (which would
 * name another path once decoded) are the client's error: 400, never a 500 from deeper down.
 */
function decodePathSegment(segment: string, what: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    throw new V1Error(400, `invalid ${what} "${truncate(segment)}": broken percent-encoding`);
  }
  if (/[\0/\\]/.test(decoded)) throw new V1Error(400, `invalid ${what} "${truncate(segment)}": encoded NUL, "/" or "\\"`);
  return decoded;
}

function decodeTag(segment: string): string {
  const tag = decodePathSegment(segment, 'tag');
  if (!isValidV1Tag(tag)) throw new V1Error(400, `invalid tag "${truncate(tag)}": letters, digits, "_", "." and "-", up to 128, not starting with "." or "-"`);
  return tag;
}

function repositoryComponents(route: V1Route, segments: string[]): number {
  switch (route.kind) {
    case 'tag':
      return segments.length - 2;
    case 'repository':
    case 'repositoryImages':
    case 'tags':
      return segments.length - 1;
    default:
      return 0;
  }
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** The `Tag`/`id` entries of `PUT /v1/repositories/NS/REPO/` (Go's capitalised `Tag`). */
export interface ImageListEntry {
  id: string;
  Tag?: string;
  checksum?: string;
}

/** Parses and validates the image list body of the repository PUT (400 on anything odd). */
export function parseImageList(body: unknown): ImageListEntry[] {
  if (!Array.isArray(body)) throw new V1Error(400, 'expected a JSON array of {"id": ...} entries');
  return body.map((entry, index) => {
    if (typeof entry !== 'object' || entry === null || typeof (entry as { id?: unknown }).id !== 'string') {
      throw new V1Error(400, `image list entry ${index}: expected an object with a string "id"`);
    }
    const { id, Tag: tag } = entry as { id: string; Tag?: unknown };
    assertImageId(id);
    if (tag !== undefined && (typeof tag !== 'string' || !isValidV1Tag(tag))) throw new V1Error(400, `image list entry ${index}: invalid tag`);
    return tag === undefined ? { id } : { id, Tag: tag };
  });
}

/** One entry of `GET /v1/search` (engine-api's registry.SearchResult). */
export interface V1SearchResult {
  name: string;
  description: string;
  star_count: number;
  is_official: boolean;
  is_automated: boolean;
  is_trusted: boolean;
}

/**
 * X-Docker-Checksum-Payload (§6): sha256 of the image json, "\n", then the layer bytes. Feed
 * the layer to the returned hash, then read the value with `payloadChecksum`.
 */
export function payloadHash(imageJson: Uint8Array): Hash {
  return createHash('sha256').update(imageJson).update('\n');
}

export function payloadChecksum(hash: Hash): string {
  return `sha256:${hash.digest('hex')}`;
}
