// What a hostile upstream can make the mirror do (issue 14, points 4 and 5): every buffered
// upstream body is bounded, a blob without Content-Length is held to its expected size, the
// configured credentials go only where they belong, and redirects never carry them, never
// leave http(s) and never step down from https to http.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { parseConfig } from '../../src/config/load.js';
import type { V2UpstreamConfig } from '../../src/config/schema.js';
import type { UpstreamError } from '../../src/upstream/errors.js';
import { redirectTarget, V2RegistryClient } from '../../src/upstream/v2-client.js';
import { V1RegistryClient, type V1UpstreamConfig } from '../../src/upstream/v1-client.js';
import { startTestServer, type TestServer } from '../support/http-server.js';

const BASIC = `Basic ${Buffer.from('alice:secret').toString('base64')}`;

function client(url: string, extra: Record<string, unknown> = {}): V2RegistryClient {
  const upstream = parseConfig({ upstreams: [{ name: 'up', url, timeout: '5s', username: 'alice', password: 'secret', ...extra }] }).upstreams[0] as V2UpstreamConfig;
  return new V2RegistryClient(upstream);
}

/** A registry whose 401 names `realm`; with a Bearer token it answers the blob "hello". */
async function registryWithRealm(t: test.TestContext, realm: (self: string) => string): Promise<TestServer> {
  let self = '';
  const registry = await startTestServer((req, res) => {
    if (req.url?.startsWith('/token')) {
      res.end(JSON.stringify({ token: 'own-origin-token' }));
      return;
    }
    if (!req.headers.authorization?.startsWith('Bearer ')) {
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="${realm(self)}",service="s"`);
      res.end();
      return;
    }
    res.setHeader('content-length', '5');
    res.end('hello');
  });
  self = registry.url;
  t.after(() => registry.close());
  return registry;
}

async function tokenServer(t: test.TestContext): Promise<TestServer> {
  const server = await startTestServer((_req, res) => res.end(JSON.stringify({ token: 'foreign-token' })));
  t.after(() => server.close());
  return server;
}

test('credentials are not sent to a token realm on another origin over plain http', async (t) => {
  const foreign = await tokenServer(t);
  const registry = await registryWithRealm(t, () => `${foreign.url}/token`);
  const upstream = client(registry.url);
  t.after(() => upstream.close());
  const blob = await upstream.fetchBlob('a/b', 'sha256:1');
  assert.equal((await buffer(blob!.body)).toString(), 'hello', 'an anonymous token still works');
  assert.equal(foreign.requests.length, 1);
  assert.equal(foreign.requests[0]?.headers.authorization, undefined, 'the password stayed home');
});

test('credentials go to a realm on the upstream\'s own origin, and to one listed in tokenRealms', async (t) => {
  const own = await registryWithRealm(t, (self) => `${self}/token`);
  const ownClient = client(own.url);
  t.after(() => ownClient.close());
  await ownClient.fetchBlob('a/b', 'sha256:1').then((b) => b && buffer(b.body));
  assert.equal(own.requests.find((r) => r.url.startsWith('/token'))?.headers.authorization, BASIC);

  const listed = await tokenServer(t);
  const registry = await registryWithRealm(t, () => `${listed.url}/token`);
  const listedClient = client(registry.url, { tokenRealms: [`${listed.url}/`] });
  t.after(() => listedClient.close());
  await listedClient.fetchBlob('a/b', 'sha256:1').then((b) => b && buffer(b.body));
  assert.equal(listed.requests[0]?.headers.authorization, BASIC);
});

test('a realm that is not an http(s) URL is refused', async (t) => {
  for (const realm of ['file:///etc/passwd', 'gopher://x/', 'not a url']) {
    const registry = await registryWithRealm(t, () => realm);
    const upstream = client(registry.url);
    t.after(() => upstream.close());
    await assert.rejects(upstream.fetchBlob('a/b', 'sha256:1'), (e: UpstreamError) => e.kind === 'invalid' && /not an http\(s\) URL/.test(e.message), realm);
  }
});

test('a huge token answer is refused at 1 MiB instead of being buffered whole', async (t) => {
  let sent = 0;
  const auth = await startTestServer((_req, res) => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const write = () => {
      while (sent < 64 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', write);
      }
      res.end();
    };
    write();
  });
  t.after(() => auth.close());
  const registry = await registryWithRealm(t, () => `${auth.url}/token`);
  const upstream = client(registry.url, { tokenRealms: [auth.url] });
  t.after(() => upstream.close());
  await assert.rejects(upstream.fetchBlob('a/b', 'sha256:1'), (e: UpstreamError) => e.kind === 'invalid' && /over 1048576 bytes/.test(e.message));
  assert.ok(sent < 16 * 1024 * 1024, `the mirror read ${sent} bytes of a token answer`);
});

test('redirects carry no credentials, even to the same origin', async (t) => {
  const registry = await startTestServer((req, res) => {
    if (req.url?.startsWith('/storage/')) {
      res.end('data');
      return;
    }
    if (!req.headers.authorization) {
      res.statusCode = 401;
      res.setHeader('www-authenticate', 'Basic realm="r"');
      res.end();
      return;
    }
    res.statusCode = 302;
    res.setHeader('location', '/storage/blob?sig=1');
    res.end();
  });
  t.after(() => registry.close());
  const upstream = client(registry.url);
  t.after(() => upstream.close());
  const blob = await upstream.fetchBlob('a/b', 'sha256:2');
  assert.equal((await buffer(blob!.body)).toString(), 'data');
  assert.equal(registry.requests.at(-1)?.url, '/storage/blob?sig=1');
  assert.equal(registry.requests.at(-1)?.headers.authorization, undefined);
});

test('redirects to non-http(s) schemes, and from https to http, are refused', async (t) => {
  const registry = await startTestServer((_req, res) => {
    res.statusCode = 307;
    res.setHeader('location', 'file:///etc/shadow');
    res.end();
  });
  t.after(() => registry.close());
  const upstream = client(registry.url);
  t.after(() => upstream.close());
  await assert.rejects(upstream.fetchBlob('a/b', 'sha256:2'), (e: UpstreamError) => e.kind === 'invalid' && /file: URL refused/.test(e.message));
  assert.throws(() => redirectTarget('up', new URL('https://registry.example/v2/x'), 'http://cdn.example/blob'), /from https to plain http/);
  assert.equal(redirectTarget('up', new URL('https://registry.example/v2/x'), 'https://cdn.example/blob').href, 'https://cdn.example/blob');
  assert.equal(redirectTarget('up', new URL('http://registry.example/v2/x'), '/other').href, 'http://registry.example/other');
});

test('a blob without Content-Length is cut past its expected size; a Content-Length that disagrees is refused at once', async (t) => {
  let withLength = false;
  const registry = await startTestServer((_req, res) => {
    if (withLength) res.setHeader('content-length', '10');
    res.write(Buffer.alloc(10, 1));
    if (withLength) return void res.end();
    const more = setInterval(() => res.write(Buffer.alloc(1000, 2)), 5);
    res.on('close', () => clearInterval(more));
  });
  t.after(() => registry.close());
  const upstream = client(registry.url, { username: undefined, password: undefined });
  t.after(() => upstream.close());
  const endless = await upstream.fetchBlob('a/b', 'sha256:3', 5000);
  assert.equal(endless?.size, undefined);
  await assert.rejects(buffer(endless!.body), (e: UpstreamError) => e.kind === 'invalid' && /more than the expected 5000 bytes/.test(e.message));

  withLength = true;
  await assert.rejects(upstream.fetchBlob('a/b', 'sha256:3', 5000), (e: UpstreamError) => /Content-Length 10, expected 5000/.test(e.message));
  const exact = await upstream.fetchBlob('a/b', 'sha256:3', 10);
  assert.equal((await buffer(exact!.body)).length, 10);
});

test('v1: a layer without Content-Length is held to X-Docker-Size', async (t) => {
  const registry = await startTestServer((_req, res) => {
    const more = setInterval(() => res.write(Buffer.alloc(1000, 3)), 5);
    res.on('close', () => clearInterval(more));
  });
  t.after(() => registry.close());
  const config = parseConfig({ upstreams: [{ name: 'v1up', v1: { index: registry.url }, timeout: '5s' }] }).upstreams[0] as V1UpstreamConfig;
  const upstream = new V1RegistryClient(config);
  t.after(() => upstream.close());
  const layer = await upstream.layer('a'.repeat(64), { kind: 'none' }, 3000);
  await assert.rejects(buffer(layer!.body), /more than the expected 3000 bytes/);
});

test('cached upstream tokens are bounded: scopes are names any client can make up', async () => {
  const { TokenCache } = await import('../../src/upstream/token-cache.js');
  const cache = new TokenCache(Date.now, 100);
  for (let i = 0; i < 1000; i++) await cache.getOrFetch(`realm|service|repository:made-up-${i}:pull`, () => Promise.resolve({ token: `t${i}`, expiresInSeconds: 300 }));
  assert.equal(cache.size, 100);
  assert.equal(cache.get('realm|service|repository:made-up-999:pull'), 't999', 'the most recent are kept');
});
