// Which mirrored repositories have content in the cache, by the names clients pull them by:
// for search (v1 /v1/search) and the catalog (/v2/_catalog). A repository counts when one of
// its tag records (mirror/<upstream>/<repository>/_tags/<tag>) still points at a manifest
// whose bytes are on disk; evicted content drops out by itself. Content pulled by digest only
// leaves no tag record and is not listed.
import { parseDigest } from '../protocol/digest.js';
import { isValidRepositoryName } from '../protocol/reference.js';
import type { NamespacePolicy } from '../auth/policy.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { TagRecord } from './tag-records.js';
import type { RoutableUpstream } from './router.js';

const MIRROR_PREFIX = 'mirror';
const TAGS = '_tags';

export class CachedRepositories {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: Pick<BlobStore, 'stat'>,
    /** The v2 router: its upstreams, and the default one that takes unprefixed names. */
    private readonly router: { readonly upstreams: readonly RoutableUpstream[]; readonly defaultUpstream: RoutableUpstream | undefined },
    private readonly policy: NamespacePolicy,
  ) {}

  /** Client-facing names, sorted: as is for the default upstream, `<upstream>/<name>` for others. */
  async list(): Promise<string[]> {
    const names = new Set<string>();
    for (const upstream of this.router.upstreams) {
      for (const repository of await this.cachedUnder(upstream.name, [])) {
        const name = this.clientName(upstream, repository);
        // A private namespace shadows a mirrored name: clients asking for it get the private one.
        if (isValidRepositoryName(name) && !this.policy.isPrivate(name)) names.add(name);
      }
    }
    return [...names].sort();
  }

  private clientName(upstream: RoutableUpstream, repository: string): string {
    return upstream === this.router.defaultUpstream ? repository : `${upstream.name}/${repository}`;
  }

  /** Repositories below mirror/<upstream>/<path...> with a tag whose manifest is cached. */
  private async cachedUnder(upstream: string, path: string[]): Promise<string[]> {
    const prefix = [MIRROR_PREFIX, upstream, ...path].join('/');
    const entries = await this.metadata.list(prefix);
    const found: string[] = [];
    if (path.length > 0 && entries.includes(TAGS) && (await this.hasCachedTag(`${prefix}/${TAGS}`))) found.push(path.join('/'));
    for (const entry of entries) {
      if (!entry.startsWith('_')) found.push(...(await this.cachedUnder(upstream, [...path, entry])));
    }
    return found;
  }

  private async hasCachedTag(tagsPrefix: string): Promise<boolean> {
    for (const tag of await this.metadata.list(tagsPrefix)) {
      const record = await this.metadata.get<TagRecord>(`${tagsPrefix}/${tag}`);
      if (record && (await this.blobs.stat(parseDigest(record.digest)))) return true;
    }
    return false;
  }
}
