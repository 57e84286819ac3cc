// Who may do what, asked by the routes of both APIs. The implementation (users, tokens,
// namespace policy) lives beside it; routes only see this interface.
import type { IncomingHttpHeaders } from 'node:http';

export type Action = 'pull' | 'push' | 'delete';

export interface AccessRequest {
  headers: IncomingHttpHeaders;
  /** Base URL the client used (publicUrl, or scheme + Host), for challenges. */
  baseUrl: string;
}

export interface AccessControl {
  /** Throws RegistryError UNAUTHORIZED (with a WWW-Authenticate challenge) or DENIED. */
  authorize(request: AccessRequest, repository: string, actions: readonly Action[]): Promise<void>;
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
