// The v2 edge of the access policy (auth/policy.ts decides), the way Docker Hub and the
// reference registry do it: a 401 carries a Bearer challenge naming our token endpoint and
// the scope needed (with `error="insufficient_scope"` for a valid token lacking the action,
// `error="invalid_token"` for one we did not sign or that expired, RFC 6750 §3.1);
// `GET /token` trades Basic credentials (or none: anonymous) for a signed, expiring JWT
// listing the granted actions; later requests carry `Authorization: Bearer`. Basic
// credentials on API requests work too.
import type { IncomingHttpHeaders } from 'node:http';
import { RegistryError } from '../protocol/errors.js';
import { isValidRepositoryName } from '../protocol/reference.js';
import { verifyBasic, type AccessPolicy, type Action, type Credential, type Grant, type Refusal, type UserVerifier } from './policy.js';
import type { JwtCodec } from './jwt.js';
import { ANONYMOUS, identityOf, type IdentityHolder, type RequestIdentity } from './request-identity.js';

export interface AccessRequest {
  headers: IncomingHttpHeaders;
  /** Base URL the client used (publicUrl, or scheme + Host), for challenges. */
  baseUrl: string;
  /** The client's address (fastify's request.ip), for the failed-login limits. */
  clientAddress?: string;
  /**
   * The fastify request: the identity decided is recorded there (request.identity) for the
   * log and later checks, and the credentials are verified once per request, however many
   * decisions it needs (a mount checks its source too, a catalog every name).
   */
  holder?: IdentityHolder;
}

export interface AccessControl {
  /**
   * Throws RegistryError UNAUTHORIZED (with a WWW-Authenticate challenge) or DENIED. Resolves
   * to who was let in: the user's name (a token's subject), or undefined for an anonymous client.
   */
  authorize(request: AccessRequest, repository: string, actions: readonly Action[]): Promise<string | undefined>;
  /** GET /v2/: answers 401 when credentials are configured and none valid were sent. */
  authorizeBase(request: AccessRequest): Promise<void>;
  /**
   * GET /v2/_catalog: the names the caller may see, each decided by the policy as a `list`.
   * Throws the challenge (scope registry:catalog:*) when none are visible and a login could
   * show some.
   */
  authorizeListing(request: AccessRequest, names: readonly string[]): Promise<string[]>;
}

export interface TokenSettings {
  tokenTtlMs: number;
  service: string;
}

/** The access claim of our JWTs, as Docker's token protocol spells it. */
interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

const ANONYMOUS_CREDENTIAL: Credential = Object.freeze({ kind: 'anonymous' });

export class RegistryAccess implements AccessControl {
  /** Credentials already verified, per request (weakly held: gone with the request). */
  private readonly identified = new WeakMap<IdentityHolder, Credential>();

  constructor(
    readonly policy: AccessPolicy,
    private readonly users: UserVerifier | undefined,
    private readonly tokens: JwtCodec,
    private readonly settings: TokenSettings,
  ) {}

  async authorize(request: AccessRequest, repository: string, actions: readonly Action[]): Promise<string | undefined> {
    const credential = await this.identify(request);
    const decision = this.policy.decide(credential, repository, actions);
    if (!decision.allowed) throw this.refusal(request, decision, `repository:${repository}:${actions.join(',')}`, { name: repository, actions });
    if (credential.kind === 'user') return credential.name;
    return credential.kind === 'token' && credential.subject !== '' ? credential.subject : undefined;
  }

  async authorizeBase(request: AccessRequest): Promise<void> {
    if (!this.users) return; // no accounts configured: nothing to log in to
    // A token (even an anonymous one, for mirrored pulls) or valid Basic credentials pass;
    // no credentials, or a scheme we do not know, get the challenge.
    if ((await this.identify(request)).kind === 'anonymous') throw this.challenge(request, undefined, 'authentication required');
  }

  async authorizeListing(request: AccessRequest, names: readonly string[]): Promise<string[]> {
    const { visible, refusal } = this.policy.listing(await this.identify(request), names);
    // Nothing to show, and logging in could change that: the challenge, so clients can.
    if (visible.length === 0 && refusal && this.users) throw this.refusal(request, refusal, 'registry:catalog:*', undefined);
    return visible;
  }

  /**
   * Who is asking, for routes that decide nothing themselves (the web page's API): records it
   * on the request like every decision does. Throws the challenge for refused credentials.
   */
  async identifyRequest(request: AccessRequest): Promise<RequestIdentity> {
    const credential = await this.identify(request);
    return request.holder?.identity ?? identityOf(credential, 'bearer');
  }

  /** GET /token?service=&scope=repository:NAME:pull,push (scope may repeat). */
  async issueToken(request: AccessRequest, scopes: readonly string[]): Promise<{ token: string; access_token: string; expires_in: number; issued_at: string }> {
    const identity = await this.identify(request, { basicOnly: true });
    const user = identity.kind === 'user' ? identity.name : undefined;
    const access: TokenAccess[] = [];
    for (const scope of scopes) {
      const match = /^repository:([^:]+):([a-z*,]+)$/.exec(scope);
      if (!match || !isValidRepositoryName(match[1] as string)) continue;
      const name = match[1] as string;
      const wanted = (match[2] as string).split(',').flatMap((a) => (a === '*' ? ['pull', 'push', 'delete'] : [a]));
      const actions = this.policy.grantable(user, name, wanted.filter(isAction));
      if (actions.length > 0) access.push({ type: 'repository', name, actions });
    }
    const { token, expiresIn, issuedAt } = this.tokens.sign({ iss: this.settings.service, sub: user ?? '', aud: this.settings.service, access }, this.settings.tokenTtlMs);
    return { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt };
  }

  /** The request's credential: verified once per request and recorded on it (request.identity). */
  private async identify(request: AccessRequest, options: { basicOnly?: boolean } = {}): Promise<Credential> {
    const holder = request.holder;
    // No credentials (every anonymous pull, the hot path): nothing to verify or remember, so
    // no WeakMap entry per request (an ephemeron the GC must trace) and no second promise.
    if (request.headers.authorization === undefined) {
      if (holder) holder.identity = ANONYMOUS;
      return ANONYMOUS_CREDENTIAL;
    }
    const known = holder ? this.identified.get(holder) : undefined;
    if (known) return known;
    const credential = await this.verify(request, options);
    if (holder) {
      this.identified.set(holder, credential);
      holder.identity = identityOf(credential, 'bearer');
    }
    return credential;
  }

  private async verify(request: AccessRequest, options: { basicOnly?: boolean }): Promise<Credential> {
    const header = request.headers.authorization;
    if (!header) return ANONYMOUS_CREDENTIAL;
    const [scheme, value = ''] = header.split(/\s+/, 2);
    if (scheme?.toLowerCase() === 'basic') {
      const name = await verifyBasic(this.users, value, request.clientAddress);
      if (name !== undefined) return { kind: 'user', name };
      throw this.challenge(request, undefined, 'invalid username or password');
    }
    if (scheme?.toLowerCase() === 'bearer' && !options.basicOnly) {
      const claims = this.tokens.verify(value);
      if (!claims || claims.aud !== this.settings.service) throw this.challenge(request, undefined, 'invalid or expired token', 'invalid_token');
      return { kind: 'token', subject: claims.sub, grants: grantsOf(claims.access) };
    }
    return { kind: 'anonymous' };
  }

  private refusal(request: AccessRequest, decision: Refusal, scope: string, detail: unknown): RegistryError {
    switch (decision.reason) {
      case 'forbidden':
        return new RegistryError('DENIED', decision.message, { detail });
      case 'login':
        return this.challenge(request, scope, decision.message);
      case 'insufficient_scope':
      case 'invalid_token':
        return this.challenge(request, scope, decision.message, decision.reason);
    }
  }

  private challenge(request: AccessRequest, scope: string | undefined, message: string, error?: 'insufficient_scope' | 'invalid_token'): RegistryError {
    const parts = [`realm="${request.baseUrl}/token"`, `service="${this.settings.service}"`];
    if (scope) parts.push(`scope="${scope}"`);
    if (error) parts.push(`error="${error}"`);
    return new RegistryError('UNAUTHORIZED', message, { headers: { 'www-authenticate': `Bearer ${parts.join(',')}` } });
  }
}

/** Actions a token may carry (`list` is decided from the rules, never granted). */
function isAction(value: string): value is Action {
  return value === 'pull' || value === 'push' || value === 'delete';
}

function grantsOf(claim: unknown): Grant[] {
  if (!Array.isArray(claim)) return [];
  return (claim as TokenAccess[])
    .filter((entry) => entry?.type === 'repository' && typeof entry.name === 'string' && Array.isArray(entry.actions))
    .map((entry) => ({ repository: entry.name, actions: entry.actions.filter(isAction) }));
}
