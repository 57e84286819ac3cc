// Search (`docker search` and `podman search` -> GET /v1/search) and the catalog
// (GET /v2/_catalog, where podman's search goes when there is no v1 search) list mirrored
// repositories with cached content as well as private ones, each as the caller may pull it.
// The upstream is the reference Go registry, the client podman; Longshore runs in process,
// with two upstreams so both client-facing name forms appear ("apps/web" through the default
// upstream, "other/apps/db" through a named one).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { request } from 'undici';
import { pushDockerImage } from '../harness/images.js';
import { podmanSearch } from '../harness/podman.js';
import { MEDIA_TYPES } from '../harness/registry-client.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { basic } from '../harness/v1-client.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';

let work: TempDir;
let registry: RegistryHandle;
let htpasswd: string;
let mirror: InProcessLongshore;

const ALICE = basic('alice', 'wonderland');

async function get(url: string, authorization?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: <T>() => T }> {
  const response = await request(url, { headers: authorization ? { authorization } : {} });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: <T>() => JSON.parse(text) as T };
}

async function pullManifest(server: InProcessLongshore, name: string, tag: string): Promise<void> {
  const response = await request(`${server.url}/v2/${name}/manifests/${tag}`, { headers: { accept: MEDIA_TYPES.dockerManifest } });
  await response.body.dump();
  assert.equal(response.statusCode, 200, `pull of ${name}:${tag}`);
}

const catalog = async (server: InProcessLongshore, authorization?: string, query = '') => get(`${server.url}/v2/_catalog${query}`, authorization);
const searchNames = async (server: InProcessLongshore, term: string, authorization?: string) =>
  (await get(`${server.url}/v1/search?q=${encodeURIComponent(term)}`, authorization)).json<{ results: Array<{ name: string }> }>().results.map((r) => r.name);

function upstreams() {
  return [
    { name: 'hub', url: registry.url, default: true },
    { name: 'other', url: registry.url },
  ];
}

before(async () => {
  work = await makeTempDir('search-catalog');
  htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  registry = await startRegistry();
  for (const repository of ['apps/web', 'apps/db', 'apps/never']) await pushDockerImage(registry.url, repository, 'v1', [2000]);
  mirror = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd }, upstreams: upstreams() });
  await pullManifest(mirror, 'apps/web', 'v1');
  await pullManifest(mirror, 'other/apps/db', 'v1');
  await pushDockerImage(mirror.url, 'corp/app', 'v1', [1000], { headers: { authorization: ALICE } });
});

after(async () => {
  await mirror?.stop();
  await registry?.dispose();
  await work?.remove();
});

test('catalog: anonymous callers see the cached mirrored repositories, users the private ones too, with n/last paging', async () => {
  const anonymous = await catalog(mirror);
  assert.equal(anonymous.status, 200, 'anonymous pulls of mirrored content are allowed (auth.anonymousPull)');
  assert.deepEqual(anonymous.json(), { repositories: ['apps/web', 'other/apps/db'] }, 'cached only: apps/never was never pulled; corp/app is private');

  assert.deepEqual((await catalog(mirror, ALICE)).json(), { repositories: ['apps/web', 'corp/app', 'other/apps/db'] });
  // What catalog clients do: a Bearer token for the scope the challenge names.
  const tokenResponse = await get(`${mirror.url}/token?service=longshore&scope=${encodeURIComponent('registry:catalog:*')}`, ALICE);
  const token = tokenResponse.json<{ token: string }>().token;
  assert.deepEqual((await catalog(mirror, `Bearer ${token}`)).json(), { repositories: ['apps/web', 'corp/app', 'other/apps/db'] });

  const first = await catalog(mirror, ALICE, '?n=1');
  assert.deepEqual(first.json(), { repositories: ['apps/web'] });
  assert.equal(first.headers.link, '</v2/_catalog?n=1&last=apps%2Fweb>; rel="next"');
  const rest = await catalog(mirror, ALICE, '?n=2&last=apps/web');
  assert.deepEqual(rest.json(), { repositories: ['corp/app', 'other/apps/db'] });
  assert.equal(rest.headers.link, undefined);
});

test('search: cached mirrored repositories for anyone who may pull them, private ones for users, with n/page paging', async () => {
  assert.deepEqual(await searchNames(mirror, 'app'), ['apps/web', 'other/apps/db']);
  assert.deepEqual(await searchNames(mirror, 'app', ALICE), ['apps/web', 'corp/app', 'other/apps/db']);
  assert.deepEqual(await searchNames(mirror, 'db'), ['other/apps/db']);
  assert.deepEqual(await searchNames(mirror, 'never', ALICE), [], 'not cached: not listed');
  const page = (await get(`${mirror.url}/v1/search?q=app&n=1&page=2`, ALICE)).json<{ num_results: number; num_pages: number; page: number; results: Array<{ name: string }> }>();
  assert.equal(page.num_results, 3);
  assert.equal(page.num_pages, 3);
  assert.deepEqual(page.results.map((r) => r.name), ['corp/app']);
});

test('without anonymous pulls, anonymous callers see nothing mirrored and the catalog challenges them', async (t) => {
  const closed = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd, anonymousPull: false }, upstreams: upstreams() });
  onCleanup(t, () => closed.stop());
  const pulled = await request(`${closed.url}/v2/apps/web/manifests/v1`, { headers: { accept: MEDIA_TYPES.dockerManifest, authorization: ALICE } });
  await pulled.body.dump();
  assert.equal(pulled.statusCode, 200);

  const anonymous = await catalog(closed);
  assert.equal(anonymous.status, 401);
  assert.match(String(anonymous.headers['www-authenticate']), /scope="registry:catalog:\*"/);
  assert.deepEqual((await catalog(closed, ALICE)).json(), { repositories: ['apps/web'] });
  assert.deepEqual(await searchNames(closed, 'app'), []);
  assert.deepEqual(await searchNames(closed, 'app', ALICE), ['apps/web']);
});

test('a server with no users configured lists its cached repositories instead of asking to log in', async (t) => {
  const open = await startInProcess({ upstreams: upstreams() });
  onCleanup(t, () => open.stop());
  await pullManifest(open, 'apps/db', 'v1');
  const answer = await catalog(open);
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.json(), { repositories: ['apps/db'] });
  assert.deepEqual(await searchNames(open, ''), ['apps/db']);
});

test('podman search: cached repositories over v1 search; over the catalog when v1 is off, private ones too with credentials', async (t) => {
  // podman asks /v1/search first, always without credentials, and uses its answer when there is one.
  const host = new URL(mirror.url).host;
  assert.deepEqual(await podmanSearch(host, 'app'), [`${host}/apps/web`, `${host}/other/apps/db`]);
  assert.deepEqual(await podmanSearch(host, 'app', { creds: 'alice:wonderland' }), [`${host}/apps/web`, `${host}/other/apps/db`]);

  // Without the v1 API it lists the catalog, with the credentials of `podman login`, and
  // filters it by the term itself.
  const v2Only = await startInProcess({ api: { v1: false }, private: { namespaces: ['corp'] }, auth: { htpasswd }, upstreams: upstreams() });
  onCleanup(t, () => v2Only.stop());
  await pullManifest(v2Only, 'apps/web', 'v1');
  await pushDockerImage(v2Only.url, 'corp/app', 'v1', [1000], { headers: { authorization: ALICE } });
  const v2Host = new URL(v2Only.url).host;
  assert.deepEqual(await podmanSearch(v2Host, 'app'), [`${v2Host}/apps/web`]);
  assert.deepEqual(await podmanSearch(v2Host, 'app', { creds: 'alice:wonderland' }), [`${v2Host}/apps/web`, `${v2Host}/corp/app`]);
  assert.ok(v2Only.requests().some((r) => String(r.path).startsWith('/v2/_catalog') && r.status === 200), 'podman used the catalog');
});
