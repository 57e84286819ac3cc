// Who a request came from, as the access edge (auth/v1-access.ts, auth/v2-access.ts) decided
// it when it checked the credentials. It is recorded on the fastify request so that whatever
// runs later (the access log line, the web page's API, a peer route) reads the decision
// instead of parsing the Authorization header again: a second parse would mean a second
// bcrypt or JWT verification per request, and a second opinion that could disagree.
import type { Credential } from './policy.js';
export type AuthMethod =
  /** Basic credentials checked against the configured users. */
  | 'basic'
  /** A v2 Bearer token this mirror signed (its subject may be '' for an anonymous token). */
  | 'bearer'
  /** A v1 `Token signature=…` this mirror signed. */
  | 'token'
  /** Another replica of the cluster. */
  | 'peer'
  /** No credentials (or a v1 token we did not sign, which is worth what none are). */
  | 'anonymous';

export interface RequestIdentity {
  /** The user the credentials named; undefined for anonymous callers and anonymous tokens. */
  user: string | undefined;
  method: AuthMethod;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Set by the access edge once it has checked the request's credentials; undefined when
     * none checked them (no access decision, or credentials that were refused).
     */
    identity: RequestIdentity | undefined;
  }
}

/** Where an edge records its decision: the fastify request, seen only through this field. */
export interface IdentityHolder {
  identity: RequestIdentity | undefined;
}

export const ANONYMOUS: RequestIdentity = Object.freeze({ user: undefined, method: 'anonymous' });

/** The identity a policy credential stands for; `tokenMethod`: how the API carries our tokens. */
export function identityOf(credential: Credential, tokenMethod: 'bearer' | 'token'): RequestIdentity {
  switch (credential.kind) {
    case 'user':
      return { user: credential.name, method: 'basic' };
    case 'token':
      return { user: credential.subject === '' ? undefined : credential.subject, method: tokenMethod };
    default:
      // A token we did not sign names nobody we know (the upstream judges it); an unknown
      // scheme is worth what no credentials are.
      return ANONYMOUS;
  }
}
