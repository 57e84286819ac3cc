// The image routes of the v1 API (spec §5.5): /v1/images/ID/{json,layer,ancestry,checksum}.
// They name no repository, so who may see an image follows from the caller: a user sees
// every private image, a token only the images of its repository. Anything that is not a
// private image this caller may see goes to the mirror side, if one is configured.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { V1Access, V1Identity } from '../../auth/v1-access.js';
import { assertImageId, V1Error, type ImageResource } from '../../protocol/v1.js';
import type { V1LocalRegistry } from '../../registry/v1-registry.js';
import { imageJsonBytes, type V1ImageRecord } from '../../storage/v1-image-store.js';
import { sendableBlob, type SendableBlob } from '../../storage/blob-store.js';
import { sendBlob } from '../blob-response.js';
import { readRawBody, sendJson } from './http.js';

/** Serves image reads that are not private content (v1 pull-through); absent: 404. */
export interface MirroredImages {
  image(request: FastifyRequest, reply: FastifyReply, id: string, resource: Exclude<ImageResource, 'checksum'>, identity: V1Identity): Promise<FastifyReply>;
}

// Image content never changes for an id: cache like the Python registry did (§2).
const IMAGE_CACHE_HEADERS = {
  'cache-control': 'public, max-age=31536000',
  'last-modified': 'Thu, 01 Jan 1970 00:00:00 GMT',
};

export class V1ImageHandlers {
  constructor(
    private readonly access: V1Access,
    private readonly registry: V1LocalRegistry,
    private readonly mirrored: MirroredImages | undefined,
  ) {}

  async handle(request: FastifyRequest, reply: FastifyReply, id: string, resource: ImageResource, identity: V1Identity): Promise<FastifyReply> {
    assertImageId(id);
    if (request.method === 'PUT') return this.write(request, reply, id, resource, identity);
    if (resource === 'checksum') throw new V1Error(405, 'the checksum of an image is set with PUT');
    const record = await this.visiblePrivateImage(identity, id);
    if (record) {
      if (!record.complete) throw new V1Error(400, 'Image is being uploaded, retry later');
      return sendImage(request, reply, record, resource, async () => sendableBlob(await this.registry.openLayer(record)));
    }
    if (identity.kind === 'token' && this.access.policy.isPrivate(identity.repository)) {
      throw new V1Error(404, `Image not found in ${identity.repository}`);
    }
    if (identity.kind === 'foreign' && identity.claimedRepository !== undefined && this.access.policy.isPrivate(identity.claimedRepository)) {
      throw this.access.unauthorized('invalid or expired token');
    }
    if (!this.mirrored) throw new V1Error(404, 'Image not found');
    // A token we did not issue is the upstream's to judge (the mirror side asks it); anyone
    // else needs the policy's leave to read mirrored content at all.
    if (identity.kind !== 'foreign' && !this.access.readsMirrored(identity)) throw this.access.unauthorized('authentication required');
    return this.mirrored.image(request, reply, id, resource, identity);
  }

  /** The private image, if it exists and this caller may read it. */
  private async visiblePrivateImage(identity: V1Identity, id: string): Promise<V1ImageRecord | undefined> {
    if (!this.access.seesPrivateImages(identity)) return undefined;
    const record = await this.registry.image(id);
    if (!record) return undefined;
    if (identity.kind === 'token' && !(await this.registry.contains(identity.repository, id))) return undefined;
    return record;
  }

  private async write(request: FastifyRequest, reply: FastifyReply, id: string, resource: ImageResource, identity: V1Identity): Promise<FastifyReply> {
    await this.authorizeWrite(identity, id);
    switch (resource) {
      case 'json': {
        // Kept byte for byte: the payload checksum and clients' caches depend on them.
        await this.registry.putJson(id, await readRawBody(request));
        return sendJson(reply, 200, true);
      }
      case 'layer':
        await this.registry.putLayer(id, request.raw as AsyncIterable<Buffer>);
        return sendJson(reply, 200, true);
      case 'checksum':
        await this.registry.putChecksum(id, {
          payload: headerValue(request, 'x-docker-checksum-payload'),
          tarsum: headerValue(request, 'x-docker-checksum'),
        });
        return sendJson(reply, 200, true);
      case 'ancestry':
        throw new V1Error(405, 'ancestry is computed from the image json; it cannot be written');
    }
  }

  /**
   * Users may push any image; a write token only the images its push declared (PUT
   * /v1/repositories/NS/REPO/ lists them), so one repository's token cannot overwrite
   * another's unfinished upload.
   */
  private async authorizeWrite(identity: V1Identity, id: string): Promise<void> {
    switch (identity.kind) {
      case 'user':
        this.access.assertMayPush(identity.name);
        return;
      case 'token':
        this.access.authorizeRepository(identity, identity.repository, 'write');
        if (!(await this.registry.contains(identity.repository, id))) {
          throw new V1Error(403, `image ${id} was not declared for ${identity.repository} (PUT /v1/repositories/${identity.repository}/ lists the images of a push)`);
        }
        return;
      case 'foreign':
        throw this.access.unauthorized('invalid or expired token');
      case 'anonymous':
        throw this.access.unauthorized('pushing needs a login (docker login)');
    }
  }
}

/** json, ancestry or layer of an image record; shared by private and mirrored images. */
export async function sendImage(
  request: FastifyRequest,
  reply: FastifyReply,
  record: V1ImageRecord,
  resource: Exclude<ImageResource, 'checksum'>,
  openLayer: () => Promise<SendableBlob>,
): Promise<FastifyReply> {
  reply.headers(IMAGE_CACHE_HEADERS);
  // Clients require an integer here when it is present; an unknown size is left out.
  const size = record.layer?.size ?? record.layerSize;
  if (size !== undefined && size >= 0) reply.header('x-docker-size', String(size));
  switch (resource) {
    case 'json':
      if (record.computed) reply.header('x-docker-checksum-payload', record.computed.payload);
      return reply.header('content-type', 'application/json').send(imageJsonBytes(record));
    case 'ancestry':
      return reply.header('content-type', 'application/json').send(JSON.stringify(record.ancestry));
    case 'layer': {
      const blob = await openLayer();
      // The digest is known once the layer is stored; a v1 upstream's first fetch learns it at the end.
      return sendBlob(request, reply, record.layer?.digest, blob);
    }
  }
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
