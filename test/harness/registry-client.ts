// Minimal Distribution API client for test set-up and assertions (plain HTTP to 127.0.0.1).
import { createReadStream } from 'node:fs';
import { request } from 'undici';
import { sha256Digest } from './digests.js';

export const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/**
 * Every manifest type we deal in. The Go registry needs this: without an Accept it rewrites
 * Docker schema2 manifests to schema1, and it answers 404 for OCI manifests not accepted.
 */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.dockerManifest,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.ociIndex,
].join(', ');

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export interface FetchedManifest {
  status: number;
  /** Content-Type as served. */
  mediaType: string | undefined;
  /** Docker-Content-Digest as served. */
  dockerContentDigest: string | undefined;
  bytes: Buffer;
  /** sha256 of the bytes actually received. */
  digest: string;
}

/** GET /v2/<repo>/manifests/<ref> with the full Accept list. Does not throw on non-2xx. */
export async function fetchManifest(
  registryUrl: string,
  repo: string,
  ref: string,
  options: { method?: 'GET' | 'HEAD'; accept?: string; headers?: Record<string, string> } = {},
): Promise<FetchedManifest> {
  const response = await request(`${registryUrl}/v2/${repo}/manifests/${ref}`, {
    method: options.method ?? 'GET',
    headers: { accept: options.accept ?? MANIFEST_ACCEPT, ...options.headers },
  });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  return {
    status: response.statusCode,
    mediaType: headerValue(response.headers['content-type']),
    dockerContentDigest: headerValue(response.headers['docker-content-digest']),
    bytes,
    digest: sha256Digest(bytes),
  };
}

/** GET /v2/<repo>/blobs/<digest>, fully buffered (test-sized blobs only). */
export async function fetchBlob(registryUrl: string, repo: string, digest: string): Promise<{ status: number; bytes: Buffer }> {
  const response = await request(`${registryUrl}/v2/${repo}/blobs/${digest}`);
  return { status: response.statusCode, bytes: Buffer.from(await response.body.arrayBuffer()) };
}

async function failure(what: string, response: { statusCode: number; body: { text(): Promise<string> } }): Promise<Error> {
  const text = await response.body.text();
  return new Error(`${what}: HTTP ${response.statusCode}: ${text.slice(0, 500)}`);
}

/**
 * Monolithic blob upload: POST /v2/<repo>/blobs/uploads/ for a session, then one
 * PUT <Location>&digest=... carrying the whole blob (streamed from `source` if it is a path).
 */
export async function uploadBlob(
  registryUrl: string,
  repo: string,
  digest: string,
  source: Buffer | { path: string; size: number },
  extraHeaders: Record<string, string> = {},
): Promise<void> {
  const start = await request(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { ...extraHeaders, 'content-length': '0' } });
  if (start.statusCode !== 202) throw await failure(`starting blob upload to ${repo}`, start);
  await start.body.dump();
  const location = headerValue(start.headers.location);
  if (location === undefined) throw new Error(`blob upload to ${repo}: 202 without a Location header`);
  // Location may be relative or absolute; it already carries a query (_state=...).
  const target = new URL(location, registryUrl);
  target.searchParams.set('digest', digest);
  const size = Buffer.isBuffer(source) ? source.length : source.size;
  const put = await request(target, {
    method: 'PUT',
    headers: { ...extraHeaders, 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: Buffer.isBuffer(source) ? source : createReadStream(source.path),
  });
  if (put.statusCode !== 201) throw await failure(`finishing blob upload of ${digest} to ${repo}`, put);
  await put.body.dump();
}

/** PUT /v2/<repo>/manifests/<ref>; returns the Docker-Content-Digest the registry answered. */
export async function putManifest(
  registryUrl: string,
  repo: string,
  ref: string,
  bytes: Buffer,
  mediaType: string,
  extraHeaders: Record<string, string> = {},
): Promise<string> {
  const response = await request(`${registryUrl}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    headers: { ...extraHeaders, 'content-type': mediaType, 'content-length': String(bytes.length) },
    body: bytes,
  });
  if (response.statusCode !== 201) throw await failure(`putting manifest ${repo}:${ref} (${mediaType})`, response);
  await response.body.dump();
  const digest = headerValue(response.headers['docker-content-digest']);
  if (digest === undefined) throw new Error(`putting manifest ${repo}:${ref}: 201 without Docker-Content-Digest`);
  return digest;
}
