// Who may do what, asked by the routes of both APIs. The implementation (users, tokens,
// namespace policy) lives beside it; routes only see this interface.
import type { IncomingHttpHeaders } from 'node:http';

export type Action = 'pull' | 'push' | 'delete';

export interface UserVerifier {
  /** True when the user exists and the password is right. */
  verify(username: string, password: string): Promise<boolean>;
  /** False for accounts that may only pull (self-registered, auth.signupAccess: pull). */
  mayPush?(username: string): boolean;
}

/** Whether a user may push and delete in private namespaces (all may, but pull-only sign-ups). */
export function userMayPush(users: UserVerifier | undefined, username: string): boolean {
  return users?.mayPush?.(username) ?? true;
}

/** The user named by `Basic` credentials (the base64 part), when they are valid. Both APIs use it. */
export async function verifyBasic(users: UserVerifier | undefined, credentials: string): Promise<string | undefined> {
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || !users) return undefined;
  const name = decoded.slice(0, colon);
  return (await users.verify(name, decoded.slice(colon + 1))) ? name : undefined;
}

export interface AccessRequest {
  headers: IncomingHttpHeaders;
  /** Base URL the client used (publicUrl, or scheme + Host), for challenges. */
  baseUrl: string;
}

export interface AccessControl {
  /**
   * Throws RegistryError UNAUTHORIZED (with a WWW-Authenticate challenge) or DENIED. Resolves
   * to who was let in: the user's name, or undefined for an anonymous client.
   */
  authorize(request: AccessRequest, repository: string, actions: readonly Action[]): Promise<string | undefined>;
  /** GET /v2/: answers 401 when credentials are configured and none valid were sent. */
  authorizeBase(request: AccessRequest): Promise<void>;
  /** GET /v2/_catalog lists private repositories: only for those who may pull them. */
  authorizeCatalog(request: AccessRequest): Promise<void>;
}

/** First path component in `private.namespaces`: stored here, never mirrored. */
export class NamespacePolicy {
  private readonly namespaceSet: ReadonlySet<string>;

  constructor(namespaces: readonly string[]) {
    this.namespaceSet = new Set(namespaces);
  }

  isPrivate(repository: string): boolean {
    return this.namespaceSet.has(repository.split('/')[0] ?? '');
  }

  get hasPrivateNamespaces(): boolean {
    return this.namespaceSet.size > 0;
  }

  get namespaces(): string[] {
    return [...this.namespaceSet];
  }
}
