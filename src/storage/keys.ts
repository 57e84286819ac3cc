// Every metadata key layout, in one place (after distribution's registry/storage/paths.go).
// A driver maps keys to files (fs: <storage.path>/meta/<key>.json) or objects (s3: under the
// bucket's prefix); nothing outside this module spells a key. Blobs are not metadata: the blob
// store keeps them by digest (fs: <storage.path>/blobs/sha256/<2 hex>/<64 hex>).
//
// Segments that start with "_" cannot clash with a repository name component (components
// never start with "_"), so a repository's records sit beside its sub-repositories.
//
//   meta/
//   ├── manifests/<alg>/<hex>                         {mediaType, size}: a stored manifest blob
//   ├── mirror/<upstream>/<repository…>/
//   │   └── _tags/<tag>                               {digest, mediaType, checkedAt}
//   ├── local/<repository…>/                          private repositories (v2 pushes)
//   │   ├── _layers/<alg>/<hex>                       {size}: the repository links this blob
//   │   ├── _manifests/<alg>/<hex>                    {mediaType, size}
//   │   ├── _tags/<tag>                               {digest}
//   │   └── _referrers/<alg>/<hex>/<digest>           a manifest whose subject is <alg>:<hex>
//   ├── provenance/<alg>/<hex>                        {<upstream>: repository}: who the mirror got it from
//   ├── private/blobs/<alg>/<hex>                     {size}: private content (never evicted)
//   ├── cache/access/<alg>/<2 hex>                    {<hex>: last access ms}: LRU order, by shard
//   ├── cache/changed                                 {id, by, at, host, pid}: gc or import changed the
//   │                                                 store beside the servers, which rescan on a new id
//   ├── cache/records-changed                         {id, at}: a record that S3 servers keep in memory
//   │                                                 was deleted (s3-record-cache.ts): forget them
//   ├── catalog/repositories/<2 hex>                  {<name>: {kind, upstream, pulls, tags…}}: the web
//   │                                                 page's repository list and pull counts, by shard
//   └── v1/
//       ├── images/<id>                               private v1 image records
//       ├── repositories/<namespace>/<name>/
//       │   ├── _index                                {images}: ids the repository contains
//       │   └── _tags/<tag>                           {id, updated}
//       └── mirror/
//           ├── images/<upstream>/<id>                mirrored v1 image records, per upstream
//           ├── images/<id>                           (before they were per upstream; read for their source upstream)
//           ├── chains/<upstream>/<alg>/<hex>         {top}: v1 chain derived from a v2 manifest
//           └── repositories/<upstream>/<repository…>/<name…>
//                                                     {value, fetchedAt}: upstream lists (TTL)
import type { Digest } from '../protocol/digest.js';

function join(...segments: string[]): string {
  return segments.join('/');
}

export const metadataKeys = {
  manifest: (digest: Digest) => join('manifests', digest.algorithm, digest.hex),
  /** Parent of every manifest record (walk two levels: algorithm, hex). */
  manifestsRoot: 'manifests',

  mirrorRoot: 'mirror',
  /** A mirrored repository's directory, or (fewer segments) one above it: for walking the tree. */
  mirrorRepository: (upstream: string, ...path: string[]) => join('mirror', upstream, ...path),
  mirrorTags: (upstream: string, repository: string) => join('mirror', upstream, repository, '_tags'),
  mirrorTag: (upstream: string, repository: string, tag: string) => join('mirror', upstream, repository, '_tags', tag),

  localRoot: 'local',
  /** A private repository's own directory; `rest` goes below it (_layers, _tags, …). */
  localRepository: (repository: string, ...rest: string[]) => join('local', repository, ...rest),
  localLayer: (repository: string, digest: Digest) => join('local', repository, '_layers', digest.algorithm, digest.hex),
  localManifest: (repository: string, digest: Digest) => join('local', repository, '_manifests', digest.algorithm, digest.hex),
  localTags: (repository: string) => join('local', repository, '_tags'),
  localTag: (repository: string, tag: string) => join('local', repository, '_tags', tag),
  localReferrers: (repository: string, subject: Digest) => join('local', repository, '_referrers', subject.algorithm, subject.hex),
  /** `referrer` is a digest's text ("sha256:…"): one record per manifest that names `subject`. */
  localReferrer: (repository: string, subject: Digest, referrer: string) => join('local', repository, '_referrers', subject.algorithm, subject.hex, referrer),

  /** Provenance of a mirrored digest (kept apart from mirror/<upstream>/…, where any upstream name may sit). */
  provenance: (digest: Digest) => join('provenance', digest.algorithm, digest.hex),

  privateBlobsRoot: join('private', 'blobs'),
  privateBlob: (digest: Digest) => join('private', 'blobs', digest.algorithm, digest.hex),

  cacheAccessRoot: join('cache', 'access'),
  /** One record per algorithm and first two hex digits: 256 small records hold the LRU order. */
  cacheAccessShard: (digest: Digest) => join('cache', 'access', digest.algorithm, digest.hex.slice(0, 2)),
  /** The last change a tool (gc, import) made beside running servers: they poll it and rescan. */
  cacheChanged: join('cache', 'changed'),
  /** The last delete of a record that processes may hold in memory (storage/s3-record-cache.ts). */
  recordsChanged: join('cache', 'records-changed'),

  repositoryCatalogRoot: join('catalog', 'repositories'),
  /** One record per two hex digits of sha256(name): 256 small records list every repository. */
  repositoryCatalogShard: (shard: string) => join('catalog', 'repositories', shard),

  v1PrivateImages: join('v1', 'images'),
  v1MirroredImages: join('v1', 'mirror', 'images'),
  /** One upstream's mirrored v1 image records: a v1 id is whatever its publisher says it is. */
  v1MirroredImagesOf: (upstream: string) => join('v1', 'mirror', 'images', upstream),
  /** Where mirrored v1 records lived before they were scoped by upstream (still read). */
  v1MirroredImageUnscoped: (id: string) => join('v1', 'mirror', 'images', id),
  v1RepositoriesRoot: join('v1', 'repositories'),
  v1RepositoryIndex: (repository: string) => join('v1', 'repositories', repository, '_index'),
  v1RepositoryTags: (repository: string) => join('v1', 'repositories', repository, '_tags'),
  v1RepositoryTag: (repository: string, tag: string) => join('v1', 'repositories', repository, '_tags', tag),
  /** Per upstream, like the image records the chain's ids name. */
  v1MirrorChain: (upstream: string, manifest: Digest) => join('v1', 'mirror', 'chains', upstream, manifest.algorithm, manifest.hex),
  v1MirrorList: (upstream: string, repository: string, ...rest: string[]) => join('v1', 'mirror', 'repositories', upstream, repository, ...rest),
  /** Parent of one upstream's v1 lists (walk it for the repositories mirrored through its v1 index). */
  v1MirrorListRoot: (upstream: string) => join('v1', 'mirror', 'repositories', upstream),
} as const;

/** local/<repository…>/_layers|_manifests/<alg>/<hex>: a private repository links a blob. */
const REPOSITORY_LINK_KEY = /^local\/.+\/_(?:layers|manifests)\/([a-z0-9]+)\/([a-f0-9]+)$/;

/** The digest a private repository's link record (_layers, _manifests) names; undefined for any other key. */
export function linkedDigest(key: string): string | undefined {
  const link = REPOSITORY_LINK_KEY.exec(key);
  return link ? `${link[1] as string}:${link[2] as string}` : undefined;
}

const WRITE_ONCE_ROOTS = [`${metadataKeys.manifestsRoot}/`, `${join('v1', 'mirror', 'chains')}/`];

/**
 * Records whose value never changes once written, so a replica may keep them in memory with no
 * word from the others (storage/s3-record-cache.ts): manifest records (keyed by the manifest's
 * digest), v1 chains derived from a manifest digest, and private v1 images once their push
 * completed (never rewritten or deleted after that). Everything else can change under another
 * replica: tags, private marks and repository links (deletes), mirrored v1 images (their layer
 * comes and goes), provenance (grows), access times, catalogs.
 */
export function isWriteOnceRecord(key: string, value: unknown): boolean {
  if (WRITE_ONCE_ROOTS.some((root) => key.startsWith(root))) return true;
  if (key.startsWith(`${metadataKeys.v1PrivateImages}/`) && !key.slice(metadataKeys.v1PrivateImages.length + 1).includes('/')) {
    return typeof value === 'object' && value !== null && (value as { complete?: unknown }).complete === true;
  }
  return false;
}
