// The index side of the v1 API for private repositories (spec §5.2, §5.3, §5.4, §5.6):
// accounts, the repository calls that hand out tokens, tags, and search.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { accessForMethod, type V1Access, type V1Identity } from '../../auth/v1-access.js';
import { assertImageId, parseImageList, V1Error } from '../../protocol/v1.js';
import type { V1LocalRegistry } from '../../registry/v1-registry.js';
import { readJsonBody, sendIndexHeaders, sendJson, wantsToken } from './http.js';

export interface UserAccounts {
  verify(username: string, password: string): Promise<boolean>;
  add(username: string, password: string): Promise<boolean>;
  setPassword(username: string, password: string): Promise<boolean>;
}

export interface IndexOptions {
  /** auth.allowSignup: POST /v1/users/ creates accounts. */
  allowSignup: boolean;
  /** storage.delete: repositories and tags may be deleted. */
  deleteEnabled: boolean;
  publicUrl: string | undefined;
}

// The index's documented rules (§3); the client shows our message on a 400.
const USERNAME = /^[a-z0-9_]{4,30}$/;
const MIN_PASSWORD_LENGTH = 5;

export class V1IndexHandlers {
  constructor(
    private readonly access: V1Access,
    private readonly registry: V1LocalRegistry,
    private readonly accounts: UserAccounts | undefined,
    private readonly options: IndexOptions,
  ) {}

  // ---- users -------------------------------------------------------------------------------

  /** POST /v1/users/: sign-up (Docker ≤1.10 login starts here). */
  async createUser(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    // Decided before a byte of the body is read: a closed sign-up costs an anonymous client nothing.
    if (!this.options.allowSignup || !this.accounts) {
      // 401 sends old clients on to GET /v1/users/ with Basic: a login, not a sign-up.
      throw new V1Error(401, 'account creation is disabled (auth.allowSignup); log in with an existing account', { 'www-authenticate': 'Basic realm="longshore"' });
    }
    const { username, password } = credentialsFrom(await readJsonBody(request));
    if (!(await this.accounts.add(username, password))) {
      // The exact body old clients recognise before retrying as a login (§5.2).
      return sendJson(reply, 400, 'Username or email already exists');
    }
    request.log.info({ user: username }, 'v1 account created');
    return sendJson(reply, 201, 'User Created');
  }

  /** GET /v1/users/: checks Basic credentials (docker login ≥1.11). */
  async login(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const identity = await this.access.identify(request);
    if (identity.kind !== 'user') throw new V1Error(401, 'log in with Basic credentials', { 'www-authenticate': 'Basic realm="longshore"' });
    return sendJson(reply, 200, 'OK');
  }

  /** PUT /v1/users/NAME/: a user changes their own password. */
  async updateUser(request: FastifyRequest, reply: FastifyReply, username: string): Promise<FastifyReply> {
    const identity = await this.access.identify(request);
    if (identity.kind !== 'user') throw new V1Error(401, 'log in with Basic credentials', { 'www-authenticate': 'Basic realm="longshore"' });
    if (identity.name !== username) throw new V1Error(403, `user ${identity.name} may not change the account of ${username}`);
    if (!this.options.allowSignup || !this.accounts) throw new V1Error(403, 'account changes are disabled (auth.allowSignup)');
    const body = await readJsonBody(request);
    const password = (body as { password?: unknown } | undefined)?.password;
    if (password !== undefined) {
      if (typeof password !== 'string' || password.length < MIN_PASSWORD_LENGTH) throw new V1Error(400, `password must be at least ${MIN_PASSWORD_LENGTH} characters`);
      if (!(await this.accounts.setPassword(username, password))) throw new V1Error(404, `no user ${username}`);
    }
    return reply.code(204).send();
  }

  // ---- repositories (index calls) ----------------------------------------------------------

  /** PUT /v1/repositories/NS/REPO/: a push starts; answers the write token and endpoints. */
  async putRepository(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply> {
    this.access.authorizeRepository(identity, repository, 'write');
    const entries = parseImageList((await readJsonBody(request)) ?? []);
    await this.registry.declareImages(repository, entries);
    // Endpoints always: a push without them is fatal for the client (§9.4).
    sendIndexHeaders(request, reply, this.options.publicUrl, wantsToken(request) ? this.access.issueToken(identity, repository, 'write') : undefined);
    return sendJson(reply, 200, '');
  }

  /** DELETE /v1/repositories/NS/REPO/ (and .../tags): drops its tags and image list. */
  async deleteRepository(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply> {
    this.access.authorizeRepository(identity, repository, 'delete');
    this.assertDeletable();
    await this.registry.deleteRepository(repository);
    if (wantsToken(request)) {
      sendIndexHeaders(request, reply, this.options.publicUrl, this.access.issueToken(identity, repository, 'delete'));
      return sendJson(reply, 202, '');
    }
    return sendJson(reply, 200, true);
  }

  /** GET/PUT/DELETE /v1/repositories/NS/REPO/images. */
  async repositoryImages(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply> {
    const need = accessForMethod(request.method);
    this.access.authorizeRepository(identity, repository, need);
    const token = wantsToken(request) ? this.access.issueToken(identity, repository, need) : undefined;
    if (request.method === 'PUT') {
      // The end of a push: clients since 1.0 send `[]`; checksums, if any, are not used.
      parseImageList((await readJsonBody(request)) ?? []);
      sendIndexHeaders(request, reply, this.options.publicUrl, token);
      return reply.code(204).send();
    }
    if (request.method === 'DELETE') {
      sendIndexHeaders(request, reply, this.options.publicUrl, token);
      return reply.code(204).send();
    }
    const images = await this.registry.repositoryImages(repository);
    if (!images) throw new V1Error(404, `Repository not found: ${repository}`);
    sendIndexHeaders(request, reply, this.options.publicUrl, token);
    return sendJson(
      reply,
      200,
      images.map((id) => ({ id })),
    );
  }

  // ---- tags (registry calls) ---------------------------------------------------------------

  async tags(request: FastifyRequest, reply: FastifyReply, repository: string, identity: V1Identity): Promise<FastifyReply> {
    if (request.method === 'DELETE') return this.deleteRepository(request, reply, repository, identity);
    this.access.authorizeRepository(identity, repository, 'read');
    const tags = await this.registry.tags(repository);
    if (!tags) throw new V1Error(404, `Repository not found: ${repository}`);
    return sendJson(reply, 200, tags);
  }

  async tag(request: FastifyRequest, reply: FastifyReply, repository: string, tag: string, identity: V1Identity): Promise<FastifyReply> {
    this.access.authorizeRepository(identity, repository, accessForMethod(request.method));
    if (request.method === 'PUT') {
      const id = await readJsonBody(request);
      if (typeof id !== 'string') throw new V1Error(400, 'expected the image id as a JSON string');
      await this.registry.putTag(repository, tag, assertImageId(id));
      return sendJson(reply, 200, true);
    }
    if (request.method === 'DELETE') {
      this.assertDeletable();
      await this.registry.deleteTag(repository, tag);
      return sendJson(reply, 200, true);
    }
    const id = await this.registry.tag(repository, tag);
    if (!id) throw new V1Error(404, `Tag not found: ${tag}`);
    return sendJson(reply, 200, id);
  }

  private assertDeletable(): void {
    if (!this.options.deleteEnabled) throw new V1Error(405, 'deleting is disabled on this registry (storage.delete: false)');
  }
}

function credentialsFrom(body: unknown): { username: string; password: string } {
  const { username, password } = (body ?? {}) as { username?: unknown; password?: unknown };
  if (typeof username !== 'string' || !USERNAME.test(username)) {
    throw new V1Error(400, 'Invalid username: 4 to 30 characters of a-z, 0-9 and _');
  }
  if (typeof password !== 'string' || password.length < MIN_PASSWORD_LENGTH) {
    throw new V1Error(400, `Invalid password: at least ${MIN_PASSWORD_LENGTH} characters`);
  }
  return { username, password };
}
