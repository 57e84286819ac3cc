// What the pull-through policy needs from a v2 upstream. The Distribution-API client
// implements it; tests and future upstream kinds can provide their own.
import type { Readable } from 'node:stream';

export interface UpstreamBlob {
  /** From Content-Length; undefined when the upstream streams without one. */
  size: number | undefined;
  body: Readable;
}

export interface UpstreamManifest {
  bytes: Buffer;
  mediaType: string;
  /** Docker-Content-Digest as the upstream stated it, if it did. */
  statedDigest: string | undefined;
}

export interface UpstreamManifestHead {
  digest: string | undefined;
  mediaType: string | undefined;
  size: number | undefined;
}

export interface UpstreamRegistry {
  readonly name: string;
  /** Registry hosts this upstream answers for (containerd's ?ns=, name prefixes). */
  readonly hosts: readonly string[];
  readonly isDefault: boolean;
  readonly libraryPrefix: boolean;
  readonly tagTtlMs: number;

  /**
   * undefined: the upstream says the blob does not exist. Throws UpstreamError otherwise.
   * `expectedSize` (from a descriptor), when known, bounds a body sent without Content-Length.
   */
  fetchBlob(repository: string, digest: string, expectedSize?: number): Promise<UpstreamBlob | undefined>;
  headBlob(repository: string, digest: string): Promise<{ size: number | undefined } | undefined>;
  getManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifest | undefined>;
  headManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifestHead | undefined>;
  listTags(repository: string): Promise<string[] | undefined>;
  close(): Promise<void>;
}
