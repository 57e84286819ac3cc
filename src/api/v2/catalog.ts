// GET /v2/_catalog: the private repositories the caller may read and the mirrored ones with
// cached content the caller may pull, one sorted list paginated with n/last and a Link header.
// Podman's search falls back to it when a registry has no v1 search.
//
// Access is decided by the one policy, as for every other action: each name is a `list`
// decision (auth/policy.ts), from the same credential a pull of it would be decided on.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccessControl, AccessRequest } from '../../auth/v2-access.js';
import { paginate } from '../../protocol/pagination.js';
import { linkNext, pageParameters } from './responses.js';

export interface CatalogSources {
  /** Every private repository. */
  privateRepositories(): Promise<string[]>;
  /** Mirrored repositories with cached content, by the names clients pull them by. */
  cachedRepositories(): Promise<string[]>;
}

export class Catalog {
  constructor(
    private readonly access: AccessControl,
    private readonly sources: CatalogSources,
  ) {}

  async answer(request: FastifyRequest, reply: FastifyReply, access: AccessRequest): Promise<FastifyReply> {
    const { n, last } = pageParameters(request);
    const [privateNames, mirrored] = await Promise.all([this.sources.privateRepositories(), this.sources.cachedRepositories()]);
    const visible = await this.access.authorizeListing(access, [...new Set([...privateNames, ...mirrored])].sort());
    const { items, next } = paginate(visible, n, last);
    linkNext(request, reply, n, next);
    return reply.send({ repositories: items });
  }
}
