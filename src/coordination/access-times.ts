// Last-access times of mirrored blobs, kept in the metadata store (the truth) so that recency
// survives a restart and a lost Redis: 256 small records (one per first two hex digits of the
// digest), written every few seconds for the shards that changed and at close. Shared by the
// in-process and the Redis cache index. A crash loses the last seconds of order, no more.
import type { Logger } from 'pino';
import { parseDigest } from '../protocol/digest.js';
import { metadataKeys } from '../storage/keys.js';
import { DELETE_RECORD, type MetadataStore } from '../storage/metadata-store.js';

/** Shard record: hex -> last access (ms since epoch). */
type AccessShard = Record<string, number>;

const DEFAULT_FLUSH_INTERVAL_MS = 5000;

export class AccessTimeRecords {
  /** Shard key -> hex -> access time to write, or null to remove. */
  private pending = new Map<string, Map<string, number | null>>();
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly log: Logger,
    flushIntervalMs = DEFAULT_FLUSH_INTERVAL_MS,
  ) {
    this.timer = setInterval(() => void this.flush(), flushIntervalMs);
    this.timer.unref();
  }

  /** Every recorded access time: digest -> ms. */
  async readAll(): Promise<Map<string, number>> {
    const accessed = new Map<string, number>();
    for (const algorithm of await this.metadata.list(metadataKeys.cacheAccessRoot)) {
      for (const shard of await this.metadata.list(`${metadataKeys.cacheAccessRoot}/${algorithm}`)) {
        const record = await this.metadata.get<AccessShard>(`${metadataKeys.cacheAccessRoot}/${algorithm}/${shard}`);
        for (const [hex, at] of Object.entries(record ?? {})) accessed.set(`${algorithm}:${hex}`, at);
      }
    }
    return accessed;
  }

  /** Queues an access time (or, with null, the removal of the blob's record) for the next flush. */
  record(digestText: string, at: number | null): void {
    const digest = parseDigest(digestText);
    const shardKey = metadataKeys.cacheAccessShard(digest);
    let changes = this.pending.get(shardKey);
    if (!changes) this.pending.set(shardKey, (changes = new Map<string, number | null>()));
    changes.set(digest.hex, at);
  }

  /** Writes the access times recorded since the last flush, one update per changed shard. */
  flush(): Promise<void> {
    // `finally` runs asynchronously, so a flush with nothing to write cannot clear the field
    // before it is set.
    this.flushing ??= this.writePending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writePending(): Promise<void> {
    while (this.pending.size > 0) {
      const batch = this.pending;
      this.pending = new Map();
      for (const [shardKey, changes] of batch) {
        await this.metadata
          .update<AccessShard>(shardKey, (current) => {
            const next: AccessShard = { ...current };
            for (const [hex, at] of changes) {
              if (at === null) delete next[hex];
              else next[hex] = at;
            }
            return Object.keys(next).length > 0 ? next : current ? DELETE_RECORD : undefined;
          })
          .catch((error: unknown) => this.log.warn({ shard: shardKey, err: (error as Error).message }, 'cache index: could not record access times'));
      }
    }
  }
}
