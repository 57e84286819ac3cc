// An OCI Distribution (v2) client for one upstream registry: keep-alive connection pools
// (undici), the Bearer token flow from WWW-Authenticate, Basic credentials, and redirects
// that never carry credentials to another origin (Docker Hub sends blobs to a CDN).
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { V2UpstreamConfig } from '../config/schema.js';
import { MAX_MANIFEST_BYTES, MAX_TOKEN_RESPONSE_BYTES } from '../protocol/limits.js';
import { readBounded } from '../util/read-bounded.js';
import { sniffManifestMediaType } from '../protocol/media-types.js';
import { UpstreamError } from './errors.js';
import { createUpstreamDispatcher } from './dispatcher.js';
import { contentLength, discard, expectedSizeBlob, failWith, header, networkFailure, USER_AGENT } from './http.js';
import { TokenCache } from './token-cache.js';
import { CACHE_STATUS_HEADER } from '../protocol/cache-status.js';
import type { UpstreamBlob, UpstreamManifest, UpstreamManifestHead, UpstreamRegistry } from './upstream.js';
import { parseWwwAuthenticate, type AuthChallenge } from './www-authenticate.js';

const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

type Method = 'GET' | 'HEAD';

/** What the client reports per upstream request, for metrics. */
export interface UpstreamObserver {
  request(kind: 'manifest' | 'blob' | 'tags' | 'token' | 'other', status: number | 'error', seconds: number): void;
  /** Docker Hub's RateLimit-Remaining, when the upstream sends it. */
  rateLimit(remaining: number): void;
  received(bytes: number): void;
}

function requestKind(path: string): 'manifest' | 'blob' | 'tags' | 'other' {
  if (path.includes('/manifests/')) return 'manifest';
  if (path.includes('/blobs/')) return 'blob';
  if (path.includes('/tags/')) return 'tags';
  return 'other';
}

interface SendOptions {
  method: Method;
  path: string;
  repository: string;
  accept?: readonly string[];
}

export class V2RegistryClient implements UpstreamRegistry {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly isDefault: boolean;
  readonly libraryPrefix: boolean;
  readonly tagTtlMs: number;
  private readonly baseUrl: URL;
  private readonly agent: Dispatcher;
  private readonly tokens = new TokenCache();
  private readonly basicAuth: string | undefined;
  /** Origins besides our own that may receive the credentials over plain http (tokenRealms). */
  private readonly tokenRealms: ReadonlySet<string>;
  // Learned from the first 401, so later requests can send a cached token up front instead
  // of paying a 401 round trip every time.
  private bearerChallenge: AuthChallenge | undefined;

  constructor(
    config: V2UpstreamConfig,
    private readonly observer?: UpstreamObserver,
    dispatcher?: Dispatcher,
  ) {
    this.name = config.name;
    this.hosts = config.hosts;
    this.isDefault = config.default;
    this.libraryPrefix = config.libraryPrefix;
    this.tagTtlMs = config.tagTtl;
    this.baseUrl = new URL(config.url.endsWith('/') ? config.url : `${config.url}/`);
    this.basicAuth =
      config.username !== undefined ? `Basic ${Buffer.from(`${config.username}:${config.password ?? ''}`).toString('base64')}` : undefined;
    this.tokenRealms = new Set(config.tokenRealms);
    this.agent = dispatcher ?? createUpstreamDispatcher(config);
  }

  async fetchBlob(repository: string, digest: string, expectedSize?: number): Promise<UpstreamBlob | undefined> {
    const what = `GET blob ${repository}@${digest}`;
    const response = await this.send({ method: 'GET', path: `v2/${repository}/blobs/${digest}`, repository });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, what);
    return { ...(await expectedSizeBlob(this.name, response, expectedSize, what)), cacheStatus: header(response, CACHE_STATUS_HEADER) };
  }

  async headBlob(repository: string, digest: string): Promise<{ size: number | undefined } | undefined> {
    const response = await this.send({ method: 'HEAD', path: `v2/${repository}/blobs/${digest}`, repository });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, `HEAD blob ${repository}@${digest}`);
    return discard(response, { size: contentLength(response) });
  }

  async getManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifest | undefined> {
    const what = `GET manifest ${repository}:${reference}`;
    const response = await this.send({ method: 'GET', path: `v2/${repository}/manifests/${reference}`, repository, accept });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, what);
    const bytes = await this.readSmallBody(response, what);
    const mediaType = manifestType(header(response, 'content-type'), bytes);
    if (!mediaType) throw new UpstreamError(this.name, 'invalid', `${what}: response has no manifest media type`);
    return { bytes, mediaType, statedDigest: header(response, 'docker-content-digest') };
  }

  async headManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifestHead | undefined> {
    const response = await this.send({ method: 'HEAD', path: `v2/${repository}/manifests/${reference}`, repository, accept });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, `HEAD manifest ${repository}:${reference}`);
    const contentType = header(response, 'content-type');
    return discard(response, {
      digest: header(response, 'docker-content-digest'),
      mediaType: contentType && !isGenericType(contentType) ? stripParams(contentType) : undefined,
      size: contentLength(response),
    });
  }

  async listTags(repository: string): Promise<string[] | undefined> {
    const what = `GET tags ${repository}`;
    const response = await this.send({ method: 'GET', path: `v2/${repository}/tags/list`, repository });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, what);
    const bytes = await this.readSmallBody(response, what);
    let parsed: { tags?: unknown };
    try {
      parsed = JSON.parse(bytes.toString('utf8')) as { tags?: unknown };
    } catch {
      throw new UpstreamError(this.name, 'invalid', `${what}: not JSON`);
    }
    return Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
  }

  /** Aborts requests still running (a shutdown past its grace period), so nothing holds the process. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }

  /**
   * A manifest or list read whole, bounded; a body that breaks off is the upstream being
   * unavailable (an UpstreamError, so the circuit breaker and stale-serving see it).
   */
  private async readSmallBody(response: Dispatcher.ResponseData, what: string): Promise<Buffer> {
    const bytes = await readBounded(response.body, MAX_MANIFEST_BYTES, () => new UpstreamError(this.name, 'invalid', `${what}: over ${MAX_MANIFEST_BYTES} bytes`)).catch(
      (error: unknown) => {
        throw error instanceof UpstreamError ? error : networkFailure(this.name, what, error);
      },
    );
    this.observer?.received(bytes.byteLength);
    return bytes;
  }

  /** Sends one request, doing the auth dance and following redirects. */
  private async send(options: SendOptions): Promise<Dispatcher.ResponseData> {
    const scope = `repository:${options.repository}:pull`;
    let authorization = this.cachedAuthorization(scope);
    let response = await this.sendFollowingRedirects(options, authorization);
    if (response.statusCode === 401) {
      const challenge = parseWwwAuthenticate(response.headers['www-authenticate']);
      await response.body.dump();
      authorization = await this.answerChallenge(challenge, scope, authorization);
      response = await this.sendFollowingRedirects(options, authorization);
      if (response.statusCode === 401 && challenge?.scheme === 'bearer') this.tokens.invalidate(tokenKey(challenge, scope));
    }
    return response;
  }

  private cachedAuthorization(scope: string): string | undefined {
    if (this.bearerChallenge) {
      const token = this.tokens.get(tokenKey(this.bearerChallenge, scope));
      if (token) return `Bearer ${token}`;
    }
    return this.basicAuth;
  }

  private async answerChallenge(challenge: AuthChallenge | undefined, scope: string, tried: string | undefined): Promise<string | undefined> {
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      this.bearerChallenge = challenge;
      const token = await this.tokens.getOrFetch(tokenKey(challenge, scope), () => this.fetchToken(challenge, scope));
      return `Bearer ${token}`;
    }
    if (challenge?.scheme === 'basic' && this.basicAuth && tried !== this.basicAuth) return this.basicAuth;
    throw new UpstreamError(this.name, 'denied', `authentication required (${challenge?.scheme ?? 'no challenge'})${this.basicAuth ? ' and the configured credentials were refused' : ''}`, {
      status: 401,
    });
  }

  private async fetchToken(challenge: AuthChallenge, scope: string): Promise<{ token: string; expiresInSeconds?: number }> {
    const realm = parseRealm(challenge.params.realm);
    if (!realm) throw new UpstreamError(this.name, 'invalid', `token realm ${JSON.stringify(challenge.params.realm)} is not an http(s) URL`);
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': USER_AGENT };
    if (this.basicAuth && this.mayReceiveCredentials(realm)) headers.authorization = this.basicAuth;
    let response: Dispatcher.ResponseData;
    const started = performance.now();
    try {
      response = await this.agent.request({ origin: realm.origin, path: realm.pathname + realm.search, method: 'GET', headers });
    } catch (error) {
      this.observer?.request('token', 'error', (performance.now() - started) / 1000);
      throw new UpstreamError(this.name, 'unavailable', `token request to ${realm.origin}: ${(error as Error).message}`, { cause: error });
    }
    this.observer?.request('token', response.statusCode, (performance.now() - started) / 1000);
    if (response.statusCode !== 200) {
      await response.body.dump();
      const kind = response.statusCode === 401 || response.statusCode === 403 ? 'denied' : response.statusCode === 429 ? 'rate-limited' : 'unavailable';
      throw new UpstreamError(this.name, kind, `token server ${realm.origin} answered ${response.statusCode} for ${scope}`, { status: response.statusCode });
    }
    // Read bounded: the realm is whatever the upstream's challenge named, and a token answer is small.
    const what = `token from ${realm.origin} for ${scope}`;
    const bytes = await readBounded(response.body, MAX_TOKEN_RESPONSE_BYTES, () => new UpstreamError(this.name, 'invalid', `${what}: answer over ${MAX_TOKEN_RESPONSE_BYTES} bytes`)).catch(
      (error: unknown) => {
        throw error instanceof UpstreamError ? error : networkFailure(this.name, what, error);
      },
    );
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(bytes.toString('utf8')) as typeof body;
    } catch {
      throw new UpstreamError(this.name, 'invalid', `${what}: not JSON`);
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || !token) throw new UpstreamError(this.name, 'invalid', `token server ${realm.origin} returned no token for ${scope}`);
    return { token, expiresInSeconds: typeof body.expires_in === 'number' ? body.expires_in : undefined };
  }

  /**
   * Configured credentials go to a token realm only on this upstream's own origin, over https
   * (Docker Hub's auth.docker.io), or on an origin listed in tokenRealms. A challenge naming
   * some plain-http host gets no password: anyone on the path could read it.
   */
  private mayReceiveCredentials(realm: URL): boolean {
    return realm.origin === this.baseUrl.origin || realm.protocol === 'https:' || this.tokenRealms.has(realm.origin);
  }

  private async sendFollowingRedirects(options: SendOptions, authorization: string | undefined): Promise<Dispatcher.ResponseData> {
    let url = new URL(options.path, this.baseUrl);
    let method: Method = options.method;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': USER_AGENT };
      if (options.accept?.length) headers.accept = options.accept.join(', ');
      // Credentials are for the upstream's own answer only; a redirect (a CDN's signed URL)
      // goes bare, wherever it points.
      if (authorization && hop === 0) headers.authorization = authorization;
      let response: Dispatcher.ResponseData;
      const started = performance.now();
      try {
        response = await this.agent.request({ origin: url.origin, path: url.pathname + url.search, method, headers });
      } catch (error) {
        this.observer?.request(requestKind(options.path), 'error', (performance.now() - started) / 1000);
        throw networkFailure(this.name, `${method} ${url.origin}${url.pathname}`, error);
      }
      this.observer?.request(requestKind(options.path), response.statusCode, (performance.now() - started) / 1000);
      const remaining = /^\s*(\d+)/.exec(header(response, 'ratelimit-remaining') ?? '');
      if (remaining) this.observer?.rateLimit(Number(remaining[1]));
      const location = header(response, 'location');
      if (!REDIRECT_STATUSES.has(response.statusCode) || !location) return response;
      await response.body.dump();
      if (hop >= MAX_REDIRECTS) throw new UpstreamError(this.name, 'invalid', `too many redirects for ${options.path}`);
      url = redirectTarget(this.name, url, location);
      if (response.statusCode === 303) method = 'GET';
    }
  }


}

/** Where a redirect may go: http(s) only, and never from https down to plain http. */
export function redirectTarget(upstream: string, from: URL, location: string): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new UpstreamError(upstream, 'invalid', `redirect to an unparsable location ${JSON.stringify(location.slice(0, 200))}`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new UpstreamError(upstream, 'invalid', `redirect to a ${next.protocol} URL refused`);
  if (from.protocol === 'https:' && next.protocol === 'http:') throw new UpstreamError(upstream, 'invalid', `redirect from https to plain http (${next.origin}) refused`);
  return next;
}

function parseRealm(realm: string | undefined): URL | undefined {
  if (!realm) return undefined;
  try {
    const url = new URL(realm);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

function tokenKey(challenge: AuthChallenge, scope: string): string {
  return `${challenge.params.realm ?? ''}|${challenge.params.service ?? ''}|${scope}`;
}



function stripParams(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

function isGenericType(contentType: string): boolean {
  const type = stripParams(contentType);
  return type === 'application/json' || type === 'text/plain' || type === 'application/octet-stream' || type === '';
}

function manifestType(contentType: string | undefined, bytes: Buffer): string | undefined {
  if (contentType && !isGenericType(contentType)) return stripParams(contentType);
  return sniffManifestMediaType(bytes) ?? (contentType ? stripParams(contentType) : undefined);
}


