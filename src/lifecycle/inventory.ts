// What a data directory holds, for `longshore ls`: cached mirrored and private repositories,
// their tags, each image's size (the bytes of its config and layers stored here, what a pull
// downloads besides the manifest; an index adds up its platforms) and when it was last pulled. Reads only, so it is safe beside a running server.
import { tryParseDigest, type Digest } from '../protocol/digest.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import type { TagRecord } from '../mirror/tag-records.js';
import type { BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataDriver } from '../storage/metadata-store.js';

export interface TagEntry {
  tag: string;
  digest: string;
  /** Bytes of the config and layers (of every platform, for an index) stored here. */
  bytes: number;
  /** ISO time of the last pull of this tag's content (the LRU access time), if known. */
  lastPull: string | undefined;
}

export interface RepositoryEntry {
  /** "mirrored" (with its upstream) or "private". */
  kind: 'mirrored' | 'private';
  upstream?: string;
  name: string;
  tags: TagEntry[];
}

interface Descriptor {
  digest?: unknown;
  size?: unknown;
}

export class Inventory {
  private readonly accessShards = new Map<string, Record<string, number> | undefined>();

  constructor(
    private readonly metadata: Pick<MetadataDriver, 'get' | 'list'>,
    private readonly blobs: Pick<BlobStore, 'stat' | 'readAll'>,
  ) {}

  /** Every repository (or only `only`), mirrored ones first by upstream, each sorted by name. */
  async repositories(only?: string): Promise<RepositoryEntry[]> {
    const found: RepositoryEntry[] = [];
    for (const upstream of await this.metadata.list(metadataKeys.mirrorRoot)) {
      for (const name of await this.walk((path) => metadataKeys.mirrorRepository(upstream, ...path))) {
        if (only !== undefined && !matchesRepositoryFilter({ kind: 'mirrored', upstream, name }, only)) continue;
        const tags = await this.tags(metadataKeys.mirrorTags(upstream, name), (tag) => metadataKeys.mirrorTag(upstream, name, tag));
        if (tags.length > 0) found.push({ kind: 'mirrored', upstream, name, tags });
      }
    }
    for (const name of await this.walk((path) => [metadataKeys.localRoot, ...path].join('/'))) {
      if (only !== undefined && !matchesRepositoryFilter({ kind: 'private', name }, only)) continue;
      found.push({ kind: 'private', name, tags: await this.tags(metadataKeys.localTags(name), (tag) => metadataKeys.localTag(name, tag)) });
    }
    return found;
  }

  /** Repository names below a root: directories holding "_" records, nested to any depth. */
  private async walk(keyOf: (path: string[]) => string, path: string[] = []): Promise<string[]> {
    const entries = await this.metadata.list(keyOf(path));
    const names = path.length > 0 && entries.some((e) => e.startsWith('_')) ? [path.join('/')] : [];
    for (const entry of entries) if (!entry.startsWith('_')) names.push(...(await this.walk(keyOf, [...path, entry])));
    return names.sort();
  }

  /** Tags whose manifest is stored (an evicted one is not "cached" any more). */
  private async tags(tagsKey: string, tagKey: (tag: string) => string): Promise<TagEntry[]> {
    const entries: TagEntry[] = [];
    for (const tag of await this.metadata.list(tagsKey)) {
      const record = await this.metadata.get<Pick<TagRecord, 'digest'>>(tagKey(tag));
      const digest = record ? tryParseDigest(record.digest) : undefined;
      if (!digest || !(await this.blobs.stat(digest))) continue;
      const bytes = await this.imageBytes(digest, new Set());
      const accessed = await this.lastAccess(digest);
      entries.push({ tag, digest: digest.text, bytes, lastPull: accessed === undefined ? undefined : new Date(accessed).toISOString() });
    }
    return entries;
  }

  /**
   * Every stored config and layer the manifest (and its child manifests) references, each
   * counted once. Manifests themselves are left out, as the web page's sizes leave them out,
   * so `ls --config` and `ls --url` agree.
   */
  private async imageBytes(manifest: Digest, counted: Set<string>): Promise<number> {
    if (counted.has(manifest.text)) return 0;
    counted.add(manifest.text);
    const bytes = await this.blobs.readAll(manifest, MAX_MANIFEST_BYTES);
    if (!bytes) return 0;
    let parsed: { config?: Descriptor; layers?: Descriptor[]; fsLayers?: Array<{ blobSum?: unknown }>; manifests?: Descriptor[] };
    try {
      parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
    } catch {
      return 0;
    }
    let total = 0;
    for (const child of parsed.manifests ?? []) {
      const digest = typeof child.digest === 'string' ? tryParseDigest(child.digest) : undefined;
      if (digest) total += await this.imageBytes(digest, counted);
    }
    const blobs = [...(parsed.config ? [parsed.config] : []), ...(parsed.layers ?? []), ...(parsed.fsLayers ?? []).map((l) => ({ digest: l.blobSum }))];
    for (const blob of blobs) {
      const digest = typeof blob.digest === 'string' ? tryParseDigest(blob.digest) : undefined;
      if (!digest || counted.has(digest.text)) continue;
      counted.add(digest.text);
      total += (await this.blobs.stat(digest))?.size ?? 0;
    }
    return total;
  }

  private async lastAccess(digest: Digest): Promise<number | undefined> {
    const key = metadataKeys.cacheAccessShard(digest);
    if (!this.accessShards.has(key)) this.accessShards.set(key, await this.metadata.get<Record<string, number>>(key));
    return this.accessShards.get(key)?.[digest.hex];
  }
}

/** Whether `only` (as typed to ls) names the repository: by its name, or a mirrored one as "<upstream>/<name>". */
export function matchesRepositoryFilter(entry: Pick<RepositoryEntry, 'kind' | 'upstream' | 'name'>, only: string): boolean {
  return entry.name === only || (entry.kind === 'mirrored' && `${entry.upstream}/${entry.name}` === only);
}

export function parseRepositoryFilter(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  // Accept "repo:tag" or "repo@digest" typed out of habit: list the repository.
  return value.replace(/@.*$/, '').replace(/:[^/]*$/, '');
}
