// The v1 edge of the access policy (auth/policy.ts decides): v1 clients send Basic
// credentials only on index calls (those with `X-Docker-Token: true`), which answer with a
// token; every later call carries `Authorization: Token signature=…,repository="NS/REPO",access=…`.
// Our tokens are HS256-signed, expire, and name one repository and one access level. This
// module reads those credentials into a Credential and writes refusals as v1 errors.
import { V1Error } from '../protocol/v1.js';
import type { IncomingHttpHeaders } from 'node:http';
import { verifyBasic, type AccessPolicy, type Action, type Credential, type UserVerifier } from './policy.js';
import type { JwtCodec } from './jwt.js';
import { identityOf, type IdentityHolder } from './request-identity.js';

/** What the v1 edge reads credentials from: the fastify request, where it records who it found. */
export interface V1Request extends IdentityHolder {
  headers: IncomingHttpHeaders;
  /** The client's address, for the failed-login limits. */
  ip?: string;
}

export type V1AccessLevel = 'read' | 'write' | 'delete';

export type V1Identity =
  | { kind: 'anonymous' }
  | { kind: 'user'; name: string }
  | { kind: 'token'; user: string; repository: string; access: V1AccessLevel }
  /** An Authorization: Token we did not sign (an upstream index's, or forged / expired). */
  | { kind: 'foreign'; authorization: string; claimedRepository: string | undefined };

export interface V1AccessSettings {
  tokenTtlMs: number;
  /** Audience of v1 tokens; distinct from v2's, so one kind cannot stand in for the other. */
  audience: string;
}

// The policy's actions behind each v1 access level. A write token also reads: pushes probe
// with `GET /v1/images/ID/json` before uploading.
const ACTIONS: Record<V1AccessLevel, readonly Action[]> = {
  read: ['pull'],
  write: ['pull', 'push'],
  delete: ['pull', 'delete'],
};
const NEEDS: Record<V1AccessLevel, readonly Action[]> = { read: ['pull'], write: ['push'], delete: ['delete'] };

export function accessForMethod(method: string): V1AccessLevel {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'DELETE') return 'delete';
  return 'write';
}

export class V1Access {
  constructor(
    readonly policy: AccessPolicy,
    private readonly users: UserVerifier | undefined,
    private readonly tokens: JwtCodec,
    private readonly settings: V1AccessSettings,
  ) {}

  /**
   * Who is asking, recorded on the request (request.identity) for the log and later readers.
   * Wrong Basic credentials are a 401 at once; unknown tokens are `foreign`.
   */
  async identify(request: V1Request): Promise<V1Identity> {
    const identity = await this.verify(request.headers, request.ip);
    request.identity = identityOf(this.credential(identity), 'token');
    return identity;
  }

  private async verify(headers: IncomingHttpHeaders, clientAddress: string | undefined): Promise<V1Identity> {
    const header = headers.authorization;
    if (!header) return { kind: 'anonymous' };
    const scheme = /^\s*(\S+)\s*(.*)$/.exec(header);
    const kind = scheme?.[1]?.toLowerCase();
    const value = scheme?.[2] ?? '';
    if (kind === 'basic') {
      const name = await verifyBasic(this.users, value, clientAddress);
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

  /** The policy's view of a v1 identity. */
  credential(identity: V1Identity): Credential {
    switch (identity.kind) {
      case 'token':
        return { kind: 'token', subject: identity.user, grants: [{ repository: identity.repository, actions: ACTIONS[identity.access] }] };
      case 'foreign':
        return { kind: 'foreign' };
      default:
        return identity;
    }
  }

  /**
   * Checks `need` on a repository; throws 401 (no or bad credentials, a token for something
   * else) or 403 (never allowed, e.g. a push into a mirrored repository).
   */
  authorizeRepository(identity: V1Identity, repository: string, need: V1AccessLevel): void {
    const decision = this.policy.decide(this.credential(identity), repository, NEEDS[need]);
    if (decision.allowed) return;
    if (decision.reason === 'forbidden') throw new V1Error(403, decision.message);
    throw this.unauthorized(decision.message);
  }

  /** 403 for a self-registered account that may only pull (auth.signupAccess: pull). */
  assertMayPush(user: string): void {
    if (!this.policy.mayPush(user)) throw new V1Error(403, `account ${user} was self-registered and may only pull until an operator grants more`);
  }

  /**
   * Whether this identity may see private images at all on image routes (which name no
   * repository); the caller still checks a token's repository contains the image.
   */
  seesPrivateImages(identity: V1Identity): boolean {
    if (identity.kind === 'token') return this.policy.isPrivate(identity.repository);
    return this.policy.readsPrivate(this.credential(identity));
  }

  /** A listing (search): the names this identity may see, each decided by the policy as a `list`. */
  listable(identity: V1Identity, names: Iterable<string>): string[] {
    return this.policy.listing(this.credential(identity), names).visible;
  }

  /** Whether this identity may read mirrored images from the cache (image routes name no repository). */
  readsMirrored(identity: V1Identity): boolean {
    if (identity.kind === 'token') return !this.policy.isPrivate(identity.repository);
    return this.policy.readsMirrored(this.credential(identity));
  }

  /**
   * A token for the response of an index call (`X-Docker-Token` and `WWW-Authenticate`).
   * Callers authorize `access` on the repository first (authorizeRepository).
   */
  issueToken(identity: V1Identity, repository: string, access: V1AccessLevel): string {
    const user = identity.kind === 'user' ? identity.name : identity.kind === 'token' ? identity.user : '';
    const { token } = this.tokens.sign({ iss: 'longshore', sub: user, aud: this.settings.audience, repository, access }, this.settings.tokenTtlMs);
    return `signature=${token},repository="${repository}",access=${access}`;
  }

  unauthorized(message: string): V1Error {
    return new V1Error(401, message, { 'www-authenticate': 'Token' });
  }
}

function isLevel(value: unknown): value is V1AccessLevel {
  return value === 'read' || value === 'write' || value === 'delete';
}
