// The list of repositories the web page shows, with per-repository and per-tag pull counts,
// kept in the metadata store so every replica sharing the storage sees the same list and the
// counts of all of them add up.
//
// - 256 shard records (catalog/repositories/<2 hex of sha256(name)>): listing every repository
//   is 256 reads, however many there are, instead of a walk over the mirror/ and local/ trees
//   (thousands of LISTs on S3). Pages read a snapshot of them held in memory and refreshed at
//   most every few seconds, so a view never scans anything.
// - Pulls are counted in memory and written every few seconds, one update per changed shard,
//   under the coordinator's lock for that key (metadata.update): increments from several
//   replicas are merged, never lost to a race, and a pull costs no write of its own.
// - reconcile() adds repositories that reached the storage without passing through this
//   process's routes (an import, warm, a store written before the page existed).
import { createHash } from 'node:crypto';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';

export type RepositoryKind = 'mirrored' | 'private';

/** Where a repository's records live: its upstream and its name there, or its private name. */
export interface RepositoryOrigin {
  kind: RepositoryKind;
  /** Mirrored: the upstream's name. */
  upstream?: string;
  /** Mirrored: the name at the upstream; private: the name itself. */
  repository: string;
  /**
   * It has v1 tag records too (a v1 push, a pull through a v1 index): views read them beside
   * the v2 ones. Only set when true, so a v2-only repository costs no v1 reads.
   */
  v1?: true;
}

export interface PullFigures {
  pulls: number;
  /** ms since epoch; absent when never pulled through this mirror. */
  lastPulledAt?: number;
}

export interface CatalogEntry extends RepositoryOrigin, PullFigures {
  tags: Record<string, PullFigures>;
}

type Shard = Record<string, CatalogEntry>;

interface PendingEntry {
  origin: RepositoryOrigin;
  pulls: number;
  lastPulledAt: number | undefined;
  tags: Map<string, { pulls: number; lastPulledAt: number }>;
}

const DEFAULT_FLUSH_INTERVAL_MS = 2000;
const DEFAULT_SNAPSHOT_TTL_MS = 5000;
/** Per-tag pull figures kept per repository (the most recently pulled; the repository's total counts all). */
export const MAX_TAGS_PER_REPOSITORY = 200;
/** Shards read at once when the snapshot is refreshed. */
const READ_CONCURRENCY = 16;

export interface RepositoryCatalogOptions {
  log: { warn(details: object, message: string): void };
  now?: () => number;
  flushIntervalMs?: number;
  /** How old the in-memory copy may be before it is read again (other replicas' changes). */
  snapshotTtlMs?: number;
  /** Called first by every flush: hands over pulls tallied elsewhere (the request hook's PullTally). */
  collect?: () => void;
}

export function catalogShard(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 2);
}

export class RepositoryCatalog {
  private pending = new Map<string, Map<string, PendingEntry>>();
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private shards = new Map<string, Shard>();
  private loadedAt = -Infinity;
  private loading: Promise<void> | undefined;
  /** Sorted names, rebuilt only when a shard changed. */
  private sorted: Array<[string, CatalogEntry]> | undefined;
  private readonly now: () => number;
  private readonly snapshotTtlMs: number;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly options: RepositoryCatalogOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.snapshotTtlMs = options.snapshotTtlMs ?? DEFAULT_SNAPSHOT_TTL_MS;
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  /** The repository exists (a push, a first pull): list it even before anyone pulls it. */
  note(name: string, origin: RepositoryOrigin): void {
    this.pendingFor(name, origin);
  }

  /**
   * `pulls` pulls of `name` (by tag, or by digest: tag undefined, which only moves "last
   * pulled"), the latest at `at` (default now).
   */
  recordPull(name: string, origin: RepositoryOrigin, tag: string | undefined, pulls = 1, at = this.now()): void {
    const entry = this.pendingFor(name, origin);
    entry.lastPulledAt = Math.max(entry.lastPulledAt ?? 0, at);
    if (tag === undefined) return;
    entry.pulls += pulls;
    const tagEntry = entry.tags.get(tag) ?? { pulls: 0, lastPulledAt: at };
    tagEntry.pulls += pulls;
    tagEntry.lastPulledAt = Math.max(tagEntry.lastPulledAt, at);
    entry.tags.set(tag, tagEntry);
  }

  /** Every repository, sorted by name, from a snapshot at most snapshotTtlMs old plus this replica's own changes. */
  async entries(): Promise<ReadonlyArray<readonly [string, CatalogEntry]>> {
    await this.flush();
    if (this.now() - this.loadedAt > this.snapshotTtlMs) {
      // Stale-while-revalidate: a snapshot exists, so answer from it and refresh behind.
      const refresh = this.refresh();
      if (this.loadedAt === -Infinity) await refresh;
      else void refresh.catch((error: unknown) => this.options.log.warn({ err: (error as Error).message }, 'repository catalog: refresh failed'));
    }
    this.sorted ??= [...this.shards.values()].flatMap((shard) => Object.entries(shard)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return this.sorted;
  }

  async get(name: string): Promise<CatalogEntry | undefined> {
    await this.flush();
    const shardKey = metadataKeys.repositoryCatalogShard(catalogShard(name));
    const fresh = await this.metadata.get<Shard>(shardKey);
    if (fresh) this.storeShard(shardKey, fresh);
    return fresh?.[name];
  }

  /** Writes the notes and pull counts gathered since the last flush. */
  flush(): Promise<void> {
    this.options.collect?.();
    // A flush already under way may be past its last look at the pending changes: what was
    // just collected is written by one more after it, so a caller always reads its own pulls.
    if (this.flushing) return this.pending.size > 0 ? this.flushing.then(() => this.flush()) : this.flushing;
    this.flushing = this.writePending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /**
   * Adds every repository `found` lists that the catalog does not have yet, and marks known
   * ones that `found` says have v1 records (a store written before the page knew v1 tags).
   */
  async reconcile(found: AsyncIterable<{ name: string; origin: RepositoryOrigin }>): Promise<number> {
    const known = new Map((await this.entries()).map(([name, entry]) => [name, entry.v1 === true]));
    let added = 0;
    for await (const { name, origin } of found) {
      const hasV1 = known.get(name);
      if (hasV1 === undefined) added += 1;
      else if (hasV1 || !origin.v1) continue; // known, and nothing new to mark
      known.set(name, origin.v1 === true);
      this.note(name, origin);
    }
    await this.flush();
    return added;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private pendingFor(name: string, origin: RepositoryOrigin): PendingEntry {
    const shardKey = metadataKeys.repositoryCatalogShard(catalogShard(name));
    let shard = this.pending.get(shardKey);
    if (!shard) this.pending.set(shardKey, (shard = new Map<string, PendingEntry>()));
    let entry = shard.get(name);
    if (!entry) shard.set(name, (entry = { origin, pulls: 0, lastPulledAt: undefined, tags: new Map() }));
    else if (origin.v1 && !entry.origin.v1) entry.origin = { ...entry.origin, v1: true };
    return entry;
  }

  private async writePending(): Promise<void> {
    while (this.pending.size > 0) {
      const batch = this.pending;
      this.pending = new Map<string, Map<string, PendingEntry>>();
      for (const [shardKey, changes] of batch) {
        try {
          const written = await this.metadata.update<Shard>(shardKey, (current) => mergeInto(current ?? {}, changes));
          if (written) this.storeShard(shardKey, written);
        } catch (error) {
          this.options.log.warn({ shard: shardKey, err: (error as Error).message }, 'repository catalog: could not record pulls');
        }
      }
    }
  }

  private refresh(): Promise<void> {
    this.loading ??= (async () => {
      const startedAt = this.now();
      const shardNames = await this.metadata.list(metadataKeys.repositoryCatalogRoot);
      const next = new Map<string, Shard>();
      for (let i = 0; i < shardNames.length; i += READ_CONCURRENCY) {
        await Promise.all(
          shardNames.slice(i, i + READ_CONCURRENCY).map(async (shard) => {
            const key = metadataKeys.repositoryCatalogShard(shard);
            const record = await this.metadata.get<Shard>(key);
            if (record) next.set(key, record);
          }),
        );
      }
      this.shards = next;
      this.sorted = undefined;
      this.loadedAt = startedAt;
    })().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private storeShard(shardKey: string, shard: Shard): void {
    this.shards.set(shardKey, shard);
    this.sorted = undefined;
  }
}

function mergeInto(current: Shard, changes: Map<string, PendingEntry>): Shard {
  const next: Shard = { ...current };
  for (const [name, change] of changes) {
    const entry: CatalogEntry = next[name] ? { ...next[name], tags: { ...next[name].tags } } : { ...change.origin, pulls: 0, tags: {} };
    if (change.origin.v1) entry.v1 = true;
    entry.pulls += change.pulls;
    if (change.lastPulledAt !== undefined) entry.lastPulledAt = Math.max(entry.lastPulledAt ?? 0, change.lastPulledAt);
    for (const [tag, figures] of change.tags) {
      const before = entry.tags[tag];
      entry.tags[tag] = { pulls: (before?.pulls ?? 0) + figures.pulls, lastPulledAt: Math.max(before?.lastPulledAt ?? 0, figures.lastPulledAt) };
    }
    boundTags(entry);
    next[name] = entry;
  }
  return next;
}

/** Keeps the most recently pulled tags: a CI pulling a new tag per build must not grow a record without end. */
function boundTags(entry: CatalogEntry): void {
  const tags = Object.entries(entry.tags);
  if (tags.length <= MAX_TAGS_PER_REPOSITORY) return;
  tags.sort(([, a], [, b]) => (b.lastPulledAt ?? 0) - (a.lastPulledAt ?? 0));
  entry.tags = Object.fromEntries(tags.slice(0, MAX_TAGS_PER_REPOSITORY));
}
