// Private repositories pushed with the v1 API (spec §5, §6, §7.2). Images are global by id,
// as in every v1 registry; repositories hold tags and the set of images they contain, which
// is what a repository-scoped token may read. An image becomes visible only once its
// checksum is accepted: a json without a layer, or a layer whose checksum failed, is an
// unfinished upload. Layers go to the shared blob store (sha256 of the bytes as uploaded)
// and are registered as private content and linked for v2, so v2 serves them by digest.
import { parseDigest } from '../protocol/digest.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { TarSumCalculator, tarSums } from '../protocol/tarsum.js';
import { assertImageId, isValidV1Tag, payloadChecksum, payloadHash, V1Error, type ImageListEntry } from '../protocol/v1.js';
import type { PrivateContent } from '../coordination/ports.js';
import type { BlobHandle, BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { imageJsonBytes, type V1ImageRecord, type V1ImageStore } from '../storage/v1-image-store.js';
import type { LocalRegistry } from './local-registry.js';
import { storePushedBlob, type PushedBlob } from './staged-push.js';

const ALREADY_EXISTS = 'Image already exists'; // the exact text clients treat as "skip" (§2)

interface RepositoryIndex {
  /** Images this repository contains: declared at push, and every ancestor of its tags. */
  images: string[];
}

export interface ChecksumHeaders {
  /** X-Docker-Checksum-Payload: sha256 of json + "\n" + layer. */
  payload: string | undefined;
  /** X-Docker-Checksum: TarSum of the layer with the json as prefix. */
  tarsum: string | undefined;
}

export class V1LocalRegistry {
  constructor(
    readonly images: V1ImageStore,
    private readonly blobs: BlobStore,
    private readonly metadata: MetadataStore,
    private readonly privateContent: PrivateContent,
    private readonly v2: LocalRegistry,
  ) {}

  // ---- images ----------------------------------------------------------------------------

  /** A pushed image, complete or not (routes decide what an unfinished one answers). */
  async image(id: string): Promise<V1ImageRecord | undefined> {
    return this.images.get(assertImageId(id));
  }

  async putJson(id: string, bytes: Buffer): Promise<void> {
    assertImageId(id);
    if (bytes.length > MAX_MANIFEST_BYTES) throw new V1Error(413, `image JSON over ${MAX_MANIFEST_BYTES} bytes`);
    const json = parseImageJson(bytes);
    if (json.id !== id) throw new V1Error(400, `JSON "id" (${String(json.id)}) does not match the image id in the URL`);
    let parent: V1ImageRecord | undefined;
    if (json.parent !== undefined && json.parent !== '') {
      if (typeof json.parent !== 'string') throw new V1Error(400, 'JSON "parent" must be a string');
      parent = await this.images.getComplete(assertImageId(json.parent));
      if (!parent) throw new V1Error(400, 'Image depends on a non existing parent');
    }
    await this.images.update(id, (existing) => {
      if (existing?.complete) throw new V1Error(409, ALREADY_EXISTS);
      // The same json again (a second client pushing the same image) keeps the upload's
      // progress; different bytes restart it, as in the Python registry.
      if (existing && existing.json === bytes.toString('base64')) return undefined;
      return {
        id,
        ...(parent ? { parent: parent.id } : {}),
        json: bytes.toString('base64'),
        ancestry: [id, ...(parent?.ancestry ?? [])],
        complete: false,
      };
    });
  }

  /**
   * Streams a layer into the blob store while computing both checksums. The image stays
   * invisible until putChecksum accepts them.
   */
  async putLayer(id: string, body: AsyncIterable<Buffer>): Promise<void> {
    const started = await this.image(id);
    if (!started) throw new V1Error(404, 'Image not found: PUT its json first');
    const json = imageJsonBytes(started);
    const payload = payloadHash(json);
    // A complete image needs no TarSum: its upload can only be a repeat of the same layer.
    const tarsum = started.complete ? undefined : new TarSumCalculator();
    let stored: PushedBlob;
    try {
      // Marked private before the layer is visible in the store: a crash at any point leaves
      // it invisible or marked, never a private layer that eviction or a mirrored name could take.
      stored = await storePushedBlob(this.blobs, body, {
        observe: async (chunk) => {
          payload.update(chunk);
          await tarsum?.write(chunk);
        },
        beforeVisible: (digest, size) => this.privateContent.add(digest, size),
      });
    } catch (error) {
      tarsum?.abort();
      throw error;
    }
    const digest = stored.digest.text;
    const size = stored.size;
    const sums = await tarsum?.end();
    await this.images.update(id, (current) => {
      if (current?.complete) {
        // Two clients pushing one image: the slower one's identical layer is a success.
        if (current.layer?.digest === digest) return undefined;
        throw new V1Error(409, ALREADY_EXISTS);
      }
      if (!current || current.json !== started.json || sums === undefined) {
        throw new V1Error(409, 'the image json changed during this layer upload; push it again');
      }
      current.layer = { digest, size };
      const computedPayload = payloadChecksum(payload);
      current.computed = sums instanceof Error ? { payload: computedPayload, tarsums: [], tarsumError: sums.message } : { payload: computedPayload, tarsums: tarSums(sums, json) };
      return current;
    });
  }

  /** Compares the client's checksums with what the layer upload computed; success publishes. */
  async putChecksum(id: string, claimed: ChecksumHeaders): Promise<void> {
    assertImageId(id);
    if (claimed.payload === undefined && claimed.tarsum === undefined) {
      throw new V1Error(412, 'missing checksum: send X-Docker-Checksum-Payload (and X-Docker-Checksum)');
    }
    await this.images.update(id, (record) => {
      if (!record) throw new V1Error(404, 'Image not found');
      const computed = record.computed;
      if (record.complete) {
        // A second client confirming the same checksums (concurrent push of one image).
        if (computed && matches(claimed, computed)) return undefined;
        throw new V1Error(409, 'Cannot set this image checksum: the image is complete');
      }
      if (!record.layer || !computed) throw new V1Error(400, 'no layer uploaded for this image yet');
      if (claimed.payload !== undefined && claimed.payload !== computed.payload) {
        throw new V1Error(400, `Checksum mismatch: X-Docker-Checksum-Payload ${claimed.payload} is not the sha256 of json + "\\n" + layer`);
      }
      if (claimed.tarsum !== undefined) {
        if (!/^tarsum\+sha256:/.test(claimed.tarsum)) throw new V1Error(400, `unsupported checksum "${claimed.tarsum}": only tarsum+sha256 (TarSum v0) is verified`);
        if (computed.tarsumError) throw new V1Error(400, `Checksum mismatch: the layer is not a tar archive TarSum can read (${computed.tarsumError})`);
        if (!computed.tarsums.includes(claimed.tarsum)) throw new V1Error(400, `Checksum mismatch: X-Docker-Checksum ${claimed.tarsum} is not the TarSum of this layer`);
      }
      record.complete = true;
      record.computed = { payload: computed.payload, tarsums: computed.tarsums };
      return record;
    });
  }

  async openLayer(record: V1ImageRecord): Promise<BlobHandle> {
    const handle = record.layer ? await this.blobs.open(parseDigest(record.layer.digest)) : undefined;
    if (!handle) throw new V1Error(404, `layer of image ${record.id} is missing from storage`);
    return handle;
  }

  // ---- repositories ----------------------------------------------------------------------

  private async index(repository: string): Promise<RepositoryIndex | undefined> {
    return this.metadata.get<RepositoryIndex>(metadataKeys.v1RepositoryIndex(repository));
  }

  private async addImages(repository: string, ids: readonly string[]): Promise<void> {
    await this.metadata.update<RepositoryIndex>(metadataKeys.v1RepositoryIndex(repository), (index) => {
      const images = new Set(index?.images ?? []);
      for (const id of ids) images.add(id);
      return { images: [...images] };
    });
  }

  /** PUT /v1/repositories/NS/REPO/: the images this push is about to upload. */
  async declareImages(repository: string, entries: readonly ImageListEntry[]): Promise<void> {
    await this.addImages(repository, entries.map((e) => e.id));
  }

  async exists(repository: string): Promise<boolean> {
    return (await this.index(repository)) !== undefined;
  }

  /** The repository's images (undefined: no such repository). */
  async repositoryImages(repository: string): Promise<string[] | undefined> {
    return (await this.index(repository))?.images;
  }

  async contains(repository: string, id: string): Promise<boolean> {
    return ((await this.index(repository))?.images ?? []).includes(id);
  }

  async tags(repository: string): Promise<Record<string, string> | undefined> {
    if (!(await this.exists(repository))) return undefined;
    const tags: Record<string, string> = {};
    for (const tag of (await this.metadata.list(metadataKeys.v1RepositoryTags(repository))).filter(isValidV1Tag).sort()) {
      const record = await this.metadata.get<{ id: string }>(metadataKeys.v1RepositoryTag(repository, tag));
      if (record) tags[tag] = record.id;
    }
    return tags;
  }

  async tag(repository: string, tag: string): Promise<string | undefined> {
    if (!isValidV1Tag(tag)) throw new V1Error(400, `invalid tag "${tag}"`);
    return (await this.metadata.get<{ id: string }>(metadataKeys.v1RepositoryTag(repository, tag)))?.id;
  }

  /**
   * Points a tag at a complete image. The image's chain joins the repository, and its layers
   * are linked for v2, so `HEAD /v2/NS/REPO/blobs/<digest>` finds a layer pushed with v1.
   */
  async putTag(repository: string, tag: string, id: string): Promise<void> {
    if (!isValidV1Tag(tag)) throw new V1Error(400, `invalid tag "${tag}"`);
    const image = await this.images.getComplete(assertImageId(id));
    if (!image) throw new V1Error(404, 'Image not found');
    for (const ancestor of image.ancestry) {
      const record = await this.images.getComplete(ancestor);
      if (record?.layer) await this.v2.linkBlob(repository, parseDigest(record.layer.digest), record.layer.size);
    }
    await this.addImages(repository, image.ancestry);
    await this.metadata.put(metadataKeys.v1RepositoryTag(repository, tag), { id, updated: new Date().toISOString() });
  }

  async deleteTag(repository: string, tag: string): Promise<void> {
    if (!isValidV1Tag(tag)) throw new V1Error(400, `invalid tag "${tag}"`);
    if (!(await this.metadata.delete(metadataKeys.v1RepositoryTag(repository, tag)))) throw new V1Error(404, `Tag not found: ${tag}`);
  }

  /** Drops the repository's tags and image list; images and layers stay (other repositories may share them). */
  async deleteRepository(repository: string): Promise<void> {
    if (!(await this.exists(repository))) throw new V1Error(404, 'Repository not found');
    for (const tag of await this.metadata.list(metadataKeys.v1RepositoryTags(repository))) await this.metadata.delete(metadataKeys.v1RepositoryTag(repository, tag));
    await this.metadata.delete(metadataKeys.v1RepositoryIndex(repository));
  }

  /** Every v1 repository ("ns/repo"), sorted. */
  async list(): Promise<string[]> {
    const found: string[] = [];
    for (const namespace of await this.metadata.list(metadataKeys.v1RepositoriesRoot)) {
      for (const name of await this.metadata.list(`${metadataKeys.v1RepositoriesRoot}/${namespace}`)) {
        if (await this.exists(`${namespace}/${name}`)) found.push(`${namespace}/${name}`);
      }
    }
    return found.sort();
  }
}

function matches(claimed: ChecksumHeaders, computed: NonNullable<V1ImageRecord['computed']>): boolean {
  return (claimed.payload === undefined || claimed.payload === computed.payload) && (claimed.tarsum === undefined || computed.tarsums.includes(claimed.tarsum));
}

function parseImageJson(bytes: Buffer): { id?: unknown; parent?: unknown } {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new V1Error(400, `invalid image JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new V1Error(400, 'image JSON must be an object');
  return json;
}
