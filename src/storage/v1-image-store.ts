// v1 image records, keyed by image id: the image JSON exactly as received, its parent chain
// and the content-addressed layer it points to. Layers themselves live in the shared blob
// store, so a layer pushed or pulled through v1 is the same file v2 serves by digest.
// One store per kind of content (private pushes, mirrored images), told apart by prefix.
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

/** Where each kind of v1 image record lives in the metadata store. */
export const V1_IMAGE_PREFIXES = { private: metadataKeys.v1PrivateImages, mirrored: metadataKeys.v1MirroredImages } as const;

export class V1ImageStore {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly prefix: string,
  ) {}

  private key(id: string): string {
    return `${this.prefix}/${id}`;
  }

  /** Callers validate the id (64 hex) first; the metadata store re-checks the key. */
  async get(id: string): Promise<V1ImageRecord | undefined> {
    return this.metadata.get<V1ImageRecord>(this.key(id));
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
