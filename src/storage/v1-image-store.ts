// v1 image records, keyed by image id: the image JSON exactly as received, its parent chain
// and the content-addressed layer it points to. Layers themselves live in the shared blob
// store, so a layer pushed or pulled through v1 is the same file v2 serves by digest.
// One store per kind of content (private pushes, mirrored images), told apart by prefix;
// mirrored records also by upstream, because a v1 id is whatever its publisher says it is.
import { isValidImageId } from '../protocol/v1.js';
import { metadataKeys } from './keys.js';
import type { MetadataStore, RecordChange } from './metadata-store.js';

export interface V1ImageRecord {
  id: string;
  parent?: string;
  /** The image JSON bytes as received, base64 (kept byte for byte: clients cache by id). */
  json: string;
  /** [id, parent, …, base]: the ancestry endpoint's answer. */
  ancestry: string[];
  layer?: { digest: string; size: number };
  /**
   * Pushes: what the uploaded layer hashed to, compared at PUT checksum. Mirrored v1 images:
   * the upstream's X-Docker-Checksum-Payload, checked when the layer is fetched.
   */
  computed?: { payload: string; tarsums: string[]; tarsumError?: string };
  /** Visible to pulls. Pushes become complete when their checksum is accepted. */
  complete: boolean;
  /** Mirrored images: where the layer comes from while it is not (or no longer) stored. */
  source?: { upstream: string; repository: string; api: 'v1' | 'v2' };
  /** Mirrored v1 images: the layer size the upstream stated (X-Docker-Size), checked on fetch. */
  layerSize?: number;
}

/**
 * Where each kind of v1 image record lives in the metadata store: private ones by id,
 * mirrored ones by upstream and id (keys.ts: v1MirroredImagesOf).
 */
export const V1_IMAGE_PREFIXES = { private: metadataKeys.v1PrivateImages, mirrored: metadataKeys.v1MirroredImages } as const;

/**
 * The mirrored image records of one upstream. Records written before they were scoped
 * (`v1/mirror/images/<id>`) are still read, when they name this upstream as their source.
 */
export function mirroredImageStore(metadata: MetadataStore, upstream: string): V1ImageStore {
  return new V1ImageStore(metadata, metadataKeys.v1MirroredImagesOf(upstream), async (id) => {
    const unscoped = await metadata.get<V1ImageRecord>(metadataKeys.v1MirroredImageUnscoped(id));
    return unscoped?.source?.upstream === upstream ? unscoped : undefined;
  });
}

/** Every mirrored v1 image record, of every upstream (gc keeps their layers). */
export async function* allMirroredImages(metadata: MetadataStore): AsyncGenerator<V1ImageRecord> {
  for (const name of await metadata.list(V1_IMAGE_PREFIXES.mirrored)) {
    if (isValidImageId(name)) {
      const unscoped = await metadata.get<V1ImageRecord>(metadataKeys.v1MirroredImageUnscoped(name));
      if (unscoped) yield unscoped;
      continue;
    }
    const store = new V1ImageStore(metadata, metadataKeys.v1MirroredImagesOf(name));
    for (const id of await store.list()) {
      const record = await store.get(id);
      if (record) yield record;
    }
  }
}

export class V1ImageStore {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly prefix: string,
    /** Where else a record may be found (records from before a key layout changed). */
    private readonly fallback?: (id: string) => Promise<V1ImageRecord | undefined>,
  ) {}

  private key(id: string): string {
    return `${this.prefix}/${id}`;
  }

  /** Callers validate the id (64 hex) first; the metadata store re-checks the key. */
  async get(id: string): Promise<V1ImageRecord | undefined> {
    return (await this.metadata.get<V1ImageRecord>(this.key(id))) ?? (await this.fallback?.(id));
  }

  async getComplete(id: string): Promise<V1ImageRecord | undefined> {
    const record = await this.get(id);
    return record?.complete ? record : undefined;
  }

  async put(record: V1ImageRecord): Promise<void> {
    await this.metadata.put(this.key(record.id), record);
  }

  /** Read-modify-write of one record under its lock (see MetadataStore.update). */
  async update(id: string, change: RecordChange<V1ImageRecord>): Promise<V1ImageRecord | undefined> {
    return this.metadata.update(this.key(id), change);
  }

  async delete(id: string): Promise<boolean> {
    return this.metadata.delete(this.key(id));
  }

  async list(): Promise<string[]> {
    return this.metadata.list(this.prefix);
  }
}

export function imageJsonBytes(record: V1ImageRecord): Buffer {
  return Buffer.from(record.json, 'base64');
}
