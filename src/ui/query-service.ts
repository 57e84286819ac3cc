// What the web page shows, as plain data: the JSON API under /ui/api/ is a thin layer over it.
// Everything comes from the ports (metadata store, blob store, cache index, the repository
// catalog), so it reads the same with the fs or an S3 store and with several replicas; a view
// reads a bounded number of records (one page of repositories, one page of tags), never a
// whole tree.
import { parseDigest, type Digest } from '../protocol/digest.js';
import { parseManifest, type Descriptor } from '../protocol/manifest.js';
import { MediaType } from '../protocol/media-types.js';
import type { CacheStats } from '../coordination/ports.js';
import type { BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { StoredManifest } from '../storage/manifest-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { imageJsonBytes, mirroredImageStore, V1ImageStore, type V1ImageRecord } from '../storage/v1-image-store.js';
import type { CachedEntry } from '../mirror/cached-lookup.js';
import type { CatalogEntry, PullFigures, RepositoryCatalog, RepositoryKind } from './repository-catalog.js';
import type { TrafficFigures } from './traffic.js';

/** Who is looking: a user from a token the mirror issued, or nobody. */
export interface Viewer {
  user: string | undefined;
}

export interface QueryDependencies {
  catalog: RepositoryCatalog;
  /** Read only: the v1 image stores it opens are only read from. */
  metadata: MetadataStore;
  manifests: { get(digest: Digest): Promise<StoredManifest | undefined> };
  blobs: Pick<BlobStore, 'stat' | 'readAll'>;
  cache: { stats(): Promise<CacheStats> };
  traffic: { sinceStart(): Promise<TrafficFigures>; lastHour(): Promise<TrafficFigures & { sinceMs: number }> };
  inflightFetches: () => number;
  /** storage.cache.maxBytes. */
  cacheMaxBytes: number | undefined;
  /** The access policy's answer to "may this user pull this repository". */
  mayPull: (user: string | undefined, repository: string) => boolean;
}

export interface RepositorySummary {
  name: string;
  kind: RepositoryKind;
  upstream: string | undefined;
  /** Tags recorded for it (mirrored: tags pulled through the mirror; private: pushed), v2 and v1. */
  tagCount: number;
  pulls: number;
  lastPulledAt: number | undefined;
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  perPage: number;
}

export interface TagView extends PullFigures {
  tag: string;
  /**
   * v2: the tag names a manifest (digest, media type). v1: it names an image id (a v1 push,
   * a pull through a v1 index); digest and media type are empty, the image is `imageId`.
   */
  api: 'v2' | 'v1';
  digest: string;
  /** v1 tags: the image id the tag points at. */
  imageId?: string;
  mediaType: string;
  kind: 'image' | 'index' | 'other';
  /** "linux/amd64", …: an index's platforms, or an image's own when its config is cached. */
  platforms: string[];
  /** Compressed bytes a pull downloads: config + layers; for an index, all its images that are known. */
  size: number | undefined;
  /** False when part of the image is not in the store (an index's other platforms, evicted content). */
  sizeComplete: boolean;
  /** Whether the manifest itself is in the store. */
  cached: boolean;
}

export interface RepositoryView extends RepositorySummary {
  tags: Page<TagView>;
}

export interface LayerView {
  digest: string;
  mediaType: string;
  size: number;
  cached: boolean;
}

export interface ImageView {
  repository: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index' | 'other';
  /** An image's config and layers. */
  config: LayerView | undefined;
  layers: LayerView[];
  /** An index's images. */
  manifests: Array<{ digest: string; mediaType: string; platform: string | undefined; size: number | undefined; cached: boolean }>;
  size: number | undefined;
}

export interface Overview {
  cache: { mirroredBytes: number; mirroredObjects: number; privateBytes: number; privateObjects: number; maxBytes: number | undefined; evictions: number };
  traffic: { sinceStart: TrafficFigures; lastHour: TrafficFigures & { sinceMs: number } };
  inflightFetches: number;
  repositories: { mirrored: number; private: number };
}

export const MAX_PER_PAGE = 200;
/** Layers read for a v1 tag's size: Docker never built chains deeper than 127. */
const MAX_V1_ANCESTRY = 128;

interface TagRef {
  api: 'v2' | 'v1';
  tag: string;
  /** v1: the image id, when the tag listing gives it. */
  imageId?: string;
}
const MAX_CONFIG_BYTES = 64 * 1024;

export class UiQueryService {
  constructor(private readonly deps: QueryDependencies) {}

  async overview(viewer: Viewer): Promise<Overview> {
    const [stats, sinceStart, lastHour, entries] = await Promise.all([
      this.deps.cache.stats(),
      this.deps.traffic.sinceStart(),
      this.deps.traffic.lastHour(),
      this.visibleEntries(viewer),
    ]);
    return {
      cache: {
        mirroredBytes: stats.mirrored.bytes,
        mirroredObjects: stats.mirrored.objects,
        privateBytes: stats.private.bytes,
        privateObjects: stats.private.objects,
        maxBytes: this.deps.cacheMaxBytes,
        evictions: stats.evictions,
      },
      traffic: { sinceStart, lastHour },
      inflightFetches: this.deps.inflightFetches(),
      repositories: {
        mirrored: entries.filter(([, e]) => e.kind === 'mirrored').length,
        private: entries.filter(([, e]) => e.kind === 'private').length,
      },
    };
  }

  /** One page of the repositories the viewer may pull, whose name contains `query`. */
  async repositories(viewer: Viewer, options: { query?: string; kind?: RepositoryKind; page: number; perPage: number }): Promise<Page<RepositorySummary>> {
    const query = options.query?.trim().toLowerCase() ?? '';
    const matching = (await this.visibleEntries(viewer)).filter(
      ([name, entry]) => (query === '' || name.toLowerCase().includes(query)) && (options.kind === undefined || entry.kind === options.kind),
    );
    const perPage = Math.min(Math.max(1, options.perPage), MAX_PER_PAGE);
    const start = (Math.max(1, options.page) - 1) * perPage;
    const items = await Promise.all(matching.slice(start, start + perPage).map(([name, entry]) => this.summary(name, entry)));
    return { items, total: matching.length, page: Math.max(1, options.page), perPage };
  }

  /** A repository and one page of its tags; undefined when it does not exist or the viewer may not pull it. */
  async repository(viewer: Viewer, name: string, options: { page: number; perPage: number }): Promise<RepositoryView | undefined> {
    const entry = await this.visibleEntry(viewer, name);
    if (!entry) return undefined;
    const tagRefs = await this.tagRefs(entry);
    const perPage = Math.min(Math.max(1, options.perPage), MAX_PER_PAGE);
    const page = Math.max(1, options.page);
    const pageTags = tagRefs.slice((page - 1) * perPage, page * perPage);
    const tags = (await Promise.all(pageTags.map((ref) => (ref.api === 'v1' ? this.v1TagView(entry, ref) : this.tagView(entry, ref.tag))))).filter(
      (t): t is TagView => t !== undefined,
    );
    return {
      ...(await this.summary(name, entry, tagRefs.length)),
      tags: { items: tags, total: tagRefs.length, page, perPage },
    };
  }

  /**
   * An image or index of a repository, with its layers and whether each is cached. Only
   * digests the repository's tags lead to (or, private, that it holds): a viewer of one
   * repository cannot read another's manifests through it.
   */
  async image(viewer: Viewer, name: string, digestText: string): Promise<ImageView | undefined> {
    const entry = await this.visibleEntry(viewer, name);
    if (!entry) return undefined;
    const digest = parseDigest(digestText);
    if (!(await this.belongsTo(entry, digest))) return undefined;
    const manifest = await this.deps.manifests.get(digest);
    if (!manifest) return undefined;
    const parsed = safeParse(manifest);
    const view: ImageView = { repository: name, digest: digest.text, mediaType: manifest.mediaType, kind: parsed.kind, config: undefined, layers: [], manifests: [], size: undefined };
    if (parsed.kind === 'image') {
      view.config = await this.layerView(parsed.config);
      view.layers = await Promise.all(parsed.layers.map((layer) => this.layerView(layer)));
      view.size = imageSize(parsed.config, parsed.layers);
    } else if (parsed.kind === 'index') {
      view.manifests = await Promise.all(
        parsed.manifests.map(async (child) => {
          const childSize = await this.childImageSize(child.digest);
          return { digest: child.digest, mediaType: child.mediaType, platform: platformName(child.platform), size: childSize, cached: childSize !== undefined };
        }),
      );
      const sizes = view.manifests.map((m) => m.size);
      view.size = sizes.every((s) => s !== undefined) ? sizes.reduce<number>((a, b) => a + (b ?? 0), 0) : undefined;
    }
    return view;
  }

  private async visibleEntries(viewer: Viewer): Promise<Array<readonly [string, CatalogEntry]>> {
    return (await this.deps.catalog.entries()).filter(([name]) => this.deps.mayPull(viewer.user, name));
  }

  private async visibleEntry(viewer: Viewer, name: string): Promise<CatalogEntry | undefined> {
    if (!this.deps.mayPull(viewer.user, name)) return undefined;
    return this.deps.catalog.get(name);
  }

  private async summary(name: string, entry: CatalogEntry, tagCount?: number): Promise<RepositorySummary> {
    return {
      name,
      kind: entry.kind,
      upstream: entry.upstream,
      tagCount: tagCount ?? (await this.tagRefs(entry)).length,
      pulls: entry.pulls,
      lastPulledAt: entry.lastPulledAt,
    };
  }

  /** The repository's tags: its v2 tags, then (when it has v1 records) its v1 tags, each sorted. */
  private async tagRefs(entry: CatalogEntry): Promise<TagRef[]> {
    const [v2, v1] = await Promise.all([this.deps.metadata.list(this.tagsKey(entry)), this.v1Tags(entry)]);
    return [...v2.map((tag): TagRef => ({ api: 'v2', tag })), ...[...v1].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([tag, imageId]): TagRef => ({ api: 'v1', tag, imageId }))];
  }

  /**
   * v1 tags (storage/keys.ts): a private repository's tag records (v1 pushes), or a mirrored
   * one's upstream lists kept by the v1 pull-through (all tags, and single tags asked for).
   * The image id when the listing already gives it.
   */
  private async v1Tags(entry: CatalogEntry): Promise<Map<string, string | undefined>> {
    if (!entry.v1) return new Map();
    if (entry.kind === 'private') return new Map((await this.deps.metadata.list(metadataKeys.v1RepositoryTags(entry.repository))).map((tag) => [tag, undefined]));
    const upstream = entry.upstream ?? '';
    const [listed, single] = await Promise.all([
      this.deps.metadata.get<CachedEntry<Record<string, string>>>(metadataKeys.v1MirrorList(upstream, entry.repository, '_tags')),
      this.deps.metadata.list(metadataKeys.v1MirrorList(upstream, entry.repository, '_tag')),
    ]);
    const tags = new Map<string, string | undefined>(Object.entries(listed?.value ?? {}).filter(([, id]) => typeof id === 'string'));
    for (const tag of single) if (!tags.has(tag)) tags.set(tag, undefined);
    return tags;
  }

  private async v1TagId(entry: CatalogEntry, ref: TagRef): Promise<string | undefined> {
    if (ref.imageId !== undefined) return ref.imageId;
    if (entry.kind === 'private') return (await this.deps.metadata.get<{ id: string }>(metadataKeys.v1RepositoryTag(entry.repository, ref.tag)))?.id;
    const single = await this.deps.metadata.get<CachedEntry<string>>(metadataKeys.v1MirrorList(entry.upstream ?? '', entry.repository, '_tag', ref.tag));
    return typeof single?.value === 'string' ? single.value : undefined;
  }

  /**
   * A v1 tag: its image id, the size a v1 pull downloads (every layer of the image's
   * ancestry, as the records state them) and its platform from the image json.
   */
  private async v1TagView(entry: CatalogEntry, ref: TagRef): Promise<TagView | undefined> {
    const imageId = await this.v1TagId(entry, ref);
    if (imageId === undefined) return undefined; // deleted since the listing
    const figures = entry.tags[ref.tag];
    const base = { tag: ref.tag, api: 'v1' as const, digest: '', imageId, mediaType: '', pulls: figures?.pulls ?? 0, lastPulledAt: figures?.lastPulledAt };
    const images = this.v1Images(entry);
    const top = await images.get(imageId);
    if (!top?.complete) return { ...base, kind: 'other', platforms: [], size: undefined, sizeComplete: false, cached: false };
    const ancestry = top.ancestry.slice(0, MAX_V1_ANCESTRY);
    const sizes = await Promise.all(ancestry.map(async (id) => v1LayerSize(id === imageId ? top : await images.get(id))));
    const known = sizes.filter((size): size is number => size !== undefined);
    return {
      ...base,
      kind: 'image',
      platforms: v1Platform(top),
      size: known.length > 0 ? known.reduce((a, b) => a + b, 0) : undefined,
      sizeComplete: known.length === top.ancestry.length,
      cached: true,
    };
  }

  private v1Images(entry: CatalogEntry): V1ImageStore {
    return entry.kind === 'private' ? new V1ImageStore(this.deps.metadata, metadataKeys.v1PrivateImages) : mirroredImageStore(this.deps.metadata, entry.upstream ?? '');
  }

  private tagsKey(entry: CatalogEntry): string {
    return entry.kind === 'mirrored' ? metadataKeys.mirrorTags(entry.upstream ?? '', entry.repository) : metadataKeys.localTags(entry.repository);
  }

  private tagKey(entry: CatalogEntry, tag: string): string {
    return entry.kind === 'mirrored' ? metadataKeys.mirrorTag(entry.upstream ?? '', entry.repository, tag) : metadataKeys.localTag(entry.repository, tag);
  }

  private async tagView(entry: CatalogEntry, tag: string): Promise<TagView | undefined> {
    const record = await this.deps.metadata.get<{ digest: string; mediaType?: string }>(this.tagKey(entry, tag));
    if (!record) return undefined; // deleted since the listing
    const figures = entry.tags[tag];
    const base = { tag, api: 'v2' as const, digest: record.digest, pulls: figures?.pulls ?? 0, lastPulledAt: figures?.lastPulledAt };
    const manifest = await this.deps.manifests.get(parseDigest(record.digest));
    if (!manifest) {
      return { ...base, mediaType: record.mediaType ?? '', kind: 'other', platforms: [], size: undefined, sizeComplete: false, cached: false };
    }
    const parsed = safeParse(manifest);
    if (parsed.kind === 'image') {
      return { ...base, mediaType: manifest.mediaType, kind: 'image', platforms: await this.configPlatform(parsed.config), size: imageSize(parsed.config, parsed.layers), sizeComplete: true, cached: true };
    }
    if (parsed.kind === 'index') {
      const sizes = await Promise.all(parsed.manifests.map((child) => this.childImageSize(child.digest)));
      const known = sizes.filter((s): s is number => s !== undefined);
      return {
        ...base,
        mediaType: manifest.mediaType,
        kind: 'index',
        platforms: parsed.manifests.map((m) => platformName(m.platform)).filter((p): p is string => p !== undefined),
        size: known.length > 0 ? known.reduce((a, b) => a + b, 0) : undefined,
        sizeComplete: known.length === sizes.length,
        cached: true,
      };
    }
    return { ...base, mediaType: manifest.mediaType, kind: 'other', platforms: [], size: undefined, sizeComplete: false, cached: true };
  }

  private async childImageSize(digestText: string): Promise<number | undefined> {
    const child = await this.deps.manifests.get(parseDigest(digestText));
    if (!child) return undefined;
    const parsed = safeParse(child);
    return parsed.kind === 'image' ? imageSize(parsed.config, parsed.layers) : undefined;
  }

  /** An image's platform, from its config when the config is cached (configs are small; bounded anyway). */
  private async configPlatform(config: Descriptor): Promise<string[]> {
    if (config.size > MAX_CONFIG_BYTES) return [];
    const bytes = await this.deps.blobs.readAll(parseDigest(config.digest), MAX_CONFIG_BYTES).catch(() => undefined);
    if (!bytes) return [];
    try {
      const platform = platformName(JSON.parse(bytes.toString('utf8')) as Descriptor['platform']);
      return platform ? [platform] : [];
    } catch {
      return [];
    }
  }

  private async layerView(descriptor: Descriptor): Promise<LayerView> {
    const stat = await this.deps.blobs.stat(parseDigest(descriptor.digest));
    return { digest: descriptor.digest, mediaType: descriptor.mediaType, size: descriptor.size, cached: stat !== undefined };
  }

  private async belongsTo(entry: CatalogEntry, digest: Digest): Promise<boolean> {
    if (entry.kind === 'private' && (await this.deps.metadata.get(metadataKeys.localManifest(entry.repository, digest))) !== undefined) return true;
    for (const tag of await this.deps.metadata.list(this.tagsKey(entry))) {
      const record = await this.deps.metadata.get<{ digest: string }>(this.tagKey(entry, tag));
      if (!record) continue;
      if (record.digest === digest.text) return true;
      const manifest = await this.deps.manifests.get(parseDigest(record.digest));
      const parsed = manifest ? safeParse(manifest) : undefined;
      if (parsed?.kind === 'index' && parsed.manifests.some((m) => m.digest === digest.text)) return true;
    }
    return false;
  }
}

/** A v1 layer's size: as stored, or (mirrored, not fetched yet) as the upstream stated it. */
function v1LayerSize(record: V1ImageRecord | undefined): number | undefined {
  return record?.layer?.size ?? record?.layerSize;
}

function v1Platform(record: V1ImageRecord): string[] {
  try {
    const json = JSON.parse(imageJsonBytes(record).toString('utf8')) as { os?: unknown; architecture?: unknown };
    return typeof json.os === 'string' && typeof json.architecture === 'string' ? [`${json.os}/${json.architecture}`] : [];
  } catch {
    return [];
  }
}

function safeParse(manifest: StoredManifest): ReturnType<typeof parseManifest> {
  try {
    return parseManifest(manifest.bytes, manifest.mediaType);
  } catch {
    return { kind: 'other' };
  }
}

function imageSize(config: Descriptor, layers: Descriptor[]): number {
  return layers.reduce((total, layer) => total + layer.size, config.size);
}

function platformName(platform: Descriptor['platform']): string | undefined {
  if (!platform?.os || !platform.architecture) return undefined;
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** Docker/OCI media types by what people call them. */
export function mediaTypeLabel(mediaType: string): string {
  switch (mediaType) {
    case MediaType.ociIndex:
      return 'OCI index';
    case MediaType.dockerManifestList:
      return 'Docker manifest list';
    case MediaType.ociManifest:
      return 'OCI image';
    case MediaType.dockerManifest:
      return 'Docker image';
    default:
      return mediaType;
  }
}
