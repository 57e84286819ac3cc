// v2 for private repositories: pulls, pushes (monolithic, single-POST and chunked uploads,
// mounts), manifest PUT with referrers and deletes. Bodies are read from the
// raw request stream: layers are streamed to disk, manifests are read with a bound.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { parseDigest } from '../../protocol/digest.js';
import { RegistryError } from '../../protocol/errors.js';
import { MAX_MANIFEST_BYTES } from '../../protocol/limits.js';
import { readBounded, requestBodyMemory } from '../../util/read-bounded.js';
import { sendableBlob } from '../../storage/blob-store.js';
import { MediaType } from '../../protocol/media-types.js';
import type { LocalRegistry } from '../../registry/local-registry.js';
import { paginate } from '../../protocol/pagination.js';
import type { UploadSessions, UploadStatus } from '../../registry/uploads.js';
import { blobHeaders, sendBlob } from '../blob-response.js';
import { sendManifest, sendTagPage } from './responses.js';

/** Who is uploading: the session owner (per-user bound) and what they may read (mount sources). */
export interface UploadClient {
  /** The authenticated user; undefined: anonymous. */
  user: string | undefined;
  mayRead: (repository: string) => Promise<boolean>;
}

export interface LocalOptions {
  /** storage.delete: whether DELETE of manifests and blobs is allowed. */
  deleteEnabled: boolean;
}

function body(request: FastifyRequest): Readable {
  return request.raw;
}

function declaredLength(request: FastifyRequest): number | undefined {
  const value = request.headers['content-length'];
  return value === undefined ? undefined : Number(value);
}

/** "start-end" (the spec's form) or "bytes=start-end"; anything else is a 416. */
function contentRange(request: FastifyRequest, status: UploadStatus): { start: number; end: number } | undefined {
  const header = request.headers['content-range'];
  if (header === undefined) return undefined;
  const match = /^(?:bytes[= ])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(header.trim());
  if (!match || Number(match[2]) < Number(match[1])) {
    throw new RegistryError('RANGE_INVALID', `invalid Content-Range "${header}"`, { status: 416, headers: { range: `0-${Math.max(status.offset - 1, 0)}` } });
  }
  return { start: Number(match[1]), end: Number(match[2]) };
}

async function readManifestBody(request: FastifyRequest): Promise<Buffer> {
  return readBounded(
    body(request) as AsyncIterable<Buffer>,
    MAX_MANIFEST_BYTES,
    () => new RegistryError('MANIFEST_INVALID', `manifest is larger than the ${MAX_MANIFEST_BYTES}-byte limit`, { status: 413 }),
    { memory: requestBodyMemory, exhausted: () => new RegistryError('UNAVAILABLE', 'too many request bodies are being received; retry shortly', { headers: { 'retry-after': '1' } }) },
  );
}

export class LocalHandlers {
  constructor(
    private readonly local: LocalRegistry,
    private readonly uploads: UploadSessions,
    private readonly options: LocalOptions,
  ) {}

  private uploadHeaders(reply: FastifyReply, name: string, status: UploadStatus): FastifyReply {
    return reply.headers({
      location: `/v2/${name}/blobs/uploads/${status.id}`,
      range: `0-${Math.max(status.offset - 1, 0)}`,
      'docker-upload-uuid': status.id,
      'blob-upload-session-id': status.id,
      'content-length': '0',
    });
  }

  private created(reply: FastifyReply, name: string, digest: string): FastifyReply {
    return reply.code(201).headers({ location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': '0' }).send();
  }

  private requireDelete(): void {
    if (!this.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled (storage.delete: false)');
  }

  async manifest(request: FastifyRequest, reply: FastifyReply, name: string, reference: string): Promise<FastifyReply> {
    switch (request.method) {
      case 'GET':
      case 'HEAD':
        return sendManifest(request, reply, await this.local.getManifest(name, reference));
      case 'PUT': {
        const bytes = await readManifestBody(request);
        const result = await this.local.putManifest(name, reference, bytes, request.headers['content-type']);
        if (result.subject) reply.header('oci-subject', result.subject);
        return reply
          .code(201)
          .headers({ location: `/v2/${name}/manifests/${result.digest}`, 'docker-content-digest': result.digest, 'content-length': '0' })
          .send();
      }
      case 'DELETE':
        this.requireDelete();
        await this.local.deleteManifest(name, reference);
        return reply.code(202).send();
      default:
        throw methodNotAllowed(request);
    }
  }

  async blob(request: FastifyRequest, reply: FastifyReply, name: string, digest: string): Promise<FastifyReply> {
    switch (request.method) {
      case 'HEAD': {
        const { size } = await this.local.statBlob(name, digest);
        return blobHeaders(reply, digest, size).send();
      }
      case 'GET': {
        const handle = await this.local.openBlob(name, digest);
        return sendBlob(request, reply, digest, sendableBlob(handle));
      }
      case 'DELETE':
        this.requireDelete();
        await this.local.deleteBlob(name, digest);
        return reply.code(202).send();
      default:
        throw methodNotAllowed(request);
    }
  }

  async upload(request: FastifyRequest, reply: FastifyReply, name: string, uploadId: string | undefined, client: UploadClient): Promise<FastifyReply> {
    if (uploadId === undefined) {
      if (request.method !== 'POST') throw methodNotAllowed(request);
      return this.startUpload(request, reply, name, client);
    }
    switch (request.method) {
      case 'GET':
        return this.uploadHeaders(reply.code(204), name, this.uploads.status(name, uploadId)).send();
      case 'PATCH': {
        const range = contentRange(request, this.uploads.status(name, uploadId));
        const status = await this.uploads.append(name, uploadId, body(request), range, range ? undefined : declaredLength(request));
        return this.uploadHeaders(reply.code(202), name, status).send();
      }
      case 'PUT': {
        const digest = (request.query as { digest?: string | string[] }).digest;
        const digestText = Array.isArray(digest) ? digest[0] : digest;
        if (!digestText) throw new RegistryError('DIGEST_INVALID', 'PUT to an upload needs ?digest=');
        const status = this.uploads.status(name, uploadId);
        const length = declaredLength(request);
        if (length !== 0 && (length !== undefined || request.headers['transfer-encoding'])) {
          await this.uploads.append(name, uploadId, body(request), contentRange(request, status), length);
        }
        const { digest: stored, size } = await this.uploads.finish(name, uploadId, digestText);
        await this.local.linkBlob(name, stored, size);
        return this.created(reply, name, stored.text);
      }
      case 'DELETE':
        await this.uploads.cancel(name, uploadId);
        return reply.code(204).send();
      default:
        throw methodNotAllowed(request);
    }
  }

  private async startUpload(request: FastifyRequest, reply: FastifyReply, name: string, client: UploadClient): Promise<FastifyReply> {
    const query = request.query as { mount?: string; from?: string; digest?: string };
    if (query.mount) {
      if (await this.local.mount(name, query.mount, query.from, client.mayRead)) return this.created(reply, name, query.mount);
      // The spec: an unsuccessful mount falls back to an ordinary upload session.
    }
    // Checked before a session exists: a bad digest must not leave one behind (issue 14).
    if (query.digest !== undefined) parseDigest(query.digest);
    const status = await this.uploads.start(name, client.user);
    if (query.digest) {
      // Single-POST (monolithic) upload: the body is the whole blob. The session lives only
      // for this request; whatever goes wrong, it is gone when the request is.
      try {
        await this.uploads.append(name, status.id, body(request), undefined, declaredLength(request));
        const { digest, size } = await this.uploads.finish(name, status.id, query.digest);
        await this.local.linkBlob(name, digest, size);
        return this.created(reply, name, digest.text);
      } finally {
        await this.uploads.cancel(name, status.id).catch(() => undefined);
      }
    }
    return this.uploadHeaders(reply.code(202), name, status).send();
  }

  async tags(request: FastifyRequest, reply: FastifyReply, name: string): Promise<FastifyReply> {
    const tags = await this.local.listTags(name);
    if (!tags) throw new RegistryError('NAME_UNKNOWN', `repository ${name} not found`, { detail: { name } });
    return sendTagPage(request, reply, name, (n, last) => paginate(tags, n, last));
  }

  async referrers(request: FastifyRequest, reply: FastifyReply, name: string, digest: string): Promise<FastifyReply> {
    const artifactType = (request.query as { artifactType?: string }).artifactType;
    const manifests = await this.local.referrers(name, digest, artifactType);
    if (artifactType !== undefined) reply.header('oci-filters-applied', 'artifactType');
    reply.header('content-type', MediaType.ociIndex);
    // A Buffer, so the Content-Type stays exactly the index media type (no charset added).
    return reply.send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests })));
  }
}

function methodNotAllowed(request: FastifyRequest): RegistryError {
  return new RegistryError('UNSUPPORTED', `${request.method} is not supported here`);
}
