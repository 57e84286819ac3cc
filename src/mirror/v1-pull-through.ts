// The v1 pull-through policy (docs: v1-protocol.md §8, §10, §11), on the engine's pieces:
// image records (json and ancestry, immutable per id, kept per upstream), tags and image
// lists (kept for tagTtl, served stale when the upstream fails) through the one cached
// lookup; layers through the one blob path (tee, verification, coalescing) as v2 blobs. An upstream either speaks v1 (index + registry), or only v2:
// then tags resolve through the v2 mirror and the v1 chain is derived from the schema2
// manifest and config (§11.1) or a schema1 manifest (§11.2), its layers being v2 blobs.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { parseDigest, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { parsePlatform, platformMatches, type Platform } from '../protocol/image-ref.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { parseManifest, type ParsedManifest } from '../protocol/manifest.js';
import { MediaType, MODERN_MANIFEST_TYPES } from '../protocol/media-types.js';
import { EMPTY_GZ_TAR_DIGEST, v1ChainFromSchema1, v1ChainFromV2, type V1ChainEntry } from '../protocol/v1-from-v2.js';
import { isValidImageId, payloadChecksum, payloadHash, type V1SearchResult } from '../protocol/v1.js';
import type { BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { imageJsonBytes, mirroredImageStore, type V1ImageRecord, type V1ImageStore } from '../storage/v1-image-store.js';
import { isNotFound, UpstreamError } from '../upstream/errors.js';
import type { UpstreamRegistry, V1UpstreamRegistry } from '../upstream/upstream.js';
import type { V1UpstreamAuth } from '../upstream/v1-client.js';
import { readBounded } from '../util/read-bounded.js';
import type { FetchSource } from './inflight.js';
import type { CacheOutcome } from './outcome.js';
import type { BlobResult, PullThroughMirror } from './pull-through.js';
import type { ProvenanceIndex } from './provenance.js';
import type { MirrorTarget, RoutableUpstream } from './router.js';
import { CachedLookup, type CachedEntry } from './cached-lookup.js';
import type { KeyedLocks } from '../coordination/ports.js';

/** The 32-byte gzip of an empty tar: the layer of empty history entries, which no upstream has to hold. */
const EMPTY_GZ_TAR = Buffer.from([31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 98, 24, 5, 163, 96, 20, 140, 88, 0, 8, 0, 0, 255, 255, 46, 175, 181, 239, 0, 4, 0, 0]);
// `GET .../tags` of a v2-only repository resolves this many tags at most (each is a manifest
// and a config); beyond that, tags already resolved are listed.
const MAX_RESOLVED_TAGS = 100;
const ACCEPT = [...MODERN_MANIFEST_TYPES, MediaType.dockerSchema1Signed, MediaType.dockerSchema1];

/** One upstream as v1 sees it: a v1 index and registry, a v2 API, or both. */
export interface V1Upstream extends RoutableUpstream {
  readonly tagTtlMs: number;
  readonly v1: V1UpstreamRegistry | undefined;
  readonly v2: UpstreamRegistry | undefined;
  readonly platform: string;
}

export type V1Target = MirrorTarget<V1Upstream>;

export interface V1MirrorOptions {
  offline: boolean;
  /** Finds a configured upstream by name: records remember where their layer comes from. */
  upstreamByName: (name: string) => V1Upstream | undefined;
  /** Layers fetched from a v1 upstream are recorded like v2 blobs: that upstream's names may serve them. */
  provenance: ProvenanceIndex;
  /** The coordinator's locks: a list or record is refreshed by one replica at a time. */
  locks?: KeyedLocks;
  now?: () => number;
}

export class V1PullThrough {
  /** Ancestries learned from an `ancestry` call: each ancestor's is a suffix of it. */
  private readonly knownAncestry = new LRUCache<string, string[]>({ max: 10_000 });
  private readonly offline: boolean;
  private readonly upstreamByName: (name: string) => V1Upstream | undefined;
  private readonly provenance: ProvenanceIndex;
  private readonly now: () => number;
  private readonly lookups: CachedLookup;
  /** Mirrored image records, one store per upstream: one upstream never answers for another. */
  private readonly imageStores = new Map<string, V1ImageStore>();

  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly v2: PullThroughMirror,
    private readonly log: Logger,
    options: V1MirrorOptions,
  ) {
    this.offline = options.offline;
    this.upstreamByName = options.upstreamByName;
    this.provenance = options.provenance;
    this.now = options.now ?? Date.now;
    this.lookups = new CachedLookup({ offline: this.offline, now: this.now, locks: options.locks }, log);
  }

  // ---- repositories and tags ---------------------------------------------------------------

  /** Image ids of a repository (index call): the upstream index's list, or the v2 chains resolved so far. */
  async repositoryImages(target: V1Target): Promise<{ ids: string[]; outcome: CacheOutcome }> {
    const client = target.upstream.v1;
    if (!client) {
      const ids = (await this.metadata.get<string[]>(this.key(target, '_v2images'))) ?? [];
      if (ids.length === 0 && !(await this.v2ListTags(target))) throw notFound(`Repository not found: ${target.repository}`);
      return { ids, outcome: 'hit' };
    }
    const result = await this.timed(target, '_images', () => client.repositoryImages(target.repository));
    if (!result) throw notFound(`Repository not found: ${target.repository} at ${target.upstream.name}`);
    return result;
  }

  async tags(target: V1Target): Promise<{ tags: Record<string, string>; outcome: CacheOutcome }> {
    const client = target.upstream.v1;
    if (client) {
      const result = await this.timed(target, '_tags', () => client.tags(target.repository));
      if (!result) throw notFound(`Repository not found: ${target.repository} at ${target.upstream.name}`);
      return { tags: result.ids, outcome: result.outcome };
    }
    const listed = await this.v2ListTags(target);
    if (!listed) throw notFound(`Repository not found: ${target.repository} at ${target.upstream.name}`);
    const tags: Record<string, string> = {};
    const names = [...listed.tags].sort();
    const resolvable = names.length <= MAX_RESOLVED_TAGS ? names : names.filter((t) => t === 'latest');
    for (const tag of resolvable) {
      // A tag that cannot be turned into a v1 chain (no history, other platforms) is left out.
      const resolved = await this.resolveV2Tag(target, tag).catch((error: unknown) => {
        this.log.debug({ repository: target.repository, tag, err: (error as Error).message }, 'tag has no v1 view');
        return undefined;
      });
      if (resolved) tags[tag] = resolved.id;
    }
    return { tags, outcome: listed.outcome };
  }

  async tag(target: V1Target, tag: string): Promise<{ id: string; outcome: CacheOutcome }> {
    const client = target.upstream.v1;
    if (client) {
      const result = await this.timed(target, `_tag/${tag}`, () => client.tag(target.repository, tag));
      if (!result) throw notFound(`Tag not found: ${tag}`);
      return { id: result.ids, outcome: result.outcome };
    }
    const resolved = await this.resolveV2Tag(target, tag);
    if (!resolved) throw notFound(`Tag not found: ${tag}`);
    return resolved;
  }

  async search(upstream: V1Upstream | undefined, query: string, n: number): Promise<V1SearchResult[]> {
    if (!upstream?.v1 || this.offline) return [];
    try {
      return await upstream.v1.search(query, n);
    } catch (error) {
      this.log.warn({ upstream: upstream.name, err: (error as Error).message }, 'upstream search failed; local results only');
      return [];
    }
  }

  // ---- images ------------------------------------------------------------------------------

  /** An image's record (json and ancestry), cached forever once fetched; per upstream. */
  async image(id: string, target: V1Target | undefined, auth: V1UpstreamAuth): Promise<{ record: V1ImageRecord; outcome: CacheOutcome }> {
    const client = target?.upstream.v1;
    const images = target ? this.images(target.upstream.name) : undefined;
    const found =
      target && images
        ? await this.lookups
            .get<V1ImageRecord>({
              key: `v1-image|${target.upstream.name}|${id}`,
              ttlMs: Number.POSITIVE_INFINITY, // an id's json and ancestry never change
              cached: async () => {
                const record = await images.get(id);
                return record && { value: record, fetchedAt: 0 };
              },
              refresh: async () => (client ? this.fetchImage(client, target, id, auth) : undefined),
              context: { upstream: target.upstream.name, image: id },
            })
        : undefined;
    if (!found) throw notFound(`Image not found: ${id}${this.offline ? ' (not cached, and offline mode is on)' : target ? ` at ${target.upstream.name}` : ''}`);
    return { record: found.value, outcome: found.outcome };
  }

  /**
   * Old-Docker mirror mode with a token the mirror did not issue, when mirrored content is not
   * open to anyone: the upstream decides whether the token's holder may read this image (a
   * json GET with their token); only then is it served, from the cache if it is there.
   */
  async confirmImage(id: string, target: V1Target | undefined, auth: V1UpstreamAuth): Promise<void> {
    const client = target?.upstream.v1;
    if (!client || this.offline) {
      throw new RegistryError('UNAUTHORIZED', 'a token this mirror did not issue is checked by the upstream, and no upstream can be asked', { headers: { 'www-authenticate': 'Token' } });
    }
    const json = await client.imageJson(id, auth);
    if (!json) throw notFound(`Image not found: ${id} at ${client.name}`);
  }

  /** Remembers an ancestry list so each ancestor's record can be built without asking again. */
  learnAncestry(ids: readonly string[]): void {
    ids.forEach((id, index) => this.knownAncestry.set(id, ids.slice(index)));
  }

  private async fetchImage(client: V1UpstreamRegistry, target: V1Target, id: string, auth: V1UpstreamAuth): Promise<V1ImageRecord | undefined> {
    const json = await client.imageJson(id, auth);
    if (!json) return undefined;
    let parsed: { id?: unknown; parent?: unknown };
    try {
      parsed = JSON.parse(json.bytes.toString('utf8')) as { id?: unknown; parent?: unknown };
    } catch {
      throw new UpstreamError(client.name, 'invalid', `json of image ${id} is not JSON`);
    }
    if (parsed.id !== id) throw new UpstreamError(client.name, 'invalid', `json of image ${id} names id ${String(parsed.id)}`);
    let ancestry = this.knownAncestry.get(id);
    if (!ancestry) {
      ancestry = await client.ancestry(id, auth);
      if (!ancestry) return undefined;
      this.learnAncestry(ancestry);
    }
    if (ancestry[0] !== id || !ancestry.every(isValidImageId)) throw new UpstreamError(client.name, 'invalid', `ancestry of ${id} does not start with it or has invalid ids`);
    const record: V1ImageRecord = {
      id,
      ...(typeof parsed.parent === 'string' && parsed.parent !== '' ? { parent: parsed.parent } : {}),
      json: json.bytes.toString('base64'),
      ancestry,
      complete: true,
      source: { upstream: target.upstream.name, repository: target.repository, api: 'v1' },
      ...(json.layerSize !== undefined ? { layerSize: json.layerSize } : {}),
      ...(json.payloadChecksum ? { computed: { payload: json.payloadChecksum, tarsums: [] } } : {}),
    };
    await this.images(target.upstream.name).put(record);
    return record;
  }

  /** The layer of an image: from the store, or teed from the upstream (coalesced per image). */
  async layer(record: V1ImageRecord, target: V1Target | undefined, auth: V1UpstreamAuth): Promise<BlobResult> {
    if (record.source?.api === 'v2') return this.v2Layer(record, target);
    const client = target?.upstream.v1;
    const upstream = client?.name ?? record.source?.upstream ?? '';
    let current = record;
    const source: FetchSource = {
      open: async () => (client ? client.layer(record.id, auth, record.layerSize) : undefined),
      alreadyStored: async () => {
        const layer = (await this.current(record)).layer;
        return layer !== undefined && (await this.blobs.stat(parseDigest(layer.digest))) !== undefined;
      },
      verifier: () => layerVerifier(record),
      stored: async (digest, size) => {
        record.layer = { digest: digest.text, size };
        try {
          await this.provenance.record(digest, { upstream, repository: record.source?.repository ?? '' });
          await this.images(upstream).put({ ...(await this.current(record)), layer: record.layer });
        } catch (error) {
          // The verified layer is stored either way; the record learns its digest next time.
          this.log.warn({ image: record.id, err: (error as Error).message }, 'could not record the layer digest or origin of a v1 image');
        }
      },
    };
    return this.v2.blobMisses
      .serve({
        key: `v1:${upstream}:${record.id}`,
        upstream,
        // A fetch that committed meanwhile wrote the layer's digest into the record.
        storedDigest: async (round) => {
          if (round > 0) current = await this.current(current);
          return current.layer ? parseDigest(current.layer.digest) : undefined;
        },
        source,
        missing: () => notFound(`layer of ${record.id} not found at ${client ? client.name : `${upstream} (no v1 registry configured)`}`),
        offlineMiss: () => notFound(`layer of ${record.id} is not cached, and offline mode is on`),
      });
  }

  private async current(record: V1ImageRecord): Promise<V1ImageRecord> {
    const upstream = record.source?.upstream;
    return (upstream !== undefined ? await this.images(upstream).get(record.id) : undefined) ?? record;
  }

  private images(upstream: string): V1ImageStore {
    let store = this.imageStores.get(upstream);
    if (!store) {
      store = mirroredImageStore(this.metadata, upstream);
      this.imageStores.set(upstream, store);
    }
    return store;
  }

  /** A layer that is a v2 blob: the v2 mirror's own path (same tee, same coalescing, same guard). */
  private async v2Layer(record: V1ImageRecord, target: V1Target | undefined): Promise<BlobResult> {
    const digest = parseDigest(record.layer?.digest as string);
    if (digest.text === EMPTY_GZ_TAR_DIGEST) {
      // Stored once, and served to anyone: it is a constant, not anybody's content.
      await this.blobs.put(digest, EMPTY_GZ_TAR);
      return this.storedOnly(digest, `the empty layer ${digest.text} could not be stored`);
    }
    const source = record.source;
    const upstream = source?.upstream === target?.upstream.name ? target?.upstream : undefined;
    const v2 = upstream?.v2 ?? this.upstreamByName(source?.upstream ?? '')?.v2;
    // Its upstream is gone from the config: what is stored is still served.
    if (!v2 || !source?.repository) return this.storedOnly(digest, `layer of ${record.id}: its upstream ${source?.upstream ?? '?'} is not configured any more`);
    return this.v2.getBlob({ upstream: v2, repository: source.repository }, digest.text);
  }

  /** A stored blob, or `notFound(why)`: no upstream to ask. */
  private storedOnly(digest: Digest, why: string): Promise<BlobResult> {
    return this.v2.blobMisses.serve({
      key: digest.text,
      upstream: '',
      storedDigest: () => Promise.resolve(digest),
      source: { expected: digest, open: () => Promise.resolve(undefined) },
      missing: () => notFound(why),
      offlineMiss: () => notFound(why),
    });
  }

  // ---- v1 views of v2 images (§11) ---------------------------------------------------------

  private v2Target(target: V1Target): MirrorTarget {
    const v2 = target.upstream.v2;
    if (!v2) throw notFound(`${target.upstream.name} has neither a v1 index nor a v2 API`);
    return { upstream: v2, repository: target.repository };
  }

  private async v2ListTags(target: V1Target): Promise<{ tags: string[]; outcome: CacheOutcome } | undefined> {
    try {
      return await this.v2.listTags(this.v2Target(target));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Tag → top v1 id, storing the chain's records; the tag's freshness is the v2 mirror's. */
  private async resolveV2Tag(target: V1Target, tag: string): Promise<{ id: string; outcome: CacheOutcome } | undefined> {
    const v2Target = this.v2Target(target);
    let manifest;
    try {
      manifest = await this.v2.getManifestByTag(v2Target, tag, ACCEPT);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const outcome = manifest.outcome;
    let { bytes, mediaType, digest } = manifest;
    const parsed = parseManifest(bytes, mediaType);
    if (parsed.kind === 'index') {
      const wanted: Platform = parsePlatform(target.upstream.platform);
      const child = parsed.manifests.find((m) => platformMatches(wanted, m.platform));
      if (!child) throw notFound(`${target.repository}:${tag} has no ${target.upstream.platform} image (v1.platform)`);
      ({ bytes, mediaType, digest } = await this.v2.getManifestByDigest(v2Target, child.digest, ACCEPT));
    }
    const chainKey = this.chainKey(target, digest);
    const known = await this.metadata.get<{ top: string }>(chainKey);
    if (known) return { id: known.top, outcome };
    const image = parseManifest(bytes, mediaType);
    const chain = await this.chainOf(v2Target, bytes, image);
    const sizes = new Map<string, number>(image.kind === 'image' ? image.layers.map((l) => [l.digest, l.size]) : []);
    sizes.set(EMPTY_GZ_TAR_DIGEST, EMPTY_GZ_TAR.length);
    const ids = chain.map((entry) => entry.id);
    const images = this.images(target.upstream.name);
    for (const [index, entry] of chain.entries()) {
      if (await images.get(entry.id)) continue;
      await images.put({
        id: entry.id,
        ...(entry.parent ? { parent: entry.parent } : {}),
        json: Buffer.from(entry.v1Compatibility, 'utf8').toString('base64'),
        ancestry: ids.slice(index),
        // The size is the manifest's (schema2); schema1 states none: unknown until fetched.
        layer: { digest: entry.blobSum, size: sizes.get(entry.blobSum) ?? -1 },
        complete: true,
        source: { upstream: target.upstream.name, repository: target.repository, api: 'v2' },
      });
    }
    const top = ids[0] as string;
    await this.metadata.put(chainKey, { top });
    // Tags of one repository resolve concurrently (a tag list); their ids must all land.
    const listKey = this.key(target, '_v2images');
    await this.metadata.update<string[]>(listKey, (current) => {
      const listed = new Set(current ?? []);
      for (const id of ids) listed.add(id);
      return [...listed];
    });
    return { id: top, outcome };
  }

  /** The v1 chain (top first) of a schema2/OCI manifest (§11.1) or a schema1 one (§11.2). */
  private async chainOf(target: MirrorTarget, bytes: Buffer, parsed: ParsedManifest): Promise<V1ChainEntry[]> {
    if (parsed.kind === 'image') {
      const blob = await this.v2.getBlob(target, parsed.config.digest);
      const config = await readBounded(blob.open() as AsyncIterable<Buffer>, MAX_MANIFEST_BYTES, () => new RegistryError('UNKNOWN', 'image config over 4 MiB', { status: 502 }));
      try {
        return v1ChainFromV2(config, parsed.layers.map((l) => l.digest));
      } catch (error) {
        throw noV1View(error);
      }
    }
    try {
      return v1ChainFromSchema1(bytes);
    } catch (error) {
      throw noV1View(error);
    }
  }

  private key(target: V1Target, ...rest: string[]): string {
    return metadataKeys.v1MirrorList(target.upstream.name, target.repository, ...rest);
  }

  /** Per upstream, like the records the chain's ids name. */
  private chainKey(target: V1Target, manifestDigest: string): string {
    return metadataKeys.v1MirrorChain(target.upstream.name, parseDigest(manifestDigest));
  }

  /**
   * A list the upstream index or registry answers (images, tags, one tag), kept for tagTtl;
   * within it, no upstream request. On a transient failure the last copy is served stale.
   */
  private async timed<T>(target: V1Target, name: string, fetch: () => Promise<T | undefined>): Promise<{ ids: T; outcome: CacheOutcome } | undefined> {
    const key = this.key(target, name);
    const found = await this.lookups
      .get<T>({
        key,
        ttlMs: target.upstream.tagTtlMs,
        cached: () => this.metadata.get<CachedEntry<T>>(key),
        refresh: async () => {
          const value = await fetch();
          if (value !== undefined) await this.metadata.put(key, { value, fetchedAt: this.now() } satisfies CachedEntry<T>);
          return value;
        },
        context: { upstream: target.upstream.name, repository: target.repository },
      });
    return found && { ids: found.value, outcome: found.outcome };
  }
}

/**
 * What a v1 layer must satisfy before it is stored: the upstream's X-Docker-Size and, when it
 * sent one, X-Docker-Checksum-Payload (sha256 of json + "\n" + layer). With neither, the
 * transfer length is all there is to check.
 */
function layerVerifier(record: V1ImageRecord): { update(chunk: Buffer): void; check(size: number): void } {
  const payload = record.computed?.payload;
  const hash = payload ? payloadHash(imageJsonBytes(record)) : undefined;
  return {
    update: (chunk) => hash?.update(chunk),
    check: (size) => {
      if (record.layerSize !== undefined && size !== record.layerSize) {
        throw new Error(`layer of ${record.id}: got ${size} bytes, the upstream's X-Docker-Size says ${record.layerSize}`);
      }
      if (hash && payloadChecksum(hash) !== payload) throw new Error(`layer of ${record.id}: payload checksum mismatch (X-Docker-Checksum-Payload ${payload})`);
    },
  };
}

/** Nothing of that name (repository, tag, image, layer) here or upstream: a 404 in either API. */
function notFound(message: string): RegistryError {
  return new RegistryError('NAME_UNKNOWN', message);
}

function noV1View(error: unknown): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `no v1 view of this image: ${(error as Error).message}`);
}
