// A Docker Registry v1 client for one upstream (docs: v1-protocol.md §1, §4, §8): the index
// hands out a token and the registry endpoints for a repository (`X-Docker-Token: true`,
// Basic with the configured credentials, sent to the index only); image data and tags come
// from the registry with `Authorization: Token …`. Old-Docker mirror mode passes the
// client's own upstream token through instead (§10).
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { LRUCache } from 'lru-cache';
import type { UpstreamConfig } from '../config/schema.js';
import { MAX_MANIFEST_BYTES } from '../protocol/limits.js';
import type { V1SearchResult } from '../protocol/v1.js';
import { readBounded } from '../util/read-bounded.js';
import { UpstreamError } from './errors.js';
import { createUpstreamDispatcher } from './dispatcher.js';
import { discard, expectedSizeBlob, failWith, networkFailure, USER_AGENT } from './http.js';
import type { UpstreamBlob } from './upstream.js';
import type { UpstreamObserver } from './v2-client.js';

// Upstream tokens are reused for this long per repository; the Hub's were short-lived, and a
// refused token is simply fetched again.
const TOKEN_REUSE_MS = 60_000;
const MAX_SESSIONS = 10_000;

export type V1UpstreamConfig = UpstreamConfig & { v1: UpstreamConfig['v1'] & { index: string } };

export function speaksV1(upstream: UpstreamConfig): upstream is V1UpstreamConfig {
  return upstream.v1.index !== undefined;
}

/** How an image-data call authenticates upstream. */
export type V1UpstreamAuth =
  /** Our own session for a repository: a token from the upstream index, fetched on demand. */
  | { kind: 'repository'; repository: string }
  /** The client's `Authorization` from the upstream index, passed on unchanged (§10). */
  | { kind: 'passthrough'; authorization: string }
  | { kind: 'none' };

export interface V1UpstreamImageJson {
  bytes: Buffer;
  /** X-Docker-Size: the layer's size, when the upstream states it. */
  layerSize: number | undefined;
  /** X-Docker-Checksum-Payload: sha256 of json + "\n" + layer, when the upstream states it. */
  payloadChecksum: string | undefined;
}

interface Session {
  token: string | undefined;
  registry: URL;
  expires: number;
}

export class V1RegistryClient {
  readonly name: string;
  private readonly index: URL;
  private readonly fixedRegistry: URL | undefined;
  private readonly agent: Dispatcher;
  private readonly basicAuth: string | undefined;
  // Per repository name, which any client can make up: bounded, least recently used go first.
  private readonly sessions = new LRUCache<string, Session>({ max: MAX_SESSIONS });

  constructor(
    config: V1UpstreamConfig,
    private readonly observer?: UpstreamObserver,
    private readonly now: () => number = Date.now,
    dispatcher?: Dispatcher,
  ) {
    this.name = config.name;
    this.index = withSlash(config.v1.index);
    this.fixedRegistry = config.v1.registry ? withSlash(config.v1.registry) : undefined;
    this.basicAuth = config.username !== undefined ? `Basic ${Buffer.from(`${config.username}:${config.password ?? ''}`).toString('base64')}` : undefined;
    this.agent = dispatcher ?? createUpstreamDispatcher(config);
  }

  /**
   * GET /v1/repositories/NS/REPO/images at the index: the image list, and a session (token and
   * registry) for the repository's later calls. undefined: the index does not know it.
   */
  async repositoryImages(repository: string): Promise<string[] | undefined> {
    const response = await this.send(new URL(`v1/repositories/${repository}/images`, this.index), { 'x-docker-token': 'true', ...(this.basicAuth ? { authorization: this.basicAuth } : {}) });
    if (response.statusCode === 404) return discard(response, undefined);
    if (response.statusCode !== 200) return failWith(this.name, response, `GET images of ${repository} at the index`);
    const token = headerText(response, 'x-docker-token');
    const endpoint = headerText(response, 'x-docker-endpoints')?.split(',')[0]?.trim();
    const registry = this.fixedRegistry ?? (endpoint ? new URL(`${this.index.protocol}//${endpoint}/`) : this.index);
    this.sessions.set(repository, { token, registry, expires: this.now() + TOKEN_REUSE_MS });
    const list = (await this.json(response, `images of ${repository}`)) as Array<{ id?: unknown }>;
    return Array.isArray(list) ? list.map((entry) => entry.id).filter((id): id is string => typeof id === 'string') : [];
  }

  /** GET /v1/repositories/NS/REPO/tags: tag → image id. */
  async tags(repository: string): Promise<Record<string, string> | undefined> {
    const response = await this.registryCall(`repositories/${repository}/tags`, { kind: 'repository', repository });
    if (response === undefined) return undefined;
    const tags = await this.json(response, `tags of ${repository}`);
    if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) throw new UpstreamError(this.name, 'invalid', `tags of ${repository}: not a JSON object`);
    return Object.fromEntries(Object.entries(tags).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  }

  /** GET /v1/repositories/NS/REPO/tags/TAG: the image id. */
  async tag(repository: string, tag: string): Promise<string | undefined> {
    const response = await this.registryCall(`repositories/${repository}/tags/${encodeURIComponent(tag)}`, { kind: 'repository', repository });
    if (response === undefined) return undefined;
    const id = await this.json(response, `tag ${repository}:${tag}`);
    if (typeof id !== 'string') throw new UpstreamError(this.name, 'invalid', `tag ${repository}:${tag}: not a JSON string`);
    return id;
  }

  async imageJson(id: string, auth: V1UpstreamAuth): Promise<V1UpstreamImageJson | undefined> {
    const response = await this.registryCall(`images/${id}/json`, auth);
    if (response === undefined) return undefined;
    const size = headerText(response, 'x-docker-size');
    const bytes = await readBounded(response.body, MAX_MANIFEST_BYTES, () => new UpstreamError(this.name, 'invalid', `json of ${id}: over ${MAX_MANIFEST_BYTES} bytes`));
    this.observer?.received(bytes.byteLength);
    return {
      bytes,
      layerSize: size !== undefined && /^\d+$/.test(size) ? Number(size) : undefined,
      payloadChecksum: headerText(response, 'x-docker-checksum-payload'),
    };
  }

  async ancestry(id: string, auth: V1UpstreamAuth): Promise<string[] | undefined> {
    const response = await this.registryCall(`images/${id}/ancestry`, auth);
    if (response === undefined) return undefined;
    const ids = await this.json(response, `ancestry of ${id}`);
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new UpstreamError(this.name, 'invalid', `ancestry of ${id}: not a JSON array of ids`);
    return ids;
  }

  /**
   * The layer as a stream; the caller tees it to disk and to clients. `expectedSize`
   * (X-Docker-Size of the image's json), when known, bounds a body without Content-Length.
   */
  async layer(id: string, auth: V1UpstreamAuth, expectedSize?: number): Promise<UpstreamBlob | undefined> {
    const response = await this.registryCall(`images/${id}/layer`, auth);
    if (response === undefined) return undefined;
    return expectedSizeBlob(this.name, response, expectedSize, `layer of ${id}`);
  }

  /** GET /v1/search at the index. */
  async search(query: string, n: number): Promise<V1SearchResult[]> {
    const url = new URL(`v1/search?q=${encodeURIComponent(query)}&n=${n}`, this.index);
    const response = await this.send(url, { 'x-docker-token': 'true', ...(this.basicAuth ? { authorization: this.basicAuth } : {}) });
    if (response.statusCode !== 200) return failWith(this.name, response, 'search');
    const body = (await this.json(response, 'search')) as { results?: unknown };
    return Array.isArray(body.results) ? (body.results as V1SearchResult[]).filter((r) => typeof r?.name === 'string') : [];
  }

  /** Aborts requests still running (a shutdown past its grace period), so nothing holds the process. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }

  /**
   * A GET on the registry. 404 → undefined. With a repository session, a refused token is
   * renewed at the index once (tokens were single-use on the Hub).
   */
  private async registryCall(path: string, auth: V1UpstreamAuth): Promise<Dispatcher.ResponseData | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      let base = this.fixedRegistry ?? this.index;
      const headers: Record<string, string> = {};
      if (auth.kind === 'passthrough') headers.authorization = auth.authorization;
      if (auth.kind === 'repository') {
        const session = await this.session(auth.repository, attempt > 0);
        if (!session) return undefined; // the index does not know the repository
        base = session.registry;
        if (session.token) headers.authorization = `Token ${session.token}`;
      }
      const response = await this.send(new URL(`v1/${path}`, base), headers);
      if (response.statusCode === 404) return discard(response, undefined);
      if (response.statusCode === 200) return response;
      if (response.statusCode === 401 && auth.kind === 'repository' && attempt === 0) {
        await response.body.dump();
        continue;
      }
      return failWith(this.name, response, `GET ${path}`);
    }
    throw new UpstreamError(this.name, 'denied', `GET ${path}: the index's token was refused`);
  }

  /** The repository's session, from the index when missing or stale; undefined: unknown there. */
  private async session(repository: string, renew: boolean): Promise<Session | undefined> {
    const current = this.sessions.get(repository);
    if (current && !renew && current.expires > this.now()) return current;
    if ((await this.repositoryImages(repository)) === undefined) return undefined;
    return this.sessions.get(repository);
  }

  private async send(url: URL, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const started = performance.now();
    try {
      const response = await this.agent.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers: { 'user-agent': USER_AGENT, ...headers } });
      this.observer?.request(url.pathname.includes('/layer') ? 'blob' : url.pathname.includes('/tags') ? 'tags' : 'other', response.statusCode, (performance.now() - started) / 1000);
      return response;
    } catch (error) {
      this.observer?.request('other', 'error', (performance.now() - started) / 1000);
      throw networkFailure(this.name, `GET ${url.pathname}`, error);
    }
  }

  private async json(response: Dispatcher.ResponseData, what: string): Promise<unknown> {
    const bytes = await readBounded(response.body, MAX_MANIFEST_BYTES, () => new UpstreamError(this.name, 'invalid', `${what}: response too large`));
    this.observer?.received(bytes.byteLength);
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new UpstreamError(this.name, 'invalid', `${what}: not JSON`);
    }
  }
}

function withSlash(url: string): URL {
  return new URL(url.endsWith('/') ? url : `${url}/`);
}

/** Every value of a header, comma-joined: clients join repeated X-Docker-Token values (§4). */
function headerText(response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}
