// Access control for the v1 API, the way v1 clients behave (spec §4): Basic credentials go
// only to index calls (those with `X-Docker-Token: true`), which answer with a token;
// every later call carries `Authorization: Token signature=…,repository="NS/REPO",access=…`.
// Our tokens are HS256-signed, expire, and name one repository and one access level.
//   private namespaces: read for users (or anyone with private.anonymousPull), write and
//                       delete for users; a forged, expired or foreign token is a 401
//   mirrored:           read for anyone when auth.anonymousPull, else for users; a token we
//                       did not sign is passed upstream untouched and never opens private content
import { V1Error } from '../protocol/v1.js';
import type { IncomingHttpHeaders } from 'node:http';
import { userMayPush, verifyBasic, type NamespacePolicy, type UserVerifier } from './access.js';
import type { JwtCodec } from './jwt.js';

export type V1AccessLevel = 'read' | 'write' | 'delete';

export type V1Identity =
  | { kind: 'anonymous' }
  | { kind: 'user'; name: string }
  | { kind: 'token'; user: string; repository: string; access: V1AccessLevel }
  /** An Authorization: Token we did not sign (an upstream index's, or forged / expired). */
  | { kind: 'foreign'; authorization: string; claimedRepository: string | undefined };

export interface V1AccessSettings {
  anonymousPull: boolean;
  privateAnonymousPull: boolean;
  tokenTtlMs: number;
  /** Audience of v1 tokens; distinct from v2's, so one kind cannot stand in for the other. */
  audience: string;
}

// What each token level lets a request do. A write token also reads: pushes probe with
// `GET /v1/images/ID/json` before uploading.
const ALLOWED: Record<V1AccessLevel, readonly V1AccessLevel[]> = {
  read: ['read'],
  write: ['read', 'write'],
  delete: ['read', 'delete'],
};

export function accessForMethod(method: string): V1AccessLevel {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'DELETE') return 'delete';
  return 'write';
}

export class V1Access {
  constructor(
    readonly policy: NamespacePolicy,
    private readonly users: UserVerifier | undefined,
    private readonly tokens: JwtCodec,
    private readonly settings: V1AccessSettings,
  ) {}

  /** Who is asking. Wrong Basic credentials are a 401 at once; unknown tokens are `foreign`. */
  async identify(headers: IncomingHttpHeaders): Promise<V1Identity> {
    const header = headers.authorization;
    if (!header) return { kind: 'anonymous' };
    const scheme = /^\s*(\S+)\s*(.*)$/.exec(header);
    const kind = scheme?.[1]?.toLowerCase();
    const value = scheme?.[2] ?? '';
    if (kind === 'basic') {
      const name = await verifyBasic(this.users, value);
      if (name !== undefined) return { kind: 'user', name };
      throw new V1Error(401, 'Wrong login/password, please try again', { 'www-authenticate': 'Basic realm="longshore",Token' });
    }
    if (kind === 'token') {
      // The Python index sent "Token signature=…" in X-Docker-Token, so clients may send
      // "Token Token signature=…"; find the fields wherever they are.
      const signature = /signature=([A-Za-z0-9_.-]+)/.exec(value)?.[1];
      const claimedRepository = /repository="([^"]*)"/.exec(value)?.[1];
      const claims = signature ? this.tokens.verify(signature) : undefined;
      if (claims && claims.aud === this.settings.audience && typeof claims.repository === 'string' && isLevel(claims.access)) {
        return { kind: 'token', user: claims.sub, repository: claims.repository, access: claims.access };
      }
      return { kind: 'foreign', authorization: header, claimedRepository };
    }
    return { kind: 'anonymous' };
  }

  /**
   * Checks `need` on a repository; throws 401 (no or bad credentials) or 403 (never allowed,
   * e.g. a push into a mirrored repository). Foreign tokens pass for mirrored reads: the
   * upstream judges them.
   */
  authorizeRepository(identity: V1Identity, repository: string, need: V1AccessLevel): void {
    const isPrivate = this.policy.isPrivate(repository);
    if (!isPrivate && need !== 'read') {
      throw new V1Error(403, `${repository} is a mirrored repository and read-only: push only into private namespaces (${this.namespacesText()})`);
    }
    switch (identity.kind) {
      case 'user':
        if (need !== 'read') this.assertMayPush(identity.name);
        return;
      case 'token':
        if (identity.repository === repository && ALLOWED[identity.access].includes(need)) return;
        throw this.unauthorized(`token grants ${identity.access} on ${identity.repository}, not ${need} on ${repository}`);
      case 'foreign':
        if (!isPrivate) return;
        throw this.unauthorized('invalid or expired token');
      case 'anonymous':
        if (need === 'read' && (isPrivate ? this.settings.privateAnonymousPull : this.settings.anonymousPull)) return;
        throw this.unauthorized(need === 'read' ? 'authentication required' : 'pushing needs a login (docker login)');
    }
  }

  /** 403 for a self-registered account that may only pull (auth.signupAccess: pull). */
  assertMayPush(user: string): void {
    if (!userMayPush(this.users, user)) throw new V1Error(403, `account ${user} was self-registered and may only pull until an operator grants more`);
  }

  /**
   * Whether this identity may see private images at all on image routes (which name no
   * repository); the caller still checks a token's repository contains the image.
   */
  seesPrivateImages(identity: V1Identity): boolean {
    if (identity.kind === 'user') return true;
    if (identity.kind === 'token') return this.policy.isPrivate(identity.repository);
    if (identity.kind === 'anonymous') return this.settings.privateAnonymousPull;
    return false;
  }

  /** A token for the response of an index call: `X-Docker-Token` and `WWW-Authenticate`. */
  issueToken(identity: V1Identity, repository: string, access: V1AccessLevel): string {
    const user = identity.kind === 'user' ? identity.name : identity.kind === 'token' ? identity.user : '';
    const { token } = this.tokens.sign({ iss: 'longshore', sub: user, aud: this.settings.audience, repository, access }, this.settings.tokenTtlMs);
    return `signature=${token},repository="${repository}",access=${access}`;
  }

  unauthorized(message: string): V1Error {
    return new V1Error(401, message, { 'www-authenticate': 'Token' });
  }

  private namespacesText(): string {
    return this.policy.hasPrivateNamespaces ? `private.namespaces: ${this.policy.namespaces.join(', ')}` : 'none are configured in private.namespaces';
  }
}

function isLevel(value: unknown): value is V1AccessLevel {
  return value === 'read' || value === 'write' || value === 'delete';
}
