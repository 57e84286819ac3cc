// Docker Registry v1 routes. Everything under /v1/ arrives at one wildcard route, is
// classified by protocol/v1.ts and handed to the index, image or search handlers; private
// repositories are served here, mirrored ones by the mirror side when one is configured.
// Errors leave in the v1 format, `{"error": "..."}`.
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { accessForMethod, type V1Access, type V1Identity } from '../../auth/v1-access.js';
import { parseV1Path, V1Error, type V1Route } from '../../protocol/v1.js';
import { keepBodiesRaw } from '../raw-bodies.js';
import { handleV1Error, sendJson } from './http.js';
import type { V1ImageHandlers } from './image-handlers.js';
import type { V1IndexHandlers } from './index-handlers.js';
import type { V1Search } from './search.js';

/** Repository reads and writes: the index handlers (private) or the v1 pull-through (mirrored). */
export interface RepositoryHandlers {
  repositoryImages(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply>;
  tags(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply>;
  tag(request: FastifyRequest, reply: FastifyReply, repository: string, tag: string, identity: V1Identity): Promise<FastifyReply>;
}

export interface V1Dependencies {
  access: V1Access;
  index: V1IndexHandlers;
  images: V1ImageHandlers;
  search: V1Search;
  /** Absent when no upstream speaks for mirrored repositories over v1. */
  mirrored: RepositoryHandlers | undefined;
}

const ROUTE_TEMPLATES: Record<V1Route['kind'], string> = {
  ping: '/v1/_ping',
  users: '/v1/users/',
  user: '/v1/users/:username/',
  repository: '/v1/repositories/:name/',
  repositoryImages: '/v1/repositories/:name/images',
  tags: '/v1/repositories/:name/tags',
  tag: '/v1/repositories/:name/tags/:tag',
  image: '/v1/images/:id/:resource',
  search: '/v1/search',
};

const ALLOWED_METHODS: Record<V1Route['kind'], readonly string[]> = {
  ping: ['GET', 'HEAD'],
  users: ['GET', 'POST'],
  user: ['PUT'],
  repository: ['PUT', 'DELETE'],
  repositoryImages: ['GET', 'PUT', 'DELETE'],
  tags: ['GET', 'DELETE'],
  tag: ['GET', 'PUT', 'DELETE'],
  image: ['GET', 'PUT'],
  search: ['GET'],
};

export function v1Routes(deps: V1Dependencies): FastifyPluginCallback {
  return (app, _options, done) => {
    keepBodiesRaw(app);
    app.setErrorHandler(handleV1Error);
    const handler = (request: FastifyRequest, reply: FastifyReply) => dispatch(deps, request, reply);
    const methods = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'] as const;
    app.route({ method: [...methods], url: '/_ping', handler });
    app.route({ method: [...methods], url: '/v1/*', handler });
    done();
  };
}

async function dispatch(deps: V1Dependencies, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const path = request.url.split('?')[0] ?? '';
  const route = parseV1Path(path);
  if (!route) throw new V1Error(404, `no such endpoint: ${request.method} ${path}`);
  request.routeTemplate = ROUTE_TEMPLATES[route.kind];
  if (!ALLOWED_METHODS[route.kind].includes(request.method)) throw new V1Error(405, `${request.method} is not supported on ${ROUTE_TEMPLATES[route.kind]}`);

  switch (route.kind) {
    case 'ping':
      return ping(reply);
    case 'users':
      return request.method === 'POST' ? deps.index.createUser(request, reply) : deps.index.login(request, reply);
    case 'user':
      return deps.index.updateUser(request, reply, route.username);
    case 'search':
      return deps.search.search(request, reply, await deps.access.identify(request));
    case 'image':
      return deps.images.handle(request, reply, route.id, route.resource, await deps.access.identify(request));
    default:
      break;
  }

  const identity = await deps.access.identify(request);
  const repository = route.repository;
  const isPrivate = deps.access.policy.isPrivate(repository);
  let handlers: RepositoryHandlers;
  if (isPrivate) {
    handlers = deps.index;
  } else {
    // Writes are refused by the policy (403): mirrored repositories are read-only.
    deps.access.authorizeRepository(identity, repository, accessForMethod(request.method));
    if (!deps.mirrored) throw new V1Error(404, `Repository not found: ${repository} is not in private.namespaces and no upstream serves it over v1`);
    handlers = deps.mirrored;
  }
  switch (route.kind) {
    case 'repository':
      return request.method === 'PUT' ? deps.index.putRepository(request, reply, repository, identity) : deps.index.deleteRepository(request, reply, repository, identity);
    case 'repositoryImages':
      return handlers.repositoryImages(request, reply, repository, identity);
    case 'tags':
      return handlers.tags(request, reply, repository, identity);
    case 'tag':
      return handlers.tag(request, reply, repository, route.tag, identity);
  }
}

function ping(reply: FastifyReply): FastifyReply {
  // Clients read only these headers and accept any status (§5.1).
  reply.headers({ 'x-docker-registry-version': '0.9.1', 'x-docker-registry-standalone': 'true' });
  return sendJson(reply, 200, true);
}
