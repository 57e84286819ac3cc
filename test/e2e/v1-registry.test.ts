// Longshore as a private v1 registry (docs: v1-protocol.md §5–§7, §9), driven over HTTP by a
// client that follows Docker 1.10's call order: login, push of a 3-layer chain with two tags,
// pull by tag and by all tags, search; then the failures a registry must refuse.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { basic, payloadChecksum, V1Client, type V1Image } from '../harness/v1-client.js';
import { onCleanup } from '../support/cleanup.js';
import { rawRequest } from '../support/raw-http.js';
import { fallsBackToV1, pingConfirmsV2 } from '../support/docker-v1-fallback.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { imageId, v1Chain } from '../support/v1-images.js';

const SECRET = 'a-test-secret-of-enough-length';

let work: TempDir;
let server: InProcessLongshore;
let htpasswd: string;
let chain: V1Image[];

before(async () => {
  work = await makeTempDir('v1');
  htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  server = await startInProcess({
    private: { namespaces: ['corp', 'team', 'library'] },
    auth: { htpasswd, allowSignup: true, secret: SECRET },
    storage: { delete: true },
  });
  chain = await v1Chain('main-chain');
  // The main flow: everything below reads what this push stored.
  await alice().push('corp/app', chain, { latest: (chain[2] as V1Image).id, v1: (chain[1] as V1Image).id });
});

after(async () => {
  await server?.stop();
  await work?.remove();
});

const alice = () => new V1Client(server.url, { username: 'alice', password: 'wonderland' });
const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const v1Error = (body: Buffer) => (JSON.parse(body.toString('utf8')) as { error: string }).error;

/** A token as we would sign it, for forging expired or foreign ones. */
function signToken(claims: Record<string, unknown>, secret = SECRET): string {
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `signature=${header}.${payload}.${signature},repository="${String(claims.repository)}",access=${String(claims.access)}`;
}

test('GET /v1/_ping and /_ping: 200 with the registry headers', async () => {
  for (const url of [`${server.url}/v1/_ping`, `${server.url}/_ping`]) {
    const response = await request(url);
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['x-docker-registry-standalone'], 'true');
    assert.ok(response.headers['x-docker-registry-version']);
    assert.equal(await response.body.json(), true);
  }
});

test('users: sign-up (201), the exact "already exists" 400, login with Basic (200 / 401), password change (204 / 403 / 401)', async () => {
  const carol = new V1Client(server.url, { username: 'carol', password: 'carolpass' });
  assert.deepEqual(await carol.legacyLogin(), { created: true, status: 201 });
  // Second login of a pre-1.11 client: POST says "exists", then GET with Basic.
  assert.deepEqual(await carol.legacyLogin(), { created: false, status: 200 });
  assert.equal(await new V1Client(server.url, { username: 'carol', password: 'wrong-password' }).login(), 401);
  assert.equal(await new V1Client(server.url).login(), 401);

  const invalid = await carol.call('POST', `${server.url}/v1/users/`, { body: JSON.stringify({ username: 'x', password: 'longenough' }) });
  assert.equal(invalid.status, 400);
  assert.match(v1Error(invalid.body), /username/i);

  const change = await carol.call('PUT', `${server.url}/v1/users/carol/`, { body: JSON.stringify({ password: 'newpassword' }), headers: { authorization: basic('carol', 'carolpass') } });
  assert.equal(change.status, 204);
  assert.equal(await new V1Client(server.url, { username: 'carol', password: 'newpassword' }).login(), 200);
  assert.equal(await new V1Client(server.url, { username: 'carol', password: 'carolpass' }).login(), 401);
  const foreign = await carol.call('PUT', `${server.url}/v1/users/alice/`, { body: JSON.stringify({ password: 'stolen-password' }), headers: { authorization: basic('carol', 'newpassword') } });
  assert.equal(foreign.status, 403);
  const anonymous = await carol.call('PUT', `${server.url}/v1/users/carol/`, { body: '{}' });
  assert.equal(anonymous.status, 401);
});

test('push followed Docker 1.10 call order: Basic on index calls only, Token everywhere else', async () => {
  const client = alice();
  const other = await v1Chain('order-chain', ['a']);
  await client.push('corp/order', other, { latest: (other[0] as V1Image).id });
  const summary = client.calls.map((c) => `${c.method} ${new URL(c.url).pathname} ${c.status} ${c.authorization?.split(' ')[0] ?? '-'}`);
  const id = (other[0] as V1Image).id;
  assert.deepEqual(summary, [
    'PUT /v1/repositories/corp/order/ 200 Basic',
    `GET /v1/images/${id}/json 404 Token`,
    `PUT /v1/images/${id}/json 200 Token`,
    `PUT /v1/images/${id}/layer 200 Token`,
    `PUT /v1/images/${id}/checksum 200 Token`,
    'PUT /v1/repositories/corp/order/tags/latest 200 Token',
    'PUT /v1/repositories/corp/order/images 204 Basic',
  ]);
});

test('pull by tag and by all tags: json bytes, layers, sizes and payload checksums equal what was pushed', async () => {
  const byTag = await alice().pull('corp/app', 'latest');
  assert.deepEqual(byTag.tags, { latest: (chain[2] as V1Image).id });
  assert.deepEqual(byTag.endpoints, [`${server.url}/v1/`]);
  assert.equal(byTag.images.size, 3);
  for (const pushed of chain) {
    const pulled = byTag.images.get(pushed.id);
    assert.ok(pulled, `image ${pushed.id} pulled`);
    assert.ok(pulled.json.equals(pushed.json), 'json bytes as pushed');
    assert.equal(sha256(pulled.layer), sha256(pushed.layer));
    assert.equal(pulled.size, pushed.layer.length);
  }
  const all = await alice().pull('corp/app');
  assert.deepEqual(all.tags, { latest: (chain[2] as V1Image).id, v1: (chain[1] as V1Image).id });
  assert.equal(all.images.size, 3);

  const client = alice();
  await client.call('GET', `${server.url}/v1/repositories/corp/app/images`, { indexCall: true });
  const top = chain[2] as V1Image;
  const json = await client.call('GET', `${server.url}/v1/images/${top.id}/json`);
  assert.equal(json.headers['x-docker-checksum-payload'], payloadChecksum(top));
  assert.equal(json.headers['x-docker-size'], String(top.layer.length));
  const ancestry = await client.call('GET', `${server.url}/v1/images/${top.id}/ancestry`);
  assert.deepEqual(ancestry.json(), [...chain].reverse().map((i) => i.id));
  const range = await client.call('GET', `${server.url}/v1/images/${top.id}/layer`, { headers: { range: 'bytes=100-199' } });
  assert.equal(range.status, 206);
  assert.ok(range.body.equals(top.layer.subarray(100, 200)));
  const images = await client.call('GET', `${server.url}/v1/repositories/corp/app/images`, { indexCall: true });
  assert.deepEqual(
    images.json<Array<{ id: string }>>().map((e) => e.id).sort(),
    chain.map((i) => i.id).sort(),
  );
});

test('a layer pushed with v1 is one blob in the shared store and HEAD-able through v2 by digest', async () => {
  const top = chain[2] as V1Image;
  const head = await request(`${server.url}/v2/corp/app/blobs/${sha256(top.layer)}`, { method: 'HEAD', headers: { authorization: basic('alice', 'wonderland') } });
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-length'], String(top.layer.length));
  const hex = sha256(top.layer).slice('sha256:'.length);
  assert.ok((await readdir(path.join(server.dataDir, 'blobs', 'sha256', hex.slice(0, 2)))).includes(hex));
});

test('search finds local repositories for a logged-in user, with paging', async () => {
  const found = await alice().search('app');
  assert.equal(found.status, 200);
  const body = found.json<{ query: string; num_results: number; results: Array<{ name: string }> }>();
  assert.equal(body.query, 'app');
  assert.ok(body.results.some((r) => r.name === 'corp/app'));
  assert.equal(body.num_results, body.results.length);
  const paged = (await alice().call('GET', `${server.url}/v1/search?q=&n=1&page=2`, { indexCall: true })).json<{ results: unknown[]; page: number; page_size: number }>();
  assert.equal(paged.results.length, 1);
  assert.equal(paged.page, 2);
  // Private repositories stay hidden from anonymous callers (private.anonymousPull is false).
  const anonymous = (await new V1Client(server.url).search('app')).json<{ results: Array<{ name: string }> }>();
  assert.deepEqual(anonymous.results, []);
  assert.equal((await new V1Client(server.url).call('GET', `${server.url}/v1/search?q=a&n=0`)).status, 400);
});

test('library aliasing: busybox pushed as "busybox" is pulled through "library/busybox"', async () => {
  const images = await v1Chain('busybox', ['a']);
  const client = alice();
  await client.push('busybox', images, { latest: (images[0] as V1Image).id });
  assert.ok(client.calls.some((c) => c.url.endsWith('/v1/repositories/busybox/tags/latest')));
  const pulled = await alice().pull('busybox', 'latest');
  assert.deepEqual(pulled.tags, { latest: (images[0] as V1Image).id });
  const tags = await alice().call('GET', `${server.url}/v1/repositories/library/busybox/tags`, { headers: { authorization: basic('alice', 'wonderland') } });
  assert.deepEqual(tags.json(), { latest: (images[0] as V1Image).id });
});

test('refusals: wrong password, no credentials, outside private namespaces, unknown and malformed ids', async () => {
  const wrong = await new V1Client(server.url, { username: 'alice', password: 'nope-nope' }).call('PUT', `${server.url}/v1/repositories/corp/x/`, { body: '[]', indexCall: true });
  assert.equal(wrong.status, 401);
  assert.match(v1Error(wrong.body), /login\/password/);

  const anonymous = await new V1Client(server.url).call('PUT', `${server.url}/v1/repositories/corp/x/`, { body: '[]', indexCall: true });
  assert.equal(anonymous.status, 401);
  assert.match(v1Error(anonymous.body), /login/);

  const mirrored = await alice().call('PUT', `${server.url}/v1/repositories/public/thing/`, { body: '[]', indexCall: true });
  assert.equal(mirrored.status, 403);
  assert.match(v1Error(mirrored.body), /private namespaces/);

  const unknown = await alice().call('GET', `${server.url}/v1/images/${imageId('never-pushed')}/json`, { headers: { authorization: basic('alice', 'wonderland') } });
  assert.equal(unknown.status, 404);
  assert.ok(v1Error(unknown.body));

  for (const id of ['..%2F..%2Fetc%2Fpasswd', 'ABCDEF', `${imageId('x')}0`]) {
    const bad = await alice().call('GET', `${server.url}/v1/images/${id}/json`, { headers: { authorization: basic('alice', 'wonderland') } });
    assert.equal(bad.status, 400, id);
    assert.match(v1Error(bad.body), /invalid image id/);
  }
  const badList = await alice().call('PUT', `${server.url}/v1/repositories/corp/x/`, { body: '[{"id":"../x"}]', indexCall: true });
  assert.equal(badList.status, 400);
});

/** A push session (token) for a repository, declaring the given images. */
async function pushSession(name: string, images: readonly V1Image[]): Promise<V1Client> {
  const client = alice();
  const start = await client.call('PUT', `${server.url}/v1/repositories/${name}/`, { body: JSON.stringify(images.map((i) => ({ id: i.id }))), indexCall: true });
  assert.equal(start.status, 200);
  assert.match(client.token ?? '', /^signature=.+,repository="[^"]+",access=write$/);
  assert.equal(start.headers['www-authenticate'], `Token ${client.token}`);
  return client;
}

test('checksums: a bad payload checksum or TarSum is a 400 and the image never becomes visible', async () => {
  const [image] = await v1Chain('bad-checksum', ['b']);
  assert.ok(image);
  const client = await pushSession('corp/checks', [image]);
  const base = `${server.url}/v1/images/${image.id}`;
  assert.equal((await client.call('PUT', `${base}/json`, { body: image.json })).status, 200);
  assert.equal((await client.call('PUT', `${base}/layer`, { body: image.layer })).status, 200);

  const badPayload = await client.call('PUT', `${base}/checksum`, { headers: { 'x-docker-checksum': image.tarsum, 'x-docker-checksum-payload': sha256(Buffer.from('other')) } });
  assert.equal(badPayload.status, 400);
  assert.match(v1Error(badPayload.body), /Checksum mismatch/);
  const badTarsum = await client.call('PUT', `${base}/checksum`, {
    headers: { 'x-docker-checksum': `tarsum+sha256:${'0'.repeat(64)}`, 'x-docker-checksum-payload': payloadChecksum(image) },
  });
  assert.equal(badTarsum.status, 400);
  assert.match(v1Error(badTarsum.body), /TarSum/);
  assert.equal((await client.call('PUT', `${base}/checksum`)).status, 412);

  // Not visible: json answers "being uploaded", a tag cannot point at it, a layer cannot be read.
  const json = await client.call('GET', `${base}/json`);
  assert.equal(json.status, 400);
  assert.match(v1Error(json.body), /being uploaded/);
  assert.equal((await client.call('GET', `${base}/layer`)).status, 400);
  const tag = await client.call('PUT', `${server.url}/v1/repositories/corp/checks/tags/latest`, { body: JSON.stringify(image.id) });
  assert.equal(tag.status, 404);

  // The right checksums still complete it; after that, json and layer are immutable: the same
  // bytes again are a harmless repeat (a second client pushing one image), others a 409.
  const good = await client.call('PUT', `${base}/checksum`, { headers: { 'x-docker-checksum': image.tarsum, 'x-docker-checksum-payload': payloadChecksum(image) } });
  assert.equal(good.status, 200, good.text());
  assert.equal((await client.call('GET', `${base}/json`)).status, 200);
  const again = await client.call('PUT', `${base}/json`, { body: image.json });
  assert.equal(again.status, 409);
  assert.deepEqual(again.json(), { error: 'Image already exists' });
  assert.equal((await client.call('PUT', `${base}/layer`, { body: image.layer })).status, 200);
  assert.equal((await client.call('PUT', `${base}/layer`, { body: Buffer.concat([image.layer, Buffer.from('x')]) })).status, 409);
  assert.equal((await client.call('PUT', `${base}/checksum`, { headers: { 'x-docker-checksum-payload': sha256(Buffer.from('other')) } })).status, 409);
  const pulled = await client.call('GET', `${base}/layer`);
  assert.equal(sha256(pulled.body), sha256(image.layer), 'the refused upload changed nothing');
});

test('a layer that is not a tar archive fails its TarSum check with a clear message', async () => {
  const id = imageId('not-a-tar');
  const json = Buffer.from(JSON.stringify({ id }));
  const layer = createHash('sha512').update('noise').digest();
  const client = await pushSession('corp/noise', [{ id, json, layer, tarsum: '' }]);
  assert.equal((await client.call('PUT', `${server.url}/v1/images/${id}/json`, { body: json })).status, 200);
  assert.equal((await client.call('PUT', `${server.url}/v1/images/${id}/layer`, { body: layer })).status, 200);
  const checksum = await client.call('PUT', `${server.url}/v1/images/${id}/checksum`, {
    headers: { 'x-docker-checksum': `tarsum+sha256:${'1'.repeat(64)}`, 'x-docker-checksum-payload': payloadChecksum({ json, layer }) },
  });
  assert.equal(checksum.status, 400);
  assert.match(v1Error(checksum.body), /not a tar archive/);
});

test('json: a missing parent, an id that differs from the URL, and a layer before its json are refused', async () => {
  const id = imageId('orphan');
  const client = await pushSession('corp/orphan', [{ id, json: Buffer.alloc(0), layer: Buffer.alloc(0), tarsum: '' }]);
  const orphan = await client.call('PUT', `${server.url}/v1/images/${id}/json`, { body: JSON.stringify({ id, parent: imageId('no-such-parent') }) });
  assert.equal(orphan.status, 400);
  assert.match(v1Error(orphan.body), /non existing parent/);
  const mismatch = await client.call('PUT', `${server.url}/v1/images/${id}/json`, { body: JSON.stringify({ id: imageId('other') }) });
  assert.equal(mismatch.status, 400);
  const notJson = await client.call('PUT', `${server.url}/v1/images/${id}/json`, { body: '{not json' });
  assert.equal(notJson.status, 400);
  const layerFirst = await client.call('PUT', `${server.url}/v1/images/${id}/layer`, { body: Buffer.from('x') });
  assert.equal(layerFirst.status, 404);
});

test('tokens: scoped to one repository and access, signed, expiring; Basic still works for users', async () => {
  const readOnly = new V1Client(server.url, { username: 'alice', password: 'wonderland' });
  assert.equal((await readOnly.call('GET', `${server.url}/v1/repositories/corp/app/images`, { indexCall: true })).status, 200);
  assert.match(readOnly.token ?? '', /access=read$/);
  // Read token: reads its repository, cannot write it, cannot read another.
  assert.equal((await readOnly.call('GET', `${server.url}/v1/repositories/corp/app/tags`)).status, 200);
  const write = await readOnly.call('PUT', `${server.url}/v1/repositories/corp/app/tags/x`, { body: JSON.stringify((chain[0] as V1Image).id) });
  assert.equal(write.status, 401);
  const foreignRepository = await readOnly.call('GET', `${server.url}/v1/repositories/corp/order/tags`);
  assert.equal(foreignRepository.status, 401);
  assert.equal(foreignRepository.headers['www-authenticate'], 'Token');

  // A token for corp/order does not open corp/app's images, even by id.
  const order = new V1Client(server.url, { username: 'alice', password: 'wonderland' });
  await order.call('GET', `${server.url}/v1/repositories/corp/order/images`, { indexCall: true });
  assert.equal((await order.call('GET', `${server.url}/v1/images/${(chain[2] as V1Image).id}/json`)).status, 404);
  // A write token only uploads images its push declared.
  const push = await pushSession('corp/order', []);
  const undeclared = await push.call('PUT', `${server.url}/v1/images/${imageId('undeclared')}/json`, { body: JSON.stringify({ id: imageId('undeclared') }) });
  assert.equal(undeclared.status, 403);

  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: 'longshore', sub: 'alice', aud: 'longshore-v1', repository: 'corp/app', access: 'read' };
  const expired = signToken({ ...claims, iat: now - 600, nbf: now - 600, exp: now - 300 });
  const forged = signToken({ ...claims, iat: now, nbf: now, exp: now + 300 }, 'some-other-secret-entirely');
  const valid = signToken({ ...claims, iat: now, nbf: now, exp: now + 300 });
  const tagsWith = (token: string) => request(`${server.url}/v1/repositories/corp/app/tags`, { headers: { authorization: `Token ${token}` } });
  assert.equal((await tagsWith(valid)).statusCode, 200, 'the control: a token signed with our key');
  assert.equal((await tagsWith(expired)).statusCode, 401);
  assert.equal((await tagsWith(forged)).statusCode, 401);
  // "Token Token …", as clients of the Python registry sent it, is understood.
  assert.equal((await tagsWith(`Token ${valid}`)).statusCode, 200);
  // Images: an expired token naming a private repository is a 401, not a mirror lookup.
  const image = await request(`${server.url}/v1/images/${(chain[0] as V1Image).id}/json`, { headers: { authorization: `Token ${expired}` } });
  assert.equal(image.statusCode, 401);
  // Anonymous callers see no private repository.
  assert.equal((await request(`${server.url}/v1/repositories/corp/app/tags`)).statusCode, 401);
});

test('tags and repositories: single tag GET, delete of a tag (200 then 404) and of a repository (202 with a delete token)', async () => {
  const images = await v1Chain('delete-me', ['a']);
  const id = (images[0] as V1Image).id;
  await alice().push('team/deleteme', images, { one: id, two: id });
  const client = alice();
  const auth = { authorization: basic('alice', 'wonderland') };
  assert.equal((await client.call('GET', `${server.url}/v1/repositories/team/deleteme/tags/one`, { headers: auth })).json(), id);
  assert.equal((await client.call('DELETE', `${server.url}/v1/repositories/team/deleteme/tags/one`, { headers: auth })).status, 200);
  assert.equal((await client.call('GET', `${server.url}/v1/repositories/team/deleteme/tags/one`, { headers: auth })).status, 404);
  assert.equal((await client.call('GET', `${server.url}/v1/repositories/team/deleteme/tags/bad%20tag`, { headers: auth })).status, 400);
  const removed = await client.call('DELETE', `${server.url}/v1/repositories/team/deleteme/`, { indexCall: true });
  assert.equal(removed.status, 202);
  assert.match(String(removed.headers['x-docker-token']), /access=delete$/);
  assert.equal((await client.call('GET', `${server.url}/v1/repositories/team/deleteme/tags`, { headers: auth })).status, 404);
  // The image stays: another repository may hold it.
  assert.equal((await client.call('GET', `${server.url}/v1/images/${id}/json`, { headers: auth })).status, 200);

  // DELETE .../images is the Python registry's no-op (204); DELETE .../tags drops the repository.
  await alice().push('team/second', images, { one: id });
  assert.equal((await client.call('DELETE', `${server.url}/v1/repositories/team/second/images`, { headers: auth })).status, 204);
  assert.deepEqual((await client.call('GET', `${server.url}/v1/repositories/team/second/tags`, { headers: auth })).json(), { one: id });
  assert.equal((await client.call('DELETE', `${server.url}/v1/repositories/team/second/tags`, { headers: auth })).status, 200);
  assert.equal((await client.call('GET', `${server.url}/v1/repositories/team/second/tags`, { headers: auth })).status, 404);
});

test('concurrency: two clients pushing the same chain at once, and pulls during a push, leave every layer intact', async () => {
  const shared = await v1Chain('concurrent', ['f', 'c']);
  await Promise.all([alice().push('corp/twins', shared, { latest: (shared[1] as V1Image).id }), alice().push('corp/twins', shared, { latest: (shared[1] as V1Image).id })]);
  const pulls = Array.from({ length: 4 }, () => alice().pull('corp/twins', 'latest'));
  const repush = alice().push('corp/twins', shared, { again: (shared[1] as V1Image).id });
  const [results] = await Promise.all([Promise.all(pulls), repush]);
  for (const pulled of results) {
    for (const image of shared) assert.equal(sha256((pulled.images.get(image.id) as { layer: Buffer }).layer), sha256(image.layer));
  }
});

test('api.v2: false: every v2 request a Docker 1.6-17.x daemon makes gets an answer it falls back to v1 on', async (t) => {
  const v1Only = await startInProcess({ api: { v2: false }, private: { namespaces: ['corp'] }, auth: { htpasswd } });
  onCleanup(t, () => v1Only.stop());
  const digest = `sha256:${'a'.repeat(64)}`;
  const auth = { authorization: basic('alice', 'wonderland') };
  const calls: Array<{ method: string; path: string; headers?: Record<string, string>; body?: string }> = [
    // pull: by tag, all tags, blobs; push: blob probes, upload start (with dockerd's empty
    // Content-Type), chunks, manifest; on a mirrored and on a private name
    { method: 'GET', path: '/v2/library/busybox/manifests/latest' },
    { method: 'GET', path: `/v2/library/busybox/manifests/${digest}` },
    { method: 'GET', path: '/v2/library/busybox/tags/list' },
    { method: 'GET', path: `/v2/library/busybox/blobs/${digest}` },
    { method: 'HEAD', path: `/v2/corp/app/blobs/${digest}`, headers: auth },
    { method: 'POST', path: '/v2/corp/app/blobs/uploads/', headers: { ...auth, 'content-type': '', 'content-length': '0' } },
    { method: 'POST', path: `/v2/corp/app/blobs/uploads/?mount=${digest}&from=corp/other`, headers: auth },
    { method: 'PATCH', path: '/v2/corp/app/blobs/uploads/some-id', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: 'layer bytes' },
    { method: 'PUT', path: '/v2/corp/app/manifests/latest', headers: { ...auth, 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' }, body: '{"schemaVersion":2}' },
    { method: 'GET', path: '/v2/corp/app/manifests/.INVALID' },
    { method: 'DELETE', path: `/v2/corp/app/manifests/${digest}`, headers: auth },
    { method: 'GET', path: '/v2/_catalog' },
    { method: 'OPTIONS', path: '/v2/library/busybox/manifests/latest' },
    { method: 'GET', path: '/v2' },
  ];
  const ping = await rawRequest(`${v1Only.url}/v2/`, 'GET', {});
  assert.equal(ping.status, 404);
  assert.equal(pingConfirmsV2(ping), false, 'the ping must not confirm v2');
  for (const call of calls) {
    const answer = await rawRequest(`${v1Only.url}${call.path}`, call.method, call.headers ?? {}, call.body);
    const what = `${call.method} ${call.path} -> ${answer.status} ${answer.body}`;
    assert.equal(answer.status, 404, what);
    assert.equal(pingConfirmsV2(answer), false, what);
    assert.ok(fallsBackToV1(answer, call.method), what);
    if (call.method !== 'HEAD') assert.match((JSON.parse(answer.body) as { error: string }).error, /api\.v2: false/, what);
  }
  // The v1 API still answers beside it.
  assert.equal((await rawRequest(`${v1Only.url}/v1/_ping`, 'GET', {})).status, 200);
});

test('api.v2: false answers /v2/ with a plain 404 so old clients fall back to v1 (§9.2)', async (t) => {
  const data = await makeTempDir('v1-only');
  const v1Only = await startInProcess({ api: { v2: false }, private: { namespaces: ['corp'] }, auth: { htpasswd }, publicUrl: 'https://registry.example.com:8443' }, data.path);
  onCleanup(t, () => data.remove());
  onCleanup(t, () => v1Only.stop());
  const v2 = await request(`${v1Only.url}/v2/`);
  assert.equal(v2.statusCode, 404);
  assert.equal(v2.headers['docker-distribution-api-version'], undefined);
  await v2.body.dump();
  assert.equal((await request(`${v1Only.url}/v1/_ping`)).statusCode, 200);
  // Self-references follow publicUrl when it is set (the request's Host otherwise, as above).
  const start = await new V1Client(v1Only.url, { username: 'alice', password: 'wonderland' }).call('PUT', `${v1Only.url}/v1/repositories/corp/x/`, { body: '[]', indexCall: true });
  assert.equal(start.status, 200);
  assert.equal(start.headers['x-docker-endpoints'], 'registry.example.com:8443');
  // storage.delete is off here: deletes are refused in the v1 format.
  const refused = await new V1Client(v1Only.url).call('DELETE', `${v1Only.url}/v1/repositories/corp/x/tags/latest`, { headers: { authorization: basic('alice', 'wonderland') } });
  assert.equal(refused.status, 405);
  assert.match(refused.json<{ error: string }>().error, /storage\.delete/);
  const disabled = await startInProcess({ api: { v1: false } });
  onCleanup(t, () => disabled.stop());
  assert.equal((await request(`${disabled.url}/v1/_ping`)).statusCode, 404);
});

