// GET /v2/_catalog: the private repositories the caller may read and the mirrored ones with
// cached content the caller may pull, one sorted list paginated with n/last and a Link header.
// Podman's search falls back to it when a registry has no v1 search.
//
// Access is decided by the access object's public checks, as the repositories themselves
// would be: authorizeCatalog says whether the caller may list private repositories; for
// mirrored ones, a user (who may pull any mirrored repository) or, when anonymous pulls are
// allowed, anyone sees them all; otherwise each one is checked as a pull would be (a Bearer
// token sees what it grants).
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
    const anonymous: AccessRequest = { headers: {}, baseUrl: access.baseUrl };
    const refusal = await failureOf(this.access.authorizeCatalog(access));
    const seesPrivate = refusal === undefined;
    const visible = seesPrivate ? await this.sources.privateRepositories() : [];
    const mirrored = await this.sources.cachedRepositories();
    if (mirrored.length > 0) {
      // authorizeCatalog passing for a caller but not for an anonymous one: a user.
      const isUser = seesPrivate && !(await passes(this.access.authorizeCatalog(anonymous)));
      const everyone = isUser || (await passes(this.access.authorize(anonymous, mirrored[0] as string, ['pull'])));
      for (const name of mirrored) {
        if (everyone || (await passes(this.access.authorize(access, name, ['pull'])))) visible.push(name);
      }
    }
    // Nothing to show, and logging in could change that: the challenge, so clients can.
    if (refusal !== undefined && visible.length === 0 && !(await passes(this.access.authorizeBase(anonymous)))) throw refusal;
    const { items, next } = paginate([...new Set(visible)].sort(), n, last);
    linkNext(request, reply, n, next);
    return reply.send({ repositories: items });
  }
}

/** The error an access check throws (a 401 challenge, a 403), or undefined when it passes. */
function failureOf(check: Promise<unknown>): Promise<Error | undefined> {
  return check.then(
    () => undefined,
    (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
  );
}

async function passes(check: Promise<unknown>): Promise<boolean> {
  return (await failureOf(check)) === undefined;
}
