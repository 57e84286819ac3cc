// What the pull-through policy needs from an upstream: a v2 registry (the Distribution-API
// client implements it) and a v1 index + registry (the v1 client). Tests and future upstream
// kinds can provide their own; the circuit breaker wraps either.
import type { Readable } from 'node:stream';
import type { V1SearchResult } from '../protocol/v1.js';
import type { V1UpstreamAuth, V1UpstreamImageJson } from './v1-client.js';

export interface UpstreamBlob {
  /** From Content-Length; undefined when the upstream streams without one. */
  size: number | undefined;
  body: Readable;
  /** The Cache-Status header (RFC 9211), when the registry is a cache that sends one (a Longshore does). */
  cacheStatus?: string;
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

/** A v1 index and registry (docs: v1-protocol.md §8, §10). undefined: the upstream says it does not exist. */
export interface V1UpstreamRegistry {
  readonly name: string;
  /** Image ids of a repository (index call; also opens the repository's session). */
  repositoryImages(repository: string): Promise<string[] | undefined>;
  tags(repository: string): Promise<Record<string, string> | undefined>;
  tag(repository: string, tag: string): Promise<string | undefined>;
  imageJson(id: string, auth: V1UpstreamAuth): Promise<V1UpstreamImageJson | undefined>;
  ancestry(id: string, auth: V1UpstreamAuth): Promise<string[] | undefined>;
  /** `expectedSize` (X-Docker-Size), when known, bounds a body sent without Content-Length. */
  layer(id: string, auth: V1UpstreamAuth, expectedSize?: number): Promise<UpstreamBlob | undefined>;
  search(query: string, n: number): Promise<V1SearchResult[]>;
  close(): Promise<void>;
}
