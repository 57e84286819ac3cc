import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { parseConfig } from '../../src/config/load.js';
import type { V2UpstreamConfig } from '../../src/config/schema.js';
import type { UpstreamError } from '../../src/upstream/errors.js';
import { V2RegistryClient } from '../../src/upstream/v2-client.js';
import { startTestServer } from '../support/http-server.js';

function client(url: string, extra: Record<string, unknown> = {}): V2RegistryClient {
  const upstream = parseConfig({ upstreams: [{ name: 'up', url, timeout: '2s', ...extra }] }).upstreams[0] as V2UpstreamConfig;
  return new V2RegistryClient(upstream);
}

test('Bearer flow: challenge, token with credentials, token cached per scope', async (t) => {
  let tokensIssued = 0;
  const auth = await startTestServer((req, res) => {
    const url = new URL(req.url ?? '', 'http://x');
    assert.equal(req.headers.authorization, `Basic ${Buffer.from('alice:secret').toString('base64')}`);
    tokensIssued += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ token: `tok:${url.searchParams.get('scope')}:${url.searchParams.get('service')}`, expires_in: 300 }));
  });
  t.after(() => auth.close());
  const registry = await startTestServer((req, res) => {
    const scope = /^\/v2\/(.+)\/blobs\//.exec(req.url ?? '')?.[1];
    if (req.headers.authorization !== `Bearer tok:repository:${scope}:pull:reg.example`) {
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="${auth.url}/token",service="reg.example",scope="repository:${scope}:pull"`);
      res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    res.setHeader('content-length', '5');
    res.end('hello');
  });
  t.after(() => registry.close());
  // The token server is another origin over plain http: allowed to see the password only when listed.
  const upstream = client(registry.url, { username: 'alice', password: 'secret', tokenRealms: [auth.url] });
  t.after(() => upstream.close());

  for (let i = 0; i < 3; i++) {
    const blob = await upstream.fetchBlob('org/app', 'sha256:1');
    assert.equal(blob?.size, 5);
    assert.equal((await buffer(blob.body)).toString(), 'hello');
  }
  assert.equal(tokensIssued, 1, 'one token for three requests of one scope');
  assert.equal(registry.requests.length, 4, 'one 401, then the token is sent up front');
  await upstream.fetchBlob('org/other', 'sha256:1').then((b) => b && buffer(b.body));
  assert.equal(tokensIssued, 2, 'another repository is another scope');
});

test('redirects are followed, and credentials never go to another origin', async (t) => {
  const cdn = await startTestServer((_req, res) => {
    res.setHeader('content-length', '3');
    res.end('cdn');
  });
  t.after(() => cdn.close());
  const registry = await startTestServer((req, res) => {
    if (!req.headers.authorization) {
      res.statusCode = 401;
      res.setHeader('www-authenticate', 'Basic realm="r"');
      res.end();
      return;
    }
    res.statusCode = 307;
    res.setHeader('location', `${cdn.url}/signed/blob?sig=1`);
    res.end();
  });
  t.after(() => registry.close());
  const upstream = client(registry.url, { username: 'bob', password: 'pw' });
  t.after(() => upstream.close());

  const blob = await upstream.fetchBlob('a/b', 'sha256:2');
  assert.equal((await buffer(blob!.body)).toString(), 'cdn');
  assert.equal(cdn.requests.length, 1);
  assert.equal(cdn.requests[0]?.url, '/signed/blob?sig=1');
  assert.equal(cdn.requests[0]?.headers.authorization, undefined);
  assert.ok(registry.requests.at(-1)?.headers.authorization?.startsWith('Basic '));
});

test('failures are classified: 404 is absence, 429 rate-limited, 5xx and refused connections unavailable', async (t) => {
  let status = 404;
  const registry = await startTestServer((_req, res) => {
    res.statusCode = status;
    if (status === 429) res.setHeader('retry-after', '7');
    res.end();
  });
  t.after(() => registry.close());
  const upstream = client(registry.url);
  t.after(() => upstream.close());

  assert.equal(await upstream.fetchBlob('a', 'sha256:3'), undefined);
  assert.equal(await upstream.getManifest('a', 'latest', []), undefined);
  status = 429;
  await assert.rejects(upstream.headManifest('a', 'latest', []), (e: UpstreamError) => e.kind === 'rate-limited' && e.options.retryAfterSeconds === 7);
  status = 503;
  await assert.rejects(upstream.fetchBlob('a', 'sha256:3'), (e: UpstreamError) => e.kind === 'unavailable' && e.isTransient);
  status = 403;
  await assert.rejects(upstream.fetchBlob('a', 'sha256:3'), (e: UpstreamError) => e.kind === 'denied' && !e.isTransient);

  const refused = client('http://127.0.0.1:1');
  t.after(() => refused.close());
  await assert.rejects(refused.getManifest('a', 'latest', []), (e: UpstreamError) => e.kind === 'unavailable' && /ECONNREFUSED/.test(e.message));
});

test('manifests: upstream Accept is sent, media type taken from Content-Type or sniffed', async (t) => {
  const registry = await startTestServer((req, res) => {
    res.setHeader('content-type', req.url?.includes('generic') ? 'application/json' : 'application/vnd.oci.image.index.v1+json');
    res.setHeader('docker-content-digest', 'sha256:stated');
    res.end(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] }));
  });
  t.after(() => registry.close());
  const upstream = client(registry.url);
  t.after(() => upstream.close());
  const index = await upstream.getManifest('a', 'latest', ['application/vnd.oci.image.index.v1+json', 'application/vnd.oci.image.manifest.v1+json']);
  assert.equal(index?.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.equal(index?.statedDigest, 'sha256:stated');
  assert.equal(registry.requests[0]?.headers.accept, 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json');
  const sniffed = await upstream.getManifest('generic', 'latest', []);
  assert.equal(sniffed?.mediaType, 'application/vnd.oci.image.manifest.v1+json');
});

test('tag lists: a body that is not JSON, or breaks off, is an upstream failure, not an internal error', async (t) => {
  let mode: 'garbage' | 'cut' = 'garbage';
  const registry = await startTestServer((_req, res) => {
    if (mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>oops</html>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"tags":[');
    setTimeout(() => res.destroy(), 20);
  });
  t.after(() => registry.close());
  const upstream = client(registry.url);
  t.after(() => upstream.close());
  await assert.rejects(upstream.listTags('a'), (e: UpstreamError) => e.name === 'UpstreamError' && e.kind === 'invalid');
  mode = 'cut';
  await assert.rejects(upstream.listTags('a'), (e: UpstreamError) => e.name === 'UpstreamError' && e.kind === 'unavailable' && e.isTransient);
});
