// The web page's routes through inject (no browser): the / redirect for browsers only,
// ui.enabled, and bad input answered in the OCI error envelope.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { metadataKeys } from '../../src/storage/keys.js';
import { repositoryActivity } from '../../src/ui/plugin.js';
import { catalogShard } from '../../src/ui/repository-catalog.js';
import { startInProcess } from '../support/in-process.js';
import { makeTempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';

test('ui routes: a browser GET / goes to /ui/, others keep the 404; bad queries and tokens get OCI errors', async (t) => {
  const longshore = await startInProcess({ logLevel: 'silent' });
  t.after(() => longshore.stop());
  const { app } = longshore.server;

  const browser = await app.inject({ url: '/', headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  assert.equal(browser.statusCode, 302);
  assert.equal(browser.headers.location, '/ui/');
  const client = await app.inject({ url: '/', headers: { accept: 'application/json' } });
  assert.equal(client.statusCode, 404);
  assert.equal(client.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'UNSUPPORTED');

  const page = await app.inject({ url: '/ui/' });
  assert.equal(page.statusCode, 200);
  assert.match(page.headers['content-type'] as string, /text\/html/);
  assert.match(page.headers['content-security-policy'] as string, /default-src 'self'/);
  assert.equal((await app.inject({ url: '/ui/app.js' })).statusCode, 200);
  assert.equal((await app.inject({ url: '/ui/secrets.txt' })).statusCode, 404);

  const bad = [
    ['/ui/api/repositories?page=zero', 400, 'UNSUPPORTED'],
    ['/ui/api/repositories?perPage=100000', 400, 'UNSUPPORTED'],
    ['/ui/api/repositories?sort=name', 400, 'UNSUPPORTED'],
    ['/ui/api/repository?name=..%2Fetc', 400, 'NAME_INVALID'],
    ['/ui/api/repository?name=library%2Fnothing', 404, 'NAME_UNKNOWN'],
    ['/ui/api/image?name=library%2Fx&digest=sha256%3Azz', 400, 'DIGEST_INVALID'],
  ] as const;
  for (const [url, status, code] of bad) {
    const response = await app.inject({ url });
    assert.equal(response.statusCode, status, url);
    assert.equal(response.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, code, url);
  }
  const forged = await app.inject({ url: '/ui/api/repositories', headers: { authorization: 'Bearer not.a.token' } });
  assert.equal(forged.statusCode, 401);
  assert.equal(forged.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'UNAUTHORIZED');
  const session = await app.inject({ url: '/ui/api/session' });
  assert.deepEqual({ ...session.json<Record<string, unknown>>(), registryHost: undefined }, { user: null, anonymousPull: true, loginAvailable: false, registryHost: undefined });
});

test('ui.enabled: false serves no page and no redirect', async (t) => {
  const longshore = await startInProcess({ logLevel: 'silent', ui: { enabled: false } });
  t.after(() => longshore.stop());
  const { app } = longshore.server;
  assert.equal((await app.inject({ url: '/', headers: { accept: 'text/html' } })).statusCode, 404);
  assert.equal((await app.inject({ url: '/ui/' })).statusCode, 404);
  assert.equal((await app.inject({ url: '/ui/api/overview' })).statusCode, 404);
});

test('ui: with auth.anonymousPull off, anonymous visitors get no overview and no repositories', async (t) => {
  const longshore = await startInProcess({ logLevel: 'silent', auth: { anonymousPull: false }, upstreams: [{ name: 'hub', url: 'http://127.0.0.1:9', default: true }] });
  t.after(() => longshore.stop());
  const { app } = longshore.server;
  const name = 'library/alpine';
  await longshore.server.services.metadata.put(metadataKeys.repositoryCatalogShard(catalogShard(name)), {
    [name]: { kind: 'mirrored', upstream: 'hub', repository: name, pulls: 3, tags: {} },
  });
  assert.equal((await app.inject({ url: '/ui/api/overview' })).statusCode, 401);
  assert.equal((await app.inject({ url: '/ui/api/upstreams' })).statusCode, 401);
  const list = await app.inject({ url: '/ui/api/repositories' });
  assert.equal(list.statusCode, 200);
  assert.equal(list.json<{ total: number }>().total, 0, 'the mirrored repository is hidden');
  assert.equal((await app.inject({ url: '/ui/api/repository?name=library%2Falpine' })).statusCode, 404);
});

test('ui: a repository another replica recorded shows up within the 5 s catalog snapshot; anonymous visitors see it when auth.anonymousPull allows', async (t) => {
  const longshore = await startInProcess({ logLevel: 'silent', upstreams: [{ name: 'hub', url: 'http://127.0.0.1:9', default: true }] });
  t.after(() => longshore.stop());
  const name = 'library/alpine';
  await longshore.server.services.metadata.put(metadataKeys.repositoryCatalogShard(catalogShard(name)), {
    [name]: { kind: 'mirrored', upstream: 'hub', repository: name, pulls: 3, tags: {} },
  });
  const listed = async () => (await longshore.server.app.inject({ url: '/ui/api/repositories' })).json<{ items: Array<{ name: string; pulls: number }> }>().items;
  await pollUntil(async () => (await listed()).length > 0, { timeoutMs: 8000, intervalMs: 250, what: 'the catalog snapshot to refresh' });
  assert.deepEqual((await listed()).map((r) => [r.name, r.pulls]), [[name, 3]]);
});

test('ui: which requests count as pulls and pushes of a repository', () => {
  const cases: Array<[string, string, number, ReturnType<typeof repositoryActivity>]> = [
    ['GET', '/v2/library/alpine/manifests/3.20', 200, { api: 'v2', action: 'pull', name: 'library/alpine', tag: '3.20' }],
    ['GET', '/v2/apps/web/manifests/latest?ns=docker.io', 200, { api: 'v2', action: 'pull', name: 'apps/web', tag: 'latest' }],
    ['GET', `/v2/apps/web/manifests/sha256:${'a'.repeat(64)}`, 200, { api: 'v2', action: 'pull', name: 'apps/web', tag: undefined }],
    ['PUT', '/v2/corp/app/manifests/v1', 201, { api: 'v2', action: 'push', name: 'corp/app', tag: 'v1' }],
    ['GET', '/v1/repositories/library/busybox/tags/latest', 200, { api: 'v1', action: 'pull', name: 'library/busybox', tag: 'latest' }],
    ['GET', '/v1/repositories/library/busybox/images', 200, { api: 'v1', action: 'pull', name: 'library/busybox', tag: undefined }],
    ['HEAD', '/v2/library/alpine/manifests/3.20', 200, undefined],
    ['GET', '/v2/library/alpine/manifests/3.20', 404, undefined],
    ['GET', '/v2/library/alpine/manifests/3.20', 401, undefined],
    ['PUT', '/v2/corp/app/manifests/v1', 400, undefined],
    ['GET', '/v2/library/alpine/blobs/sha256:00', 200, undefined],
    ['GET', '/v2/library/alpine/tags/list', 200, undefined],
    ['GET', '/v1/repositories/library/busybox/tags', 200, undefined],
    // A v1 push (Docker 1.10) ends by tagging the image.
    ['PUT', '/v1/repositories/corp/legacy/tags/v1', 200, { api: 'v1', action: 'push', name: 'corp/legacy', tag: 'v1' }],
    ['PUT', '/v1/repositories/corp/legacy/tags/v1', 401, undefined],
  ];
  for (const [method, url, status, expected] of cases) assert.deepEqual(repositoryActivity(method, url, status), expected, `${method} ${url} ${status}`);
});

test('ui: at start-up, v1 tag records already in the store (a v1 push, a store from before the page knew v1) are reconciled into the list', async (t) => {
  const data = await makeTempDir('ui-v1-reconcile');
  t.after(() => data.remove());
  const config = { logLevel: 'silent', private: { namespaces: ['corp'], anonymousPull: true } };
  const id = 'c'.repeat(64);
  const first = await startInProcess(config, data.path);
  // Written beside the routes: the running catalog never hears of it.
  const { metadata } = first.server.services;
  await metadata.put(`${metadataKeys.v1PrivateImages}/${id}`, { id, json: Buffer.from(JSON.stringify({ id })).toString('base64'), ancestry: [id], complete: true, layer: { digest: `sha256:${id}`, size: 321 } });
  await metadata.put(metadataKeys.v1RepositoryTag('corp/old', '1.0'), { id, updated: new Date().toISOString() });
  await first.stop();

  const second = await startInProcess(config, data.path);
  t.after(() => second.stop());
  const repository = async () => second.server.app.inject({ url: '/ui/api/repository?name=corp%2Fold' });
  await pollUntil(async () => (await repository()).statusCode === 200, { timeoutMs: 8000, intervalMs: 100, what: 'the start-up reconcile' });
  const tags = (await repository()).json<{ tags: { items: Array<{ tag: string; api: string; imageId: string; size: number }> } }>().tags.items;
  assert.deepEqual(tags.map((tag) => [tag.tag, tag.api, tag.imageId, tag.size]), [['1.0', 'v1', id, 321]]);
});
