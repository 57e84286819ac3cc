// Which mirrored repositories have content in the cache, by the names clients pull them by:
// for search (v1 /v1/search) and the catalog (/v2/_catalog). A repository counts when one of
// its tag records (storage/keys.ts: mirrorTag) still points at a manifest whose bytes are in
// the blob store; evicted content drops out by itself. Content pulled by digest only leaves
// no tag record and is not listed.
import { parseDigest } from '../protocol/digest.js';
import { isValidRepositoryName } from '../protocol/reference.js';
import type { NamespacePolicy } from '../auth/policy.js';
import type { BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataDriver } from '../storage/metadata-store.js';
import type { TagRecord } from './tag-records.js';
import type { RoutableUpstream } from './router.js';

export class CachedRepositories {
  constructor(
    private readonly metadata: Pick<MetadataDriver, 'get' | 'list'>,
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
    const entries = await this.metadata.list(metadataKeys.mirrorRepository(upstream, ...path));
    const found: string[] = [];
    const repository = path.join('/');
    if (path.length > 0 && (await this.hasCachedTag(upstream, repository))) found.push(repository);
    // Entries starting with "_" are a repository's own records, never a name component.
    for (const entry of entries) {
      if (!entry.startsWith('_')) found.push(...(await this.cachedUnder(upstream, [...path, entry])));
    }
    return found;
  }

  private async hasCachedTag(upstream: string, repository: string): Promise<boolean> {
    for (const tag of await this.metadata.list(metadataKeys.mirrorTags(upstream, repository))) {
      const record = await this.metadata.get<TagRecord>(metadataKeys.mirrorTag(upstream, repository, tag));
      if (record && (await this.blobs.stat(parseDigest(record.digest)))) return true;
    }
    return false;
  }
}
