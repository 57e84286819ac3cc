// The private-content index shared by the replicas: a Redis hash digest -> size and a byte
// counter, over the marks in the metadata store, which stay the truth (a mark is written there
// first). A "loaded" key says the hash holds every mark; when it is missing (Redis flushed or
// replaced) the first replica to notice rebuilds the hash from the metadata store under a
// lease, and until then every answer comes from the metadata store itself, so a private digest
// is never taken for a mirrored one. With Redis unreachable, answers come from the metadata
// store too, and writes Redis missed are replayed when it returns.
import type { Logger } from 'pino';
import type { Digest } from '../protocol/digest.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { ContentStats, Leases, PrivateContent } from './ports.js';
import { whileHoldingLease } from './held-lease.js';
import { hasPrivateMark, readPrivateMarks } from './private-content.js';
import type { RedisConnection } from './redis-connection.js';

// KEYS: hash, bytes counter. ARGV: digest, size. Counts a digest once however often it is added.
const ADD_SCRIPT = `if redis.call('hsetnx', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('incrby', KEYS[2], ARGV[2]) return 1 end return 0`;
// KEYS: hash, bytes counter. ARGV: digest.
const REMOVE_SCRIPT = `local size = redis.call('hget', KEYS[1], ARGV[1]) if size then redis.call('hdel', KEYS[1], ARGV[1]) redis.call('decrby', KEYS[2], size) return 1 end return 0`;
// KEYS: hash, loaded marker. ARGV: digest. -1: the hash is not (or no longer) complete.
const HAS_SCRIPT = `if redis.call('exists', KEYS[2]) == 0 then return -1 end return redis.call('hexists', KEYS[1], ARGV[1])`;

const REBUILD_LEASE_TTL_MS = 60_000;

type Change = { op: 'add'; size: number } | { op: 'remove' };

export class RedisPrivateContent implements PrivateContent {
  private readonly hashKey: string;
  private readonly bytesKey: string;
  private readonly loadedKey: string;
  /** Writes Redis missed while unreachable: replayed when it is back. */
  private readonly unsynced = new Map<string, Change>();
  private rebuilding: Promise<void> | undefined;
  private lastStats: ContentStats = { bytes: 0, objects: 0 };
  private readonly stopReplay: () => void;

  constructor(
    private readonly connection: RedisConnection,
    private readonly metadata: MetadataStore,
    private readonly leases: Leases,
    private readonly log: Logger,
  ) {
    this.hashKey = connection.key('private:digests');
    this.bytesKey = connection.key('private:bytes');
    this.loadedKey = connection.key('private:loaded');
    this.stopReplay = connection.onReady(() => {
      void this.replay();
      void this.ensureLoaded();
    });
  }

  /** Builds the shared index from the metadata store unless a replica did already. */
  async load(): Promise<void> {
    await this.ensureLoaded();
  }

  async add(digest: Digest, size: number): Promise<void> {
    await this.metadata.put(metadataKeys.privateBlob(digest), { size });
    await this.write(digest.text, { op: 'add', size });
  }

  async remove(digest: Digest): Promise<void> {
    await this.metadata.delete(metadataKeys.privateBlob(digest));
    await this.write(digest.text, { op: 'remove' });
  }

  async has(digest: Digest | string): Promise<boolean> {
    const text = typeof digest === 'string' ? digest : digest.text;
    try {
      const answer = await this.connection.client.eval(HAS_SCRIPT, { keys: [this.hashKey, this.loadedKey], arguments: [text] });
      if (answer !== -1) return answer === 1;
      void this.ensureLoaded();
    } catch (error) {
      this.connection.uncoordinated('privateContent', error, { digest: text });
    }
    return hasPrivateMark(this.metadata, text);
  }

  /** From the metadata store: gc's walk must see every mark, whatever state Redis is in. */
  list(): AsyncIterable<{ digest: string; size: number }> {
    return readPrivateMarks(this.metadata);
  }

  async stats(): Promise<ContentStats> {
    try {
      const [objects, bytes] = await Promise.all([this.connection.client.hLen(this.hashKey), this.connection.client.get(this.bytesKey)]);
      this.lastStats = { objects, bytes: Number(bytes ?? 0) };
    } catch (error) {
      this.connection.uncoordinated('privateContent', error, { step: 'stats' });
    }
    return this.lastStats;
  }

  close(): void {
    this.stopReplay();
  }

  private async write(digest: string, change: Change): Promise<void> {
    try {
      await this.apply(digest, change);
      this.unsynced.delete(digest);
    } catch (error) {
      this.unsynced.set(digest, change);
      this.connection.uncoordinated('privateContent', error, { digest, op: change.op });
    }
  }

  private async apply(digest: string, change: Change): Promise<void> {
    if (change.op === 'add') await this.connection.client.eval(ADD_SCRIPT, { keys: [this.hashKey, this.bytesKey], arguments: [digest, String(change.size)] });
    else await this.connection.client.eval(REMOVE_SCRIPT, { keys: [this.hashKey, this.bytesKey], arguments: [digest] });
  }

  private async replay(): Promise<void> {
    for (const [digest, change] of [...this.unsynced]) {
      try {
        await this.apply(digest, change);
        if (this.unsynced.get(digest) === change) this.unsynced.delete(digest);
      } catch {
        return; // gone again: the next reconnection replays the rest
      }
    }
  }

  /** One rebuild at a time per replica, and one replica at a time under a lease. */
  private ensureLoaded(): Promise<void> {
    this.rebuilding ??= this.rebuild().finally(() => {
      this.rebuilding = undefined;
    });
    return this.rebuilding;
  }

  private async rebuild(): Promise<void> {
    try {
      if ((await this.connection.client.exists(this.loadedKey)) === 1) return;
      // Without the lease another replica is rebuilding; answers come from the metadata store meanwhile.
      await whileHoldingLease(this.leases, 'private:rebuild', REBUILD_LEASE_TTL_MS, async () => {
        let count = 0;
        // Marks added meanwhile are written by their add() too; ADD counts each digest once. A
        // mark removed meanwhile may come back into the hash: the safe direction (a digest
        // taken for private is kept and needs its upstream's word), until the next rebuild.
        for await (const mark of readPrivateMarks(this.metadata)) {
          await this.apply(mark.digest, { op: 'add', size: mark.size });
          count += 1;
        }
        await this.connection.client.set(this.loadedKey, String(Date.now()));
        this.log.info({ marks: count }, 'private-content index rebuilt in Redis from the storage');
      });
    } catch (error) {
      this.connection.uncoordinated('privateContent', error, { step: 'rebuild' });
    }
  }
}

