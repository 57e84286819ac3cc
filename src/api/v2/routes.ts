// Registry v2 / OCI Distribution routes. Repository names contain slashes, so everything
// under /v2/ arrives at one wildcard route, is classified by protocol/reference.ts, checked
// by access control, and handed to the local (private) or the mirror handlers.
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import type { Action, NamespacePolicy } from '../../auth/policy.js';
import type { AccessControl, AccessRequest } from '../../auth/v2-access.js';
import { RegistryError } from '../../protocol/errors.js';
import { keepBodiesRaw } from '../raw-bodies.js';
import { assertRepositoryName, isValidRepositoryName, isValidTag, parseV2Path, type V2Route } from '../../protocol/reference.js';
import { looksLikeDigest } from '../../protocol/digest.js';
import type { Catalog } from './catalog.js';
import type { LocalHandlers } from './local-handlers.js';
import type { MirrorHandlers } from './mirror-handlers.js';

export interface V2Dependencies {
  mirrorHandlers: MirrorHandlers;
  localHandlers: LocalHandlers;
  catalog: Catalog;
  policy: NamespacePolicy;
  access: AccessControl;
  publicUrl: string | undefined;
}

const API_VERSION_HEADER = { 'docker-distribution-api-version': 'registry/2.0' };

const ROUTE_TEMPLATES: Record<V2Route['kind'], string> = {
  base: '/v2/',
  catalog: '/v2/_catalog',
  manifest: '/v2/:name/manifests/:reference',
  blob: '/v2/:name/blobs/:digest',
  upload: '/v2/:name/blobs/uploads/:id',
  tags: '/v2/:name/tags/list',
  referrers: '/v2/:name/referrers/:digest',
};
const READ_METHODS = new Set(['GET', 'HEAD']);

export function accessRequest(request: FastifyRequest, publicUrl: string | undefined): AccessRequest {
  return { headers: request.headers, baseUrl: publicUrl ?? `${request.protocol}://${request.host}`, clientAddress: request.ip, holder: request };
}

function actionsFor(method: string): Action[] {
  if (READ_METHODS.has(method)) return ['pull'];
  if (method === 'DELETE') return ['delete'];
  return ['pull', 'push'];
}

export function v2Routes(deps: V2Dependencies): FastifyPluginCallback {
  return (app, _options, done) => {
    keepBodiesRaw(app);

    const base = (request: FastifyRequest, reply: FastifyReply) => {
      reply.headers(API_VERSION_HEADER);
      return answerBase(deps, request, reply);
    };
    app.route({ method: ['GET', 'HEAD'], url: '/v2', handler: base });
    app.route({ method: ['GET', 'HEAD'], url: '/v2/', handler: base });
    app.route({
      method: ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'],
      url: '/v2/*',
      handler: (request, reply) => dispatch(deps, request, reply),
    });
    done();
  };
}

/**
 * A reference that is neither a tag nor a digest names no manifest: reading or deleting it
 * is a 404 MANIFEST_UNKNOWN, as with the reference registry (whose routes do not match such
 * a reference) and as the OCI conformance suite expects. A PUT still gets the 400.
 */
function assertReadableReference(method: string, name: string, reference: string): void {
  if (method === 'PUT' || isValidTag(reference) || looksLikeDigest(reference)) return;
  throw new RegistryError('MANIFEST_UNKNOWN', `manifest ${name}:${reference} not found: not a valid tag or digest`, { detail: { name, reference } });
}

/** GET /v2/: the API version check, and where `docker login` learns whether credentials work. */
async function answerBase(deps: V2Dependencies, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  await deps.access.authorizeBase(accessRequest(request, deps.publicUrl));
  return reply.send({});
}

async function dispatch(deps: V2Dependencies, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  reply.headers(API_VERSION_HEADER);
  const route = parseV2Path((request.params as { '*': string })['*']);
  if (!route) throw new RegistryError('UNSUPPORTED', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`, { status: 404 });
  request.routeTemplate = ROUTE_TEMPLATES[route.kind];
  const access = accessRequest(request, deps.publicUrl);
  if (route.kind === 'base') return answerBase(deps, request, reply);
  if (route.kind === 'catalog') {
    if (!READ_METHODS.has(request.method)) throw new RegistryError('UNSUPPORTED', `${request.method} is not supported on the catalog`);
    return deps.catalog.answer(request, reply, access);
  }

  const name = route.name;
  if (deps.policy.isPrivate(name)) {
    assertRepositoryName(name);
    const user = await deps.access.authorize(access, name, actionsFor(request.method));
    const local = deps.localHandlers;
    switch (route.kind) {
      case 'manifest':
        assertReadableReference(request.method, name, route.reference);
        return local.manifest(request, reply, name, route.reference);
      case 'blob':
        return local.blob(request, reply, name, route.digest);
      case 'upload': {
        const from = (request.query as { from?: unknown }).from;
        if (from !== undefined && (typeof from !== 'string' || !isValidRepositoryName(from))) {
          throw new RegistryError('NAME_INVALID', `invalid mount source ${JSON.stringify(from)}`, { detail: { from } });
        }
        // Mounting reads the source, so the client needs pull access there too; an automatic
        // mount (no `from`) only looks at repositories this client may pull.
        const mayRead = (source: string) =>
          deps.access.authorize(access, source, ['pull']).then(
            () => true,
            () => false,
          );
        return local.upload(request, reply, name, route.uploadId, { mayRead, user });
      }
      case 'tags':
        return local.tags(request, reply, name);
      case 'referrers':
        return local.referrers(request, reply, name, route.digest);
    }
  }

  // Writes are refused by the policy (DENIED): mirrored repositories are read-only.
  await deps.access.authorize(access, name, actionsFor(request.method));
  const mirror = deps.mirrorHandlers;
  switch (route.kind) {
    case 'manifest':
      assertReadableReference(request.method, name, route.reference);
      return mirror.manifest(request, reply, name, route.reference);
    case 'blob':
      return mirror.blob(request, reply, name, route.digest);
    case 'tags':
      return mirror.tags(request, reply, name);
    case 'referrers':
    case 'upload':
      throw new RegistryError('UNSUPPORTED', `${route.kind} is not supported for mirrored repositories`, { status: 404 });
  }
}
