// Access control for the v2 API, the way Docker Hub does it: a 401 carries a Bearer
// challenge naming our token endpoint and the scope needed; `GET /token` trades Basic
// credentials (or none: anonymous) for a signed, expiring JWT listing the granted actions;
// later requests carry `Authorization: Bearer`. Basic credentials on API requests work too.
//   mirrored repositories: pull for anyone when auth.anonymousPull, else for users; never push
//   private namespaces:   pull for users (or anyone with private.anonymousPull); push/delete for users
import { RegistryError } from '../protocol/errors.js';
import { isValidRepositoryName } from '../protocol/reference.js';
import { userMayPush, verifyBasic, type AccessControl, type AccessRequest, type Action, type NamespacePolicy, type UserVerifier } from './access.js';
import type { JwtCodec } from './jwt.js';

export interface AccessSettings {
  /** auth.anonymousPull: pulls of mirrored content without credentials. */
  anonymousPull: boolean;
  /** private.anonymousPull: pulls of private repositories without credentials. */
  privateAnonymousPull: boolean;
  tokenTtlMs: number;
  service: string;
}

interface Grant {
  type: string;
  name: string;
  actions: string[];
}

type Identity = { kind: 'anonymous' } | { kind: 'user'; name: string } | { kind: 'token'; subject: string; grants: Grant[] };

export class RegistryAccess implements AccessControl {
  constructor(
    private readonly policy: NamespacePolicy,
    private readonly users: UserVerifier | undefined,
    private readonly tokens: JwtCodec,
    private readonly settings: AccessSettings,
  ) {}

  /** What a user (undefined: anonymous) may do on a repository, by policy alone. */
  allowedActions(user: string | undefined, repository: string): Action[] {
    if (this.policy.isPrivate(repository)) {
      if (user) return userMayPush(this.users, user) ? ['pull', 'push', 'delete'] : ['pull'];
      return this.settings.privateAnonymousPull ? ['pull'] : [];
    }
    return user || this.settings.anonymousPull ? ['pull'] : [];
  }

  async authorize(request: AccessRequest, repository: string, actions: readonly Action[]): Promise<string | undefined> {
    const identity = await this.identify(request);
    const user = identity.kind === 'user' ? identity.name : identity.kind === 'token' && identity.subject !== '' ? identity.subject : undefined;
    const granted =
      identity.kind === 'token'
        ? identity.grants.filter((g) => g.type === 'repository' && g.name === repository).flatMap((g) => g.actions)
        : this.allowedActions(identity.kind === 'user' ? identity.name : undefined, repository);
    const missing = actions.filter((a) => !granted.includes(a));
    if (missing.length === 0) return user;
    // A user with valid credentials asking for what policy never gives: no token would help.
    if (identity.kind === 'user' || (identity.kind === 'token' && identity.subject !== '')) {
      const byPolicy = this.allowedActions(identity.kind === 'user' ? identity.name : identity.subject, repository);
      if (!actions.every((a) => byPolicy.includes(a))) {
        throw new RegistryError('DENIED', `${actions.join(',')} on ${repository} is not allowed for this user`, { detail: { name: repository, actions } });
      }
    }
    throw this.challenge(request, `repository:${repository}:${actions.join(',')}`, 'authentication required');
  }

  async authorizeBase(request: AccessRequest): Promise<void> {
    if (!this.users) return; // no accounts configured: nothing to log in to
    // A token (even an anonymous one, for mirrored pulls) or valid Basic credentials pass;
    // no credentials, or a scheme we do not know, get the challenge.
    if ((await this.identify(request)).kind === 'anonymous') throw this.challenge(request, undefined, 'authentication required');
  }

  async authorizeCatalog(request: AccessRequest): Promise<void> {
    if (this.settings.privateAnonymousPull) return;
    const identity = await this.identify(request);
    if (identity.kind === 'user' || (identity.kind === 'token' && identity.subject !== '')) return;
    throw this.challenge(request, 'registry:catalog:*', 'the catalog lists private repositories: log in');
  }

  /** GET /token?service=&scope=repository:NAME:pull,push (scope may repeat). */
  async issueToken(request: AccessRequest, scopes: readonly string[]): Promise<{ token: string; access_token: string; expires_in: number; issued_at: string }> {
    const identity = await this.identify(request, { basicOnly: true });
    const user = identity.kind === 'user' ? identity.name : undefined;
    const access: Grant[] = [];
    for (const scope of scopes) {
      const match = /^repository:([^:]+):([a-z*,]+)$/.exec(scope);
      if (!match || !isValidRepositoryName(match[1] as string)) continue;
      const name = match[1] as string;
      const wanted = (match[2] as string).split(',').flatMap((a) => (a === '*' ? ['pull', 'push', 'delete'] : [a]));
      const allowed = this.allowedActions(user, name);
      const actions = wanted.filter((a): a is Action => (allowed as string[]).includes(a));
      if (actions.length > 0) access.push({ type: 'repository', name, actions });
    }
    const { token, expiresIn, issuedAt } = this.tokens.sign({ iss: this.settings.service, sub: user ?? '', aud: this.settings.service, access }, this.settings.tokenTtlMs);
    return { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt };
  }

  private async identify(request: AccessRequest, options: { basicOnly?: boolean } = {}): Promise<Identity> {
    const header = request.headers.authorization;
    if (!header) return { kind: 'anonymous' };
    const [scheme, value = ''] = header.split(/\s+/, 2);
    if (scheme?.toLowerCase() === 'basic') {
      const name = await verifyBasic(this.users, value);
      if (name !== undefined) return { kind: 'user', name };
      throw this.challenge(request, undefined, 'invalid username or password');
    }
    if (scheme?.toLowerCase() === 'bearer' && !options.basicOnly) {
      const claims = this.tokens.verify(value);
      if (!claims || claims.aud !== this.settings.service) throw this.challenge(request, undefined, 'invalid or expired token');
      return { kind: 'token', subject: claims.sub, grants: Array.isArray(claims.access) ? (claims.access as Grant[]) : [] };
    }
    return { kind: 'anonymous' };
  }

  private challenge(request: AccessRequest, scope: string | undefined, message: string): RegistryError {
    const parts = [`realm="${request.baseUrl}/token"`, `service="${this.settings.service}"`];
    if (scope) parts.push(`scope="${scope}"`);
    return new RegistryError('UNAUTHORIZED', message, { headers: { 'www-authenticate': `Bearer ${parts.join(',')}` } });
  }
}
