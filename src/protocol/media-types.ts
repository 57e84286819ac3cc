// Manifest media types and Accept negotiation.

export const MediaType = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/**
 * What we ask an upstream for when resolving a tag or digest for the cache: every modern
 * manifest type, so the answer is the tag's real manifest and not a down-converted variant
 * (the Go registry turns schema2 into schema1 for clients that do not list schema2).
 */
export const MODERN_MANIFEST_TYPES: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

/**
 * Splits Accept header values into bare media types. Docker sends several separate Accept
 * lines (node joins them with ", "), containerd one comma-joined line; both end up here.
 */
export function parseAccept(header: string | string[] | undefined): readonly string[] {
  if (header === undefined) return [];
  // A client sends the same Accept on every manifest request: the last answer is reused.
  if (typeof header === 'string') {
    if (header !== lastAccept.header) lastAccept = { header, types: Object.freeze(parseAcceptValues([header])) };
    return lastAccept.types;
  }
  return parseAcceptValues(header);
}

let lastAccept: { header: string | undefined; types: readonly string[] } = { header: undefined, types: [] };

function parseAcceptValues(values: readonly string[]): string[] {
  const types: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
      if (!type) continue;
      // q=0 means "not acceptable" (RFC 9110 §12.4.2).
      if (params.some((p) => /^q=0(\.0*)?$/.test(p))) continue;
      types.push(type);
    }
  }
  return types;
}

/** True when a response of `mediaType` satisfies the parsed Accept list. No Accept accepts all. */
export function accepts(acceptList: readonly string[], mediaType: string): boolean {
  if (acceptList.length === 0) return true;
  const type = mediaType.toLowerCase();
  const [major] = type.split('/');
  return acceptList.some((a) => a === type || a === '*/*' || a === `${major}/*`);
}

/** The Accept list to send upstream: the modern types first, then whatever else the client listed. */
export function upstreamAcceptList(clientAccept: readonly string[]): string[] {
  const list = [...MODERN_MANIFEST_TYPES];
  for (const type of clientAccept) if (!list.includes(type) && type !== '*/*') list.push(type);
  return list;
}

/**
 * A manifest's media type when the upstream's Content-Type is missing or generic: the
 * `mediaType` field, or the shape (OCI manifests may omit the field).
 */
export function sniffManifestMediaType(bytes: Uint8Array): string | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
    if (typeof parsed.mediaType === 'string') return parsed.mediaType;
    if (Array.isArray(parsed.manifests)) return MediaType.ociIndex;
    if (parsed.config && Array.isArray(parsed.layers)) return MediaType.ociManifest;
    if (parsed.schemaVersion === 1) return 'signatures' in parsed ? MediaType.dockerSchema1Signed : MediaType.dockerSchema1;
  } catch {
    // Not JSON: the caller decides what to do with an unknown type.
  }
  return undefined;
}
