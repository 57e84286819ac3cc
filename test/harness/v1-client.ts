// A Docker Registry v1 client that talks the way Docker 1.10's `registry.Session` does
// (docs: v1-protocol.md §4, §7): Basic credentials only on index calls (X-Docker-Token: true),
// then `Authorization: Token <last X-Docker-Token>` on every later call to any host, cookies
// replayed, registry calls sent to the X-Docker-Endpoints hosts. No real v1 client can be
// installed from Debian any more, so the end-to-end tests drive the server with this.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';

export interface V1Image {
  id: string;
  /** Image JSON bytes exactly as pushed. */
  json: Buffer;
  /** Layer bytes as uploaded (gzip tar). */
  layer: Buffer;
  /** X-Docker-Checksum (TarSum), computed by the caller. */
  tarsum: string;
}

export interface V1Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text(): string;
  json<T>(): T;
}

export interface PulledImage {
  id: string;
  json: Buffer;
  layer: Buffer;
  size: number;
}

const USER_AGENT = 'docker/1.10.3 go/go1.5.3 git-commit/20f81dd kernel/6.1.0 os/linux arch/amd64';

export function payloadChecksum(image: { json: Buffer; layer: Buffer }): string {
  return `sha256:${createHash('sha256').update(image.json).update('\n').update(image.layer).digest('hex')}`;
}

export class V1Client {
  /** The last X-Docker-Token seen, on any response (the client caches even unrequested ones). */
  token: string | undefined;
  readonly cookies = new Map<string, string>();
  readonly calls: Array<{ method: string; url: string; status: number; authorization: string | undefined }> = [];

  constructor(
    /** The index: the host named in the image reference, e.g. http://127.0.0.1:5000. */
    readonly index: string,
    private readonly credentials?: { username: string; password: string },
  ) {}

  /** One call. `indexCall` marks the calls that send X-Docker-Token: true (and Basic). */
  async call(method: string, url: string, options: { body?: Buffer | string | Readable; indexCall?: boolean; headers?: Record<string, string> } = {}): Promise<V1Response> {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...options.headers };
    if (options.indexCall) headers['x-docker-token'] = 'true';
    if (headers.authorization === undefined) {
      if (options.indexCall && this.credentials) headers.authorization = basic(this.credentials.username, this.credentials.password);
      else if (this.token) headers.authorization = `Token ${this.token}`;
    }
    if (this.cookies.size > 0) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) headers['content-type'] ??= 'application/json';
    const response = await request(url, { method: method as 'GET', headers, body: options.body });
    const body = Buffer.from(await response.body.arrayBuffer());
    this.calls.push({ method, url, status: response.statusCode, authorization: headers.authorization });
    const tokenHeader = response.headers['x-docker-token'];
    if (tokenHeader !== undefined) this.token = Array.isArray(tokenHeader) ? tokenHeader.join(',') : tokenHeader;
    const setCookie = response.headers['set-cookie'];
    for (const cookie of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const [pair] = cookie.split(';');
      const eq = (pair ?? '').indexOf('=');
      if (eq > 0) this.cookies.set((pair as string).slice(0, eq).trim(), (pair as string).slice(eq + 1).trim());
    }
    return {
      status: response.statusCode,
      headers: response.headers,
      body,
      text: () => body.toString('utf8'),
      json: <T>() => JSON.parse(body.toString('utf8')) as T,
    };
  }

  /** Docker ≥1.11 login: GET /v1/users/ with Basic. Returns the status. */
  async login(): Promise<number> {
    return (await this.call('GET', `${this.index}/v1/users/`, { headers: this.credentials ? { authorization: basic(this.credentials.username, this.credentials.password) } : {} })).status;
  }

  /** Docker ≤1.10 login: POST /v1/users/ first, then GET with Basic on 400 "exists" or 401. */
  async legacyLogin(): Promise<{ created: boolean; status: number }> {
    assert.ok(this.credentials, 'legacy login needs credentials');
    const body = JSON.stringify({ username: this.credentials.username, password: this.credentials.password, auth: '', email: 'e@example.com' });
    const created = await this.call('POST', `${this.index}/v1/users/`, { body, headers: { 'content-type': 'application/json; charset=utf-8' } });
    if (created.status === 201) return { created: true, status: 201 };
    if ((created.status === 400 && created.text() === '"Username or email already exists"') || created.status === 401) {
      return { created: false, status: await this.login() };
    }
    return { created: false, status: created.status };
  }

  /** Registry base URLs from an index response ("host:port" entries, scheme of the index). */
  endpointsFrom(response: V1Response): string[] {
    const header = response.headers['x-docker-endpoints'];
    const values = (Array.isArray(header) ? header : header ? [header] : []).flatMap((h) => h.split(',')).map((h) => h.trim()).filter(Boolean);
    const scheme = new URL(this.index).protocol;
    return values.map((host) => `${scheme}//${host}/v1/`);
  }

  /**
   * `docker push INDEX/NAME` of a chain (base first) with tags on images, in Docker 1.10's
   * order (§7.2). Returns the calls' statuses for the caller to inspect; throws on the
   * first status a real client would fail on.
   */
  async push(name: string, chain: readonly V1Image[], tags: Record<string, string>): Promise<void> {
    const list = chain.flatMap((image) => {
      const imageTags = Object.entries(tags).filter(([, id]) => id === image.id).map(([tag]) => tag);
      return imageTags.length === 0 ? [{ id: image.id }] : imageTags.map((tag) => ({ id: image.id, Tag: tag }));
    });
    const start = await this.call('PUT', `${this.index}/v1/repositories/${name}/`, { body: JSON.stringify(list), indexCall: true });
    assert.ok(start.status === 200 || start.status === 201, `PUT repository: ${start.status} ${start.text()}`);
    const endpoints = this.endpointsFrom(start);
    assert.ok(endpoints.length > 0, "Index response didn't contain any endpoints");
    for (const endpoint of endpoints) {
      const exists = new Map<string, boolean>();
      for (const image of chain) exists.set(image.id, (await this.call('GET', `${endpoint}images/${image.id}/json`)).status === 200);
      for (const image of chain) {
        if (!exists.get(image.id)) {
          const json = await this.call('PUT', `${endpoint}images/${image.id}/json`, { body: image.json });
          if (json.status !== 200) {
            const skip = json.body.length > 0 && tryJson(json.text())?.error === 'Image already exists';
            assert.ok(skip, `PUT json ${image.id}: ${json.status} ${json.text()}`);
          } else {
            // No Content-Length: Docker streams the TarSum reader's output chunked.
            const layer = await this.call('PUT', `${endpoint}images/${image.id}/layer`, {
              body: Readable.from(chunks(image.layer, 32 * 1024)),
              headers: { 'content-type': 'application/octet-stream' },
            });
            assert.equal(layer.status, 200, `PUT layer ${image.id}: ${layer.text()}`);
            const checksum = await this.call('PUT', `${endpoint}images/${image.id}/checksum`, {
              headers: { 'x-docker-checksum': image.tarsum, 'x-docker-checksum-payload': payloadChecksum(image) },
            });
            assert.equal(checksum.status, 200, `PUT checksum ${image.id}: ${checksum.text()}`);
          }
        }
        for (const [tag, id] of Object.entries(tags)) {
          if (id !== image.id) continue;
          const put = await this.call('PUT', `${endpoint}repositories/${name}/tags/${tag}`, { body: JSON.stringify(id) });
          assert.ok(put.status === 200 || put.status === 201, `PUT tag ${tag}: ${put.status} ${put.text()}`);
        }
      }
    }
    const done = await this.call('PUT', `${this.index}/v1/repositories/${name}/images`, {
      body: '[]',
      indexCall: true,
      headers: { 'x-docker-endpoints': endpoints.join(', ') },
    });
    assert.equal(done.status, 204, `PUT images (validate): ${done.status} ${done.text()}`);
  }

  /**
   * `docker pull INDEX/NAME[:TAG]` (§7.3): index call, tags from the endpoints, then for each
   * tagged image ancestry, json base first, and the layers. `mirrors` get the image-data calls
   * first, as `--registry-mirror` did (§10); a failing mirror falls back to the endpoints.
   */
  async pull(name: string, tag?: string, options: { mirrors?: string[] } = {}): Promise<{ tags: Record<string, string>; images: Map<string, PulledImage>; endpoints: string[] }> {
    const index = await this.call('GET', `${this.index}/v1/repositories/${name}/images`, { indexCall: true });
    assert.equal(index.status, 200, `GET images: ${index.status} ${index.text()}`);
    const endpoints = this.endpointsFrom(index);
    const registries = endpoints.length > 0 ? endpoints : [`${this.index}/v1/`];
    const tagName = name.includes('/') ? name : `library/${name}`; // the library quirk of §3
    let tags: Record<string, string> | undefined;
    for (const endpoint of registries) {
      const response = tag ? await this.call('GET', `${endpoint}repositories/${tagName}/tags/${tag}`) : await this.call('GET', `${endpoint}repositories/${tagName}/tags`);
      if (response.status === 404) throw new Error(`${name}${tag ? `:${tag}` : ''} not found`);
      if (response.status !== 200) continue;
      tags = tag ? { [tag]: response.json<string>() } : response.json<Record<string, string>>();
      break;
    }
    assert.ok(tags, 'Could not reach any registry endpoint');
    const images = new Map<string, PulledImage>();
    for (const id of new Set(Object.values(tags))) {
      let pulled = false;
      for (const base of [...(options.mirrors ?? []).map((m) => `${m}/v1/`), ...registries]) {
        if (await this.pullImage(base, id, images)) {
          pulled = true;
          break;
        }
      }
      assert.ok(pulled, `image ${id} could not be pulled from any mirror or endpoint`);
    }
    return { tags, images, endpoints };
  }

  private async pullImage(base: string, id: string, images: Map<string, PulledImage>): Promise<boolean> {
    const ancestry = await this.call('GET', `${base}images/${id}/ancestry`);
    if (ancestry.status !== 200) return false;
    const ids = ancestry.json<string[]>();
    assert.equal(ids[0], id, 'ancestry starts with the image itself');
    const fetched: PulledImage[] = [];
    for (const ancestor of [...ids].reverse()) {
      const json = await this.call('GET', `${base}images/${ancestor}/json`);
      if (json.status !== 200) return false;
      const size = json.headers['x-docker-size'];
      assert.ok(size === undefined || /^\d+$/.test(String(size)), `X-Docker-Size must be an integer, got ${String(size)}`);
      fetched.push({ id: ancestor, json: json.body, layer: Buffer.alloc(0), size: Number(size ?? -1) });
    }
    for (const image of fetched) {
      if (images.has(image.id)) continue; // already in the local store
      const layer = await this.call('GET', `${base}images/${image.id}/layer`);
      if (layer.status !== 200) return false;
      image.layer = layer.body;
    }
    for (const image of fetched) if (!images.has(image.id)) images.set(image.id, image);
    return true;
  }

  async search(term: string, n?: number): Promise<V1Response> {
    return this.call('GET', `${this.index}/v1/search?q=${encodeURIComponent(term)}${n ? `&n=${n}` : ''}`, { indexCall: true });
  }
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

function tryJson(text: string): { error?: string } | undefined {
  try {
    return JSON.parse(text) as { error?: string };
  } catch {
    return undefined;
  }
}
