// Private repositories stored here (v2 pushes): per-repository links to the shared
// content-addressed blob store, manifests, tags and referrers. Everything stored through it
// is registered as private content, so it is never evicted, never garbage-collected by the
// mirror's rules and never sent upstream. A blob or manifest is reachable only through a
// repository that links it: knowing a digest is not enough to read another team's image.
import { parseDigest, digestOf, type Digest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import { parseManifest, type Descriptor } from '../protocol/manifest.js';
import { MediaType, sniffManifestMediaType } from '../protocol/media-types.js';
import { isValidTag, parseManifestReference } from '../protocol/reference.js';
import type { PrivateContent } from '../coordination/ports.js';
import type { BlobHandle, BlobStore } from '../storage/blob-store.js';
import { metadataKeys } from '../storage/keys.js';
import type { ManifestStore, StoredManifest } from '../storage/manifest-store.js';
import { DELETE_RECORD, type MetadataStore } from '../storage/metadata-store.js';
import { publishInMemory } from './staged-push.js';

const PUSHABLE_MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList]);

interface ReferrerRecord {
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface PutManifestResult {
  digest: string;
  subject: string | undefined;
}

export class LocalRegistry {
  constructor(
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
    private readonly metadata: MetadataStore,
    private readonly privateContent: PrivateContent,
  ) {}

  // ---- blobs ---------------------------------------------------------------------------

  /** The blob's size when the repository links it and the store holds it. */
  private async linkedStat(repository: string, digest: Digest): Promise<{ size: number } | undefined> {
    return (await this.isLinked(repository, digest)) ? this.blobs.stat(digest) : undefined;
  }

  private async isLinked(repository: string, digest: Digest): Promise<boolean> {
    return (await this.metadata.get(metadataKeys.localLayer(repository, digest))) !== undefined;
  }

  async hasBlob(repository: string, digest: Digest): Promise<boolean> {
    return (await this.linkedStat(repository, digest)) !== undefined;
  }

  async statBlob(repository: string, digestText: string): Promise<{ size: number }> {
    const digest = parseDigest(digestText);
    const stat = await this.linkedStat(repository, digest);
    if (!stat) throw blobUnknown(repository, digest.text);
    return stat;
  }

  async openBlob(repository: string, digestText: string): Promise<BlobHandle> {
    const digest = parseDigest(digestText);
    // A link is enough: open() itself finds out whether the file is there.
    const handle = (await this.isLinked(repository, digest)) ? await this.blobs.open(digest) : undefined;
    if (!handle) throw blobUnknown(repository, digest.text);
    return handle;
  }

  /** Makes a stored blob part of a repository (after an upload or a mount). */
  async linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    await this.privateContent.add(digest, size);
    await this.metadata.put(metadataKeys.localLayer(repository, digest), { size });
  }

  /**
   * Cross-repository mount: true when `from` (or, without it, a repository of the same
   * namespace) holds the blob and it is now linked here too. Only sources the client may
   * read count: knowing a digest must not be enough to copy it out of another repository.
   */
  async mount(repository: string, digestText: string, from: string | undefined, mayRead: (source: string) => Promise<boolean>): Promise<boolean> {
    const digest = parseDigest(digestText);
    const sources = from ? [from] : await this.repositoriesInNamespace(repository);
    for (const source of sources) {
      const stat = await this.linkedStat(source, digest);
      if (stat && (await mayRead(source))) {
        await this.linkBlob(repository, digest, stat.size);
        return true;
      }
    }
    return false;
  }

  async deleteBlob(repository: string, digestText: string): Promise<void> {
    const digest = parseDigest(digestText);
    // Unlinked from this repository; the bytes stay while other repositories may link them.
    if (!(await this.metadata.delete(metadataKeys.localLayer(repository, digest)))) throw blobUnknown(repository, digest.text);
  }

  // ---- manifests -----------------------------------------------------------------------

  async putManifest(repository: string, reference: string, bytes: Buffer, contentType: string | undefined): Promise<PutManifestResult> {
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw new RegistryError('MANIFEST_INVALID', `manifest is ${bytes.byteLength} bytes; the limit is ${MAX_MANIFEST_BYTES}`, { status: 413 });
    }
    const ref = parseManifestReference(reference);
    const mediaType = manifestMediaType(bytes, contentType);
    const digest = parseDigest(digestOf(bytes, ref.kind === 'digest' ? ref.digest.algorithm : 'sha256'));
    if (ref.kind === 'digest' && ref.digest.text !== digest.text) {
      throw new RegistryError('DIGEST_INVALID', `manifest content has digest ${digest.text}, not ${ref.digest.text}`, { detail: { digest: ref.digest.text } });
    }
    const parsed = parseManifest(bytes, mediaType);
    if (parsed.kind === 'other') throw new RegistryError('MANIFEST_INVALID', `not an image manifest or index (${mediaType})`);
    const missing: string[] = [];
    if (parsed.kind === 'index') {
      for (const child of parsed.manifests) if (!(await this.hasManifest(repository, child.digest))) missing.push(child.digest);
      if (missing.length > 0) {
        // The Go registry's code for this case too: a child manifest is a blob of the index.
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `index references manifests not in ${repository}: ${missing.join(', ')}`, { detail: { digests: missing } });
      }
    } else {
      for (const blob of [parsed.config, ...parsed.layers]) if (!(await this.hasBlob(repository, parseDigest(blob.digest)))) missing.push(blob.digest);
      if (missing.length > 0) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `manifest references blobs not in ${repository}: ${missing.join(', ')}`, { detail: { digests: missing } });
      }
    }

    // Marked private before the bytes can be read: a crash in between leaves a mark on nothing
    // (harmless), never a private manifest readable through a mirrored name.
    await publishInMemory(
      { digest, size: bytes.byteLength },
      (marked, size) => this.privateContent.add(marked, size),
      () => this.manifests.put(digest, bytes, mediaType),
    );
    await this.metadata.put(metadataKeys.localManifest(repository, digest), { mediaType, size: bytes.byteLength });
    if (ref.kind === 'tag') await this.metadata.put(metadataKeys.localTag(repository, ref.tag), { digest: digest.text });

    const document = JSON.parse(bytes.toString('utf8')) as { subject?: Descriptor; artifactType?: string; annotations?: Record<string, string>; config?: Descriptor };
    const subject = document.subject?.digest;
    if (subject) {
      const subjectDigest = parseDigest(subject);
      const record: ReferrerRecord = {
        mediaType,
        size: bytes.byteLength,
        artifactType: document.artifactType ?? (parsed.kind === 'image' ? parsed.config.mediaType : undefined),
        annotations: document.annotations,
      };
      await this.metadata.put(metadataKeys.localReferrer(repository, subjectDigest, digest.text), record);
    }
    return { digest: digest.text, subject };
  }

  private async hasManifest(repository: string, digestText: string): Promise<boolean> {
    const digest = parseDigest(digestText);
    return (await this.metadata.get(metadataKeys.localManifest(repository, digest))) !== undefined;
  }

  async resolve(repository: string, reference: string): Promise<Digest> {
    const ref = parseManifestReference(reference);
    if (ref.kind === 'digest') {
      if (!(await this.hasManifest(repository, ref.digest.text))) throw manifestUnknown(repository, reference);
      return ref.digest;
    }
    const tag = await this.metadata.get<{ digest: string }>(metadataKeys.localTag(repository, ref.tag));
    if (!tag) throw manifestUnknown(repository, reference);
    return parseDigest(tag.digest);
  }

  async getManifest(repository: string, reference: string): Promise<StoredManifest> {
    const digest = await this.resolve(repository, reference);
    const manifest = await this.manifests.get(digest);
    if (!manifest) throw manifestUnknown(repository, reference);
    return manifest;
  }

  /** By digest: the manifest, every tag on it, and its referrer entry. By tag: the tag only. */
  async deleteManifest(repository: string, reference: string): Promise<void> {
    const ref = parseManifestReference(reference);
    if (ref.kind === 'tag') {
      if (!(await this.metadata.delete(metadataKeys.localTag(repository, ref.tag)))) throw manifestUnknown(repository, reference);
      return;
    }
    const digest = ref.digest;
    const manifest = await this.manifests.get(digest);
    if (!(await this.metadata.delete(metadataKeys.localManifest(repository, digest)))) throw manifestUnknown(repository, reference);
    for (const tag of await this.metadata.list(metadataKeys.localTags(repository))) {
      // Under the tag's lock: a tag moved to another manifest meanwhile stays.
      await this.metadata.update<{ digest: string }>(metadataKeys.localTag(repository, tag), (record) => (record?.digest === digest.text ? DELETE_RECORD : undefined));
    }
    if (manifest) {
      const subject = (JSON.parse(manifest.bytes.toString('utf8')) as { subject?: Descriptor }).subject?.digest;
      if (subject) {
        const s = parseDigest(subject);
        await this.metadata.delete(metadataKeys.localReferrer(repository, s, digest.text));
      }
    }
  }

  // ---- discovery -----------------------------------------------------------------------

  async listTags(repository: string): Promise<string[] | undefined> {
    const tags = (await this.metadata.list(metadataKeys.localTags(repository))).filter(isValidTag);
    if (tags.length === 0 && !(await this.exists(repository))) return undefined;
    return tags.sort();
  }

  private async exists(repository: string): Promise<boolean> {
    const entries = await this.metadata.list(metadataKeys.localRepository(repository));
    return entries.some((e) => e === '_manifests' || e === '_layers' || e === '_tags');
  }

  /** Every private repository, sorted. */
  async catalog(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (prefix: string[]): Promise<void> => {
      const entries = await this.metadata.list([metadataKeys.localRoot, ...prefix].join('/'));
      if (entries.some((e) => e.startsWith('_'))) found.push(prefix.join('/'));
      for (const entry of entries) if (!entry.startsWith('_')) await walk([...prefix, entry]);
    };
    await walk([]);
    return found.filter(Boolean).sort();
  }

  async referrers(repository: string, subjectText: string, artifactType: string | undefined): Promise<Descriptor[]> {
    const subject = parseDigest(subjectText);
    const prefix = metadataKeys.localReferrers(repository, subject);
    const descriptors: Descriptor[] = [];
    for (const digest of await this.metadata.list(prefix)) {
      const record = await this.metadata.get<ReferrerRecord>(metadataKeys.localReferrer(repository, subject, digest));
      if (!record) continue;
      if (artifactType !== undefined && record.artifactType !== artifactType) continue;
      const descriptor: Descriptor & { artifactType?: string } = { mediaType: record.mediaType, digest, size: record.size };
      if (record.artifactType) descriptor.artifactType = record.artifactType;
      if (record.annotations) descriptor.annotations = record.annotations;
      descriptors.push(descriptor);
    }
    return descriptors.sort((a, b) => a.digest.localeCompare(b.digest));
  }

  private async repositoriesInNamespace(repository: string): Promise<string[]> {
    const namespace = repository.split('/')[0];
    return (await this.catalog()).filter((r) => r !== repository && r.split('/')[0] === namespace);
  }
}

function manifestMediaType(bytes: Buffer, contentType: string | undefined): string {
  const declared = contentType?.split(';')[0]?.trim().toLowerCase();
  let document: { mediaType?: unknown };
  try {
    document = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
  } catch (error) {
    throw new RegistryError('MANIFEST_INVALID', `manifest is not valid JSON: ${(error as Error).message}`);
  }
  const inside = typeof document.mediaType === 'string' ? document.mediaType : undefined;
  if (declared && inside && declared !== inside) {
    throw new RegistryError('MANIFEST_INVALID', `Content-Type ${declared} does not match the manifest's mediaType ${inside}`);
  }
  const mediaType = declared && PUSHABLE_MANIFEST_TYPES.has(declared) ? declared : (inside ?? sniffManifestMediaType(bytes));
  if (!mediaType || !PUSHABLE_MANIFEST_TYPES.has(mediaType)) {
    throw new RegistryError('MANIFEST_INVALID', `unsupported manifest media type ${declared ?? inside ?? '(none)'}`);
  }
  return mediaType;
}

function blobUnknown(repository: string, digest: string): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', `blob ${digest} not found in ${repository}`, { detail: { digest } });
}

function manifestUnknown(repository: string, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest ${repository}:${reference} not found`, { detail: { name: repository, reference } });
}
