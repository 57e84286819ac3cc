// The OCI Distribution 1.1 areas (pull, push incl. chunked and resumable uploads, content
// discovery incl. pagination and referrers, content management) against a running Longshore
// with a private namespace, htpasswd users and Bearer tokens.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import { sha256Digest } from '../harness/digests.js';
import { onCleanup } from '../support/cleanup.js';
import { rawRequest } from '../support/raw-http.js';
import { startLongshore, type LongshoreHandle } from '../harness/longshore.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';
import { writeHtpasswd } from '../support/users.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

let work: TempDir;
let server: LongshoreHandle;
let pushToken: string;

before(async () => {
  work = await makeTempDir('oci');
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland', bob: 'builder' });
  server = await startLongshore({
    private: { namespaces: ['corp', 'team'] },
    auth: { htpasswd },
    storage: { delete: true, uploadTimeout: '1s' },
    upstreams: [{ name: 'nowhere', url: 'http://127.0.0.1:9', default: true }],
  });
  pushToken = await token('alice', 'wonderland', ['repository:corp/app:pull,push,delete', 'repository:corp/other:pull,push', 'repository:team/app:pull,push']);
});

after(async () => {
  await server?.dispose();
  await work?.remove();
});

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function token(user: string | undefined, password: string | undefined, scopes: string[]): Promise<string> {
  const query = scopes.map((s) => `scope=${encodeURIComponent(s)}`).join('&');
  const response = await request(`${server.url}/token?service=longshore&${query}`, { headers: user ? { authorization: basic(user, password ?? '') } : {} });
  assert.equal(response.statusCode, 200, `token for ${user ?? 'anonymous'}`);
  const body = (await response.body.json()) as { token: string; access_token: string; expires_in: number };
  assert.equal(body.token, body.access_token);
  assert.ok(body.expires_in > 0);
  return body.token;
}

interface Call {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T>(): T;
}

async function api(method: string, urlPath: string, options: { body?: Buffer; headers?: Record<string, string>; auth?: string | null } = {}): Promise<Call> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== null) headers.authorization = options.auth ?? `Bearer ${pushToken}`;
  const response = await request(`${server.url}${urlPath}`, { method: method as 'GET', headers, body: options.body });
  const body = Buffer.from(await response.body.arrayBuffer());
  return { status: response.statusCode, headers: response.headers, body, json: <T>() => JSON.parse(body.toString()) as T };
}

function errorCode(call: Call): string | undefined {
  return call.json<{ errors: Array<{ code: string }> }>().errors[0]?.code;
}

async function pushBlob(repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256Digest(bytes);
  const start = await api('POST', `/v2/${repo}/blobs/uploads/`);
  assert.equal(start.status, 202);
  const done = await api('PUT', `${String(start.headers.location)}?digest=${digest}`, { body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(done.status, 201, done.body.toString());
  return digest;
}

function manifestFor(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.byteLength },
      layers: layers.map((l) => ({ mediaType: LAYER, digest: sha256Digest(l), size: l.byteLength })),
      ...extra,
    }),
  );
}

test('auth: /v2/ challenges, tokens come from /token for valid users, wrong passwords are refused', async () => {
  const anonymous = await api('GET', '/v2/', { auth: null });
  assert.equal(anonymous.status, 401);
  assert.equal(errorCode(anonymous), 'UNAUTHORIZED');
  assert.match(String(anonymous.headers['www-authenticate']), /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token",service="longshore"$/);
  assert.equal((await api('GET', '/v2/')).status, 200, 'with a Bearer token');
  assert.equal((await api('GET', '/v2/', { auth: basic('bob', 'builder') })).status, 200, 'Basic on API requests works too');
  assert.equal((await api('GET', '/v2/', { auth: basic('bob', 'wrong') })).status, 401);
  const refused = await request(`${server.url}/token?service=longshore&scope=repository:corp/app:push`, { headers: { authorization: basic('alice', 'nope') } });
  await refused.body.dump();
  assert.equal(refused.statusCode, 401);

  // Private repositories need credentials; the challenge names the scope.
  const noCreds = await api('HEAD', '/v2/corp/app/manifests/latest', { auth: null });
  assert.equal(noCreds.status, 401);
  assert.match(String(noCreds.headers['www-authenticate']), /scope="repository:corp\/app:pull"/);
  // An anonymous token grants nothing on a private repository...
  const anonymousToken = await token(undefined, undefined, ['repository:corp/app:pull']);
  assert.equal((await api('HEAD', '/v2/corp/app/manifests/latest', { auth: `Bearer ${anonymousToken}` })).status, 401);
  // ...and a pull-only token cannot push: 401 with the push scope, so the client asks again.
  const pullOnly = await token('bob', 'builder', ['repository:corp/app:pull']);
  const push = await api('POST', '/v2/corp/app/blobs/uploads/', { auth: `Bearer ${pullOnly}` });
  assert.equal(push.status, 401);
  assert.match(String(push.headers['www-authenticate']), /scope="repository:corp\/app:pull,push"/);
  // A forged token (valid shape, wrong signature) is refused.
  const [header, payload] = pushToken.split('.');
  assert.equal((await api('GET', '/v2/', { auth: `Bearer ${header}.${payload}.${'A'.repeat(43)}` })).status, 401);
});

test('push: monolithic, single-POST, chunked with status and 416, cancel; then pull with Range', async () => {
  const monolithic = randomBytes(50_000);
  assert.equal(await pushBlob('corp/app', monolithic), sha256Digest(monolithic));

  const single = randomBytes(20_000);
  const post = await api('POST', `/v2/corp/app/blobs/uploads/?digest=${sha256Digest(single)}`, { body: single, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(post.status, 201);
  assert.equal(post.headers['docker-content-digest'], sha256Digest(single));
  assert.equal(post.headers.location, `/v2/corp/app/blobs/${sha256Digest(single)}`);

  const chunked = randomBytes(300_000);
  const start = await api('POST', '/v2/corp/app/blobs/uploads/');
  assert.equal(start.status, 202);
  const location = String(start.headers.location);
  assert.match(location, /^\/v2\/corp\/app\/blobs\/uploads\/[\w-]+$/);
  assert.equal(start.headers.range, '0-0');
  const first = await api('PATCH', location, { body: chunked.subarray(0, 100_000), headers: { 'content-type': 'application/octet-stream', 'content-range': '0-99999' } });
  assert.equal(first.status, 202);
  assert.equal(first.headers.range, '0-99999');
  const status = await api('GET', location);
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, '0-99999');
  assert.equal(status.headers.location, location);
  const repeated = await api('PATCH', location, { body: chunked.subarray(0, 100_000), headers: { 'content-range': '0-99999' } });
  assert.equal(repeated.status, 416, 'a repeated chunk');
  assert.equal(repeated.headers.range, '0-99999');
  const outOfOrder = await api('PATCH', location, { body: chunked.subarray(200_000), headers: { 'content-range': '200000-299999' } });
  assert.equal(outOfOrder.status, 416, 'an out-of-order chunk');
  const second = await api('PATCH', location, { body: chunked.subarray(100_000, 200_000), headers: { 'content-range': '100000-199999' } });
  assert.equal(second.status, 202);
  const close = await api('PUT', `${location}?digest=${sha256Digest(chunked)}`, { body: chunked.subarray(200_000), headers: { 'content-range': '200000-299999' } });
  assert.equal(close.status, 201);

  const head = await api('HEAD', `/v2/corp/app/blobs/${sha256Digest(chunked)}`);
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(chunked.byteLength));
  const ranged = await api('GET', `/v2/corp/app/blobs/${sha256Digest(chunked)}`, { headers: { range: 'bytes=150000-150099' } });
  assert.equal(ranged.status, 206);
  assert.ok(ranged.body.equals(chunked.subarray(150_000, 150_100)));

  const wrong = await api('POST', '/v2/corp/app/blobs/uploads/');
  const bad = await api('PUT', `${String(wrong.headers.location)}?digest=${sha256Digest(Buffer.from('other'))}`, { body: Buffer.from('content') });
  assert.equal(bad.status, 400);
  assert.equal(errorCode(bad), 'DIGEST_INVALID');

  const cancelled = await api('POST', '/v2/corp/app/blobs/uploads/');
  assert.equal((await api('DELETE', String(cancelled.headers.location))).status, 204);
  const gone = await api('GET', String(cancelled.headers.location));
  assert.equal(gone.status, 404);
  assert.equal(errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');
});

test('abandoned uploads are dropped after storage.uploadTimeout', async () => {
  const start = await api('POST', '/v2/corp/app/blobs/uploads/');
  await api('PATCH', String(start.headers.location), { body: randomBytes(1000) });
  await pollUntil(async () => (await api('GET', String(start.headers.location))).status === 404, { timeoutMs: 10_000, intervalMs: 250, what: 'the idle upload to expire' });
});

test('mounts: from another repository (201), automatic within the namespace, fallback to an upload (202)', async () => {
  const blob = await pushBlob('corp/app', randomBytes(10_000));
  const mounted = await api('POST', `/v2/corp/other/blobs/uploads/?mount=${blob}&from=corp/app`);
  assert.equal(mounted.status, 201);
  assert.equal(mounted.headers['docker-content-digest'], blob);
  assert.equal((await api('HEAD', `/v2/corp/other/blobs/${blob}`)).status, 200);

  const automatic = await pushBlob('corp/app', randomBytes(10_000));
  const auto = await api('POST', `/v2/corp/other/blobs/uploads/?mount=${automatic}`);
  assert.equal(auto.status, 201, 'the blob exists in the namespace: mounted without "from"');

  const otherNamespace = await api('POST', `/v2/team/app/blobs/uploads/?mount=${automatic}`);
  assert.equal(otherNamespace.status, 202, 'not across namespaces: an ordinary upload starts');
  assert.match(String(otherNamespace.headers.location), /\/v2\/team\/app\/blobs\/uploads\//);
  assert.equal((await api('HEAD', `/v2/team/app/blobs/${automatic}`)).status, 404);
});

test('manifests: image and index by tag and digest, missing blobs refused, size limit, subject and referrers', async () => {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
  const layer = randomBytes(5000);
  const manifest = manifestFor(config, [layer]);
  const missing = await api('PUT', '/v2/corp/app/manifests/v1', { body: manifest, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(missing.status, 400);
  assert.equal(errorCode(missing), 'MANIFEST_BLOB_UNKNOWN');

  await pushBlob('corp/app', config);
  await pushBlob('corp/app', layer);
  const put = await api('PUT', '/v2/corp/app/manifests/v1', { body: manifest, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(put.status, 201);
  assert.equal(put.headers['docker-content-digest'], sha256Digest(manifest));
  assert.equal(put.headers.location, `/v2/corp/app/manifests/${sha256Digest(manifest)}`);

  for (const reference of ['v1', sha256Digest(manifest)]) {
    const got = await api('GET', `/v2/corp/app/manifests/${reference}`, { headers: { accept: OCI_MANIFEST } });
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(manifest));
    assert.equal(got.headers['content-type'], OCI_MANIFEST);
    assert.equal(got.headers['docker-content-digest'], sha256Digest(manifest));
    const head = await api('HEAD', `/v2/corp/app/manifests/${reference}`);
    assert.equal(head.headers['content-length'], String(manifest.byteLength));
  }

  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256Digest(manifest), size: manifest.byteLength, platform: { os: 'linux', architecture: 'amd64' } }] }));
  const indexPut = await api('PUT', `/v2/corp/app/manifests/${sha256Digest(index)}`, { body: index, headers: { 'content-type': OCI_INDEX } });
  assert.equal(indexPut.status, 201, 'by digest');
  const wrongDigest = await api('PUT', `/v2/corp/app/manifests/${sha256Digest(Buffer.from('x'))}`, { body: index, headers: { 'content-type': OCI_INDEX } });
  assert.equal(errorCode(wrongDigest), 'DIGEST_INVALID');

  const huge = await api('PUT', '/v2/corp/app/manifests/huge', { body: Buffer.alloc(4 * 1024 * 1024 + 10, 0x20), headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(huge.status, 413);
  assert.equal(errorCode(huge), 'MANIFEST_INVALID');
  const invalid = await api('PUT', '/v2/corp/app/manifests/bad', { body: Buffer.from('{not json'), headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(invalid.status, 400);
  assert.equal(errorCode(invalid), 'MANIFEST_INVALID');

  // An artifact with a subject: OCI-Subject on the PUT, listed by the referrers API.
  const subject = { mediaType: OCI_MANIFEST, digest: sha256Digest(manifest), size: manifest.byteLength };
  const emptyConfig = Buffer.from('{}');
  await pushBlob('corp/app', emptyConfig);
  const sbom = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/spdx+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(emptyConfig), size: 2 }, layers: [], subject }));
  const sig = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sig', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(emptyConfig), size: 2 }, layers: [], subject }));
  const sbomPut = await api('PUT', `/v2/corp/app/manifests/${sha256Digest(sbom)}`, { body: sbom, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(sbomPut.headers['oci-subject'], sha256Digest(manifest));
  await api('PUT', `/v2/corp/app/manifests/${sha256Digest(sig)}`, { body: sig, headers: { 'content-type': OCI_MANIFEST } });
  const referrers = await api('GET', `/v2/corp/app/referrers/${sha256Digest(manifest)}`);
  assert.equal(referrers.status, 200);
  assert.equal(referrers.headers['content-type'], OCI_INDEX);
  const all = referrers.json<{ mediaType: string; manifests: Array<{ digest: string; artifactType: string }> }>();
  assert.equal(all.mediaType, OCI_INDEX);
  assert.deepEqual(all.manifests.map((m) => m.digest).sort(), [sha256Digest(sbom), sha256Digest(sig)].sort());
  const filtered = await api('GET', `/v2/corp/app/referrers/${sha256Digest(manifest)}?artifactType=application/spdx%2Bjson`);
  assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(filtered.json<{ manifests: Array<{ artifactType: string }> }>().manifests.map((m) => m.artifactType), ['application/spdx+json']);
  const none = await api('GET', `/v2/corp/app/referrers/${sha256Digest(Buffer.from('nothing'))}`);
  assert.deepEqual(none.json<{ manifests: unknown[] }>().manifests, []);
});

test('discovery: tags sorted with n/last and a Link header; the catalog paginates the same way', async () => {
  const config = Buffer.from('{"os":"linux"}');
  await pushBlob('corp/other', config);
  const manifest = manifestFor(config, []);
  for (const tag of ['c', 'a', 'd', 'b']) {
    assert.equal((await api('PUT', `/v2/corp/other/manifests/${tag}`, { body: manifest, headers: { 'content-type': OCI_MANIFEST } })).status, 201);
  }
  const all = await api('GET', '/v2/corp/other/tags/list');
  assert.deepEqual(all.json(), { name: 'corp/other', tags: ['a', 'b', 'c', 'd'] });
  assert.equal(all.headers.link, undefined);
  const first = await api('GET', '/v2/corp/other/tags/list?n=2');
  assert.deepEqual(first.json(), { name: 'corp/other', tags: ['a', 'b'] });
  assert.equal(first.headers.link, '</v2/corp/other/tags/list?n=2&last=b>; rel="next"');
  const next = await api('GET', '/v2/corp/other/tags/list?n=2&last=b');
  assert.deepEqual(next.json(), { name: 'corp/other', tags: ['c', 'd'] });
  assert.equal(next.headers.link, undefined);
  assert.equal(errorCode(await api('GET', '/v2/corp/nothing/tags/list', { auth: basic('bob', 'builder') })), 'NAME_UNKNOWN');

  const catalog = await api('GET', '/v2/_catalog?n=1');
  assert.deepEqual(catalog.json(), { repositories: ['corp/app'] });
  assert.equal(catalog.headers.link, '</v2/_catalog?n=1&last=corp%2Fapp>; rel="next"');
  const rest = await api('GET', '/v2/_catalog?n=10&last=corp/app');
  assert.ok(rest.json<{ repositories: string[] }>().repositories.includes('corp/other'));
  // The catalog names private repositories: no credentials, an unknown scheme, or a token
  // issued to nobody in particular are all challenged.
  const anonymousToken = await token(undefined, undefined, ['repository:library/alpine:pull']);
  for (const auth of [null, 'Foo bar', `Bearer ${anonymousToken}`]) {
    const refused = await api('GET', '/v2/_catalog', { auth });
    assert.equal(refused.status, 401, `catalog with ${String(auth)}`);
    assert.match(String(refused.headers['www-authenticate']), /^Bearer realm=.*scope="registry:catalog:\*"/);
  }
  assert.equal((await api('GET', '/v2/_catalog', { auth: basic('bob', 'builder') })).status, 200);
});

test('content management: delete by tag, by digest, blobs; deleted things are 404', async () => {
  const config = Buffer.from('{"os":"windows"}');
  await pushBlob('corp/app', config);
  const manifest = manifestFor(config, []);
  await api('PUT', '/v2/corp/app/manifests/doomed', { body: manifest, headers: { 'content-type': OCI_MANIFEST } });
  await api('PUT', '/v2/corp/app/manifests/doomed2', { body: manifest, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal((await api('DELETE', '/v2/corp/app/manifests/doomed')).status, 202, 'a tag');
  assert.equal((await api('GET', '/v2/corp/app/manifests/doomed')).status, 404);
  assert.equal((await api('GET', '/v2/corp/app/manifests/doomed2')).status, 200, 'other tags stay');
  assert.equal((await api('DELETE', `/v2/corp/app/manifests/${sha256Digest(manifest)}`)).status, 202, 'the manifest');
  assert.equal(errorCode(await api('GET', '/v2/corp/app/manifests/doomed2')), 'MANIFEST_UNKNOWN', 'its tags went with it');
  assert.equal((await api('DELETE', `/v2/corp/app/manifests/${sha256Digest(manifest)}`)).status, 404);
  assert.equal((await api('DELETE', `/v2/corp/app/blobs/${sha256Digest(config)}`)).status, 202);
  assert.equal(errorCode(await api('GET', `/v2/corp/app/blobs/${sha256Digest(config)}`)), 'BLOB_UNKNOWN');
  assert.equal((await api('HEAD', `/v2/corp/app/blobs/${sha256Digest(config)}`)).status, 404);
});

test('errors in the OCI envelope: bad digest 400, bad name 400, mirrored namespaces are read-only', async () => {
  const badDigest = await api('GET', '/v2/corp/app/blobs/sha256:nothex');
  assert.equal(badDigest.status, 400);
  assert.equal(errorCode(badDigest), 'DIGEST_INVALID');
  const badName = await api('GET', '/v2/corp/App/manifests/v1');
  assert.equal(badName.status, 400);
  assert.equal(errorCode(badName), 'NAME_INVALID');
  const mirrored = await api('POST', '/v2/library/alpine/blobs/uploads/');
  assert.equal(mirrored.status, 403);
  assert.equal(errorCode(mirrored), 'DENIED');
  assert.match(mirrored.body.toString(), /read-only/);
  const mirroredDelete = await api('DELETE', '/v2/library/alpine/manifests/latest');
  assert.equal(errorCode(mirroredDelete), 'DENIED');
});

test('storage.delete: false refuses deletes with 405 UNSUPPORTED', async (t) => {
  const htpasswd = path.join(work.path, 'htpasswd');
  const strict = await startLongshore({ private: { namespaces: ['corp'] }, auth: { htpasswd } });
  onCleanup(t, () => strict.dispose());
  const response = await request(`${strict.url}/v2/corp/app/manifests/${sha256Digest(Buffer.from('x'))}`, { method: 'DELETE', headers: { authorization: basic('alice', 'wonderland') } });
  assert.equal(response.statusCode, 405);
  assert.equal(((await response.body.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNSUPPORTED');
});

// ---- OCI distribution-spec v1.1.1 conformance suite (conformance/*.go), workflow by workflow ----
// The suite's own requests and inputs (its names, its manifests with unknown descriptor fields,
// its ".INVALID_MANIFEST_NAME", its status-code alternatives), against a private namespace
// with Basic credentials and storage.delete: true, as the suite is run against Longshore.

// One repository per workflow, so that one failing workflow's leftovers cannot fail another.
const SUITE_NAMES = { pull: 'corp/conformance-pull', push: 'corp/conformance-push', discovery: 'corp/conformance-discovery', management: 'corp/conformance-management' };
const CROSSMOUNT_NAME = 'corp/crossmount';
const NONEXISTENT_MANIFEST = '.INVALID_MANIFEST_NAME';
const DUMMY_DIGEST = sha256Digest('hello world');
const SUITE_ERROR_CODES = [
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN', 'MANIFEST_UNVERIFIED', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID', 'TAG_INVALID', 'UNAUTHORIZED', 'DENIED', 'UNSUPPORTED',
];
const EMPTY_JSON = Buffer.from('{}');
const EMPTY_JSON_DESCRIPTOR = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(EMPTY_JSON), size: 2 };
const suiteAuth = () => basic('alice', 'wonderland');
const suite = (method: string, urlPath: string, options: { body?: Buffer; headers?: Record<string, string> } = {}) => api(method, urlPath, { ...options, auth: suiteAuth() });

/** One config per workflow, unique like the suite's (a random author). */
function suiteConfig(): Buffer {
  return Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { diff_ids: [], type: 'layers' }, author: randomBytes(8).toString('hex') }, null, '\t'));
}

/** The suite's image manifest: the config descriptor carries `data` and a field no spec knows. */
function suiteManifest(config: Buffer, layer: Buffer, extra: Record<string, unknown> = {}): Buffer {
  const configDescriptor = { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.byteLength, data: config.toString('base64'), newUnspecifiedField: Buffer.from('hello world').toString('base64') };
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDescriptor, layers: [{ mediaType: LAYER, size: layer.byteLength, digest: sha256Digest(layer) }], ...extra }, null, '\t'));
}

/** Populate a blob the suite's way: POST, then PUT with the digest to the Location. */
async function suitePushBlob(name: string, bytes: Buffer): Promise<void> {
  const start = await suite('POST', `/v2/${name}/blobs/uploads/`);
  const put = await suite('PUT', `${String(start.headers.location)}?digest=${sha256Digest(bytes)}`, { body: bytes, headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) } });
  assert.ok(put.status >= 200 && put.status < 300, `blob upload: ${put.status} ${put.body.toString()}`);
}

async function suitePutManifest(name: string, reference: string, bytes: Buffer): Promise<Call> {
  return suite('PUT', `/v2/${name}/manifests/${reference}`, { body: bytes, headers: { 'content-type': OCI_MANIFEST } });
}

const isSuccess = (status: number) => status >= 200 && status < 300;

test('conformance 1.1.1 pull: blobs and manifests by digest and tag, 404 for unknown and invalid references, OCI errors, teardown', async () => {
  const configs = [suiteConfig(), suiteConfig()];
  const layer = randomBytes(120);
  for (const blob of [...configs, layer]) await suitePushBlob(SUITE_NAMES.pull, blob);
  const manifests = configs.map((config) => suiteManifest(config, layer));
  assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.pull, 'tagtest0', manifests[0]!)).status));
  assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.pull, sha256Digest(manifests[1]!), manifests[1]!)).status));

  for (const method of ['HEAD', 'GET']) {
    assert.equal((await suite(method, `/v2/${SUITE_NAMES.pull}/blobs/${DUMMY_DIGEST}`)).status, 404, `${method} nonexistent blob`);
    const blob = await suite(method, `/v2/${SUITE_NAMES.pull}/blobs/${sha256Digest(configs[0]!)}`);
    assert.equal(blob.status, 200, `${method} existing blob`);
    assert.equal(blob.headers['docker-content-digest'], sha256Digest(configs[0]!));

    // The suite's "nonexistent manifest" is a reference that is not even a valid tag.
    const invalid = await suite(method, `/v2/${SUITE_NAMES.pull}/manifests/${NONEXISTENT_MANIFEST}`);
    assert.equal(invalid.status, 404, `${method} ${NONEXISTENT_MANIFEST}`);
    if (method === 'GET') assert.equal(errorCode(invalid), 'MANIFEST_UNKNOWN');
    for (const [reference, manifest] of [[sha256Digest(manifests[0]!), manifests[0]!], [sha256Digest(manifests[1]!), manifests[1]!], ['tagtest0', manifests[0]!]] as const) {
      const got = await suite(method, `/v2/${SUITE_NAMES.pull}/manifests/${reference}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(got.status, 200, `${method} manifest ${reference}`);
      assert.equal(got.headers['docker-content-digest'], sha256Digest(manifest));
    }
  }
  // Valid tag syntax but never pushed: the same 404 (the push workflow asks this one too).
  assert.equal(errorCode(await suite('GET', `/v2/${SUITE_NAMES.pull}/manifests/nosuchtag`)), 'MANIFEST_UNKNOWN');

  const wrong = await suite('GET', `/v2/${SUITE_NAMES.pull}/manifests/sha256:totallywrong`, { body: Buffer.from('blablabla'), headers: { 'content-type': OCI_MANIFEST } });
  assert.ok([400, 404].includes(wrong.status), `sha256:totallywrong: ${wrong.status}`);
  if (wrong.status === 400) assert.ok(SUITE_ERROR_CODES.includes(errorCode(wrong) ?? ''), wrong.body.toString());

  // Teardown, manifests first (OCI_DELETE_MANIFEST_BEFORE_BLOBS defaults to true): 2xx or 405.
  for (const manifest of manifests) assert.equal((await suite('DELETE', `/v2/${SUITE_NAMES.pull}/manifests/${sha256Digest(manifest)}`)).status, 202);
  for (const blob of [...configs, layer]) assert.equal((await suite('DELETE', `/v2/${SUITE_NAMES.pull}/blobs/${sha256Digest(blob)}`)).status, 202);
});

test('conformance 1.1.1 push: streamed, monolithic, chunked with 416s and status, mounts, manifests, teardown', async () => {
  // Streamed: PATCH without Content-Range, then a PUT with the digest and no body.
  const blobA = randomBytes(42);
  const streamStart = await suite('POST', `/v2/${SUITE_NAMES.push}/blobs/uploads/`);
  assert.ok(streamStart.headers.location);
  const streamed = await suite('PATCH', String(streamStart.headers.location), { body: blobA, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(streamed.status, 202);
  const streamedPut = await suite('PUT', `${String(streamed.headers.location)}?digest=${sha256Digest(blobA)}`, { headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(streamedPut.status, 201);
  assert.ok(streamedPut.headers.location);

  // Monolithic: a single POST with the digest (201, or 202 and then the blob is 404)...
  const config = suiteConfig();
  const single = await suite('POST', `/v2/${SUITE_NAMES.push}/blobs/uploads/?digest=${sha256Digest(config)}`, { body: config, headers: { 'content-type': 'application/octet-stream', 'content-length': String(config.byteLength) } });
  assert.ok(single.headers.location);
  assert.equal(single.status, 201);
  assert.equal((await suite('GET', `/v2/${SUITE_NAMES.push}/blobs/${sha256Digest(config)}`)).status, 200);
  // ...and POST then PUT.
  const layer = randomBytes(120);
  for (const blob of [config, layer]) {
    const session = await suite('POST', `/v2/${SUITE_NAMES.push}/blobs/uploads/`);
    assert.equal(session.status, 202);
    const put = await suite('PUT', `${String(session.headers.location)}?digest=${sha256Digest(blob)}`, { body: blob, headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.byteLength) } });
    assert.equal(put.status, 201);
    assert.ok(put.headers.location);
    assert.equal((await suite('GET', `/v2/${SUITE_NAMES.push}/blobs/${sha256Digest(blob)}`)).status, 200);
  }

  // Chunked: 42 bytes in a 22-byte and a 20-byte chunk.
  const blobB = randomBytes(42);
  const [chunk1, chunk2] = [blobB.subarray(0, 22), blobB.subarray(22)];
  const outOfOrderStart = await suite('POST', `/v2/${SUITE_NAMES.push}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  assert.ok(outOfOrderStart.headers.location);
  const outOfOrder = await suite('PATCH', String(outOfOrderStart.headers.location), { body: chunk2, headers: { 'content-type': 'application/octet-stream', 'content-range': '22-41' } });
  assert.equal(outOfOrder.status, 416);
  const chunkedStart = await suite('POST', `/v2/${SUITE_NAMES.push}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  const first = await suite('PATCH', String(chunkedStart.headers.location), { body: chunk1, headers: { 'content-type': 'application/octet-stream', 'content-range': '0-21' } });
  assert.equal(first.status, 202);
  assert.equal(first.headers.range, '0-21');
  const retried = await suite('PATCH', String(chunkedStart.headers.location), { body: chunk1, headers: { 'content-type': 'application/octet-stream', 'content-range': '0-21' } });
  assert.equal(retried.status, 416, 'a retried chunk');
  const stale = await suite('GET', String(chunkedStart.headers.location));
  assert.equal(stale.status, 204);
  assert.ok(stale.headers.location);
  assert.equal(stale.headers.range, '0-21');
  const second = await suite('PATCH', String(stale.headers.location), { body: chunk2, headers: { 'content-type': 'application/octet-stream', 'content-range': '22-41' } });
  assert.equal(second.status, 202);
  assert.ok(second.headers.location);
  const closed = await suite('PUT', `${String(second.headers.location)}?digest=${sha256Digest(blobB)}`, { headers: { 'content-type': 'application/octet-stream', 'content-length': '0' } });
  assert.equal(closed.status, 201);
  assert.ok(closed.headers.location);

  // Cross-repository mounts (OCI_CROSSMOUNT_NAMESPACE=corp/crossmount, OCI_AUTOMATIC_CROSSMOUNT=true).
  const unknownMount = await suite('POST', `/v2/${CROSSMOUNT_NAME}/blobs/uploads/?mount=${DUMMY_DIGEST}`);
  assert.equal(unknownMount.status, 202, 'mounting an unknown blob without from starts an upload');
  assert.ok(unknownMount.headers.location);
  const mounted = await suite('POST', `/v2/${CROSSMOUNT_NAME}/blobs/uploads/?mount=${sha256Digest(blobA)}&from=${SUITE_NAMES.push}`);
  assert.equal(mounted.status, 201);
  assert.equal(mounted.headers.location, `/v2/${CROSSMOUNT_NAME}/blobs/${sha256Digest(blobA)}`);
  assert.equal((await suite('GET', String(mounted.headers.location))).status, 200);
  assert.equal((await suite('POST', `/v2/${CROSSMOUNT_NAME}/blobs/uploads/?mount=${sha256Digest(blobA)}`)).status, 201, 'automatic cross-mount');

  // Manifests.
  assert.equal((await suite('GET', `/v2/${SUITE_NAMES.push}/manifests/${NONEXISTENT_MANIFEST}`)).status, 404);
  const manifest = suiteManifest(config, layer);
  for (let i = 0; i < 4; i++) {
    const put = await suitePutManifest(SUITE_NAMES.push, `test${i}`, manifest);
    assert.equal(put.status, 201);
    assert.ok(put.headers.location);
  }
  // No layers but the empty descriptor, whose blob was never pushed: the suite only warns
  // when this is refused; Longshore refuses it as the Go registry does.
  const emptyLayer = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: sha256Digest(config), size: config.byteLength }, layers: [EMPTY_JSON_DESCRIPTOR] }));
  assert.equal(errorCode(await suitePutManifest(SUITE_NAMES.push, 'emptylayer', emptyLayer)), 'MANIFEST_BLOB_UNKNOWN');
  assert.equal((await suite('GET', `/v2/${SUITE_NAMES.push}/manifests/${sha256Digest(manifest)}`, { headers: { accept: OCI_MANIFEST } })).status, 200);

  assert.equal((await suite('DELETE', `/v2/${SUITE_NAMES.push}/manifests/${sha256Digest(manifest)}`)).status, 202);
  for (const blob of [config, layer]) assert.ok([202, 404].includes((await suite('DELETE', `/v2/${SUITE_NAMES.push}/blobs/${sha256Digest(blob)}`)).status));
});

test('conformance 1.1.1 content discovery: mixed-case tags in order with n/last, referrers with filter, annotations and unknown subjects', async () => {
  const configs = [suiteConfig(), suiteConfig(), suiteConfig()];
  const layer = randomBytes(120);
  for (const blob of [configs[0]!, layer, EMPTY_JSON, configs[1]!, configs[2]!]) await suitePushBlob(SUITE_NAMES.discovery, blob);
  const tagged = suiteManifest(configs[0]!, layer);
  for (let i = 0; i < 4; i++) {
    for (const tag of [`test${i}`, `TEST${i}`]) assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.discovery, tag, tagged)).status));
  }
  const listed = (await suite('GET', `/v2/${SUITE_NAMES.discovery}/tags/list`)).json<{ tags: string[] }>().tags;
  assert.equal(listed.length, 8);
  const lexical = [...listed].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0));
  const asciibetical = [...listed].sort();
  assert.ok(JSON.stringify(listed) === JSON.stringify(lexical) || JSON.stringify(listed) === JSON.stringify(asciibetical), listed.join(','));
  const half = (await suite('GET', `/v2/${SUITE_NAMES.discovery}/tags/list?n=4`)).json<{ tags: string[] }>().tags;
  assert.equal(half.length, 4);
  const last = half[3]!;
  const after = await suite('GET', `/v2/${SUITE_NAMES.discovery}/tags/list?n=4&last=${last}`);
  assert.equal(after.status, 200);
  const rest = after.json<{ tags: string[] }>().tags;
  assert.ok(rest.length <= 4 && !rest.includes(last));

  // Referrers: a subject image, one with annotations, and artifacts pointing at them.
  const subject = suiteManifest(configs[1]!, layer);
  assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.discovery, 'tagtest0', subject)).status));
  const annotated = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: sha256Digest(configs[0]!), size: configs[0]!.byteLength }, layers: [{ mediaType: LAYER, size: layer.byteLength, digest: sha256Digest(layer) }], annotations: { 'org.opencontainers.conformance.test': 'test annotation' } }, null, '\t'));
  assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.discovery, sha256Digest(annotated), annotated)).status));
  const descriptorOf = (bytes: Buffer) => ({ mediaType: OCI_MANIFEST, size: bytes.byteLength, digest: sha256Digest(bytes) });
  // Artifact A: the suite leaves the config's size out (Go writes 0).
  const artifactA = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: sha256Digest(configs[0]!), size: 0 }, subject: descriptorOf(subject), layers: [EMPTY_JSON_DESCRIPTOR] }, null, '\t'));
  const artifactB = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.oci.descriptor.v1+json', config: { mediaType: OCI_CONFIG, digest: sha256Digest(configs[0]!), size: 0 }, subject: descriptorOf(subject), layers: [EMPTY_JSON_DESCRIPTOR] }, null, '\t'));
  const copyAnnotation = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: sha256Digest(configs[0]!), size: configs[0]!.byteLength }, layers: [{ mediaType: LAYER, size: layer.byteLength, digest: sha256Digest(layer) }], subject: descriptorOf(annotated), annotations: { 'org.opencontainers.conformance.test': 'test annotation' } }, null, '\t'));
  for (const [artifact, expectedSubject] of [[artifactA, subject], [artifactB, subject], [copyAnnotation, annotated]] as const) {
    const put = await suitePutManifest(SUITE_NAMES.discovery, sha256Digest(artifact), artifact);
    assert.ok(isSuccess(put.status), put.body.toString());
    assert.equal(put.headers['oci-subject'], sha256Digest(expectedSubject));
  }
  // A subject that was never pushed: accepted, OCI-Subject still set.
  const neverPushed = suiteManifest(suiteConfig(), layer);
  const dangling = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: sha256Digest(configs[0]!), size: configs[0]!.byteLength }, subject: descriptorOf(neverPushed), layers: [{ mediaType: LAYER, size: layer.byteLength, digest: sha256Digest(layer) }] }, null, '\t'));
  const danglingPut = await suitePutManifest(SUITE_NAMES.discovery, sha256Digest(dangling), dangling);
  assert.ok(isSuccess(danglingPut.status));
  assert.equal(danglingPut.headers['oci-subject'], sha256Digest(neverPushed));

  interface ReferrersIndex { manifests: Array<{ digest: string; annotations?: Record<string, string> }> }
  const all = await suite('GET', `/v2/${SUITE_NAMES.discovery}/referrers/${sha256Digest(subject)}`);
  assert.equal(all.status, 200);
  assert.equal(all.headers['content-type'], OCI_INDEX);
  const allManifests = all.json<ReferrersIndex>().manifests;
  assert.equal(allManifests.length, 2);
  assert.notEqual(allManifests[0]!.digest, allManifests[1]!.digest);
  const filtered = await suite('GET', `/v2/${SUITE_NAMES.discovery}/referrers/${sha256Digest(subject)}?artifactType=application/vnd.oci.descriptor.v1%2Bjson`);
  assert.equal(filtered.headers['content-type'], OCI_INDEX);
  assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(filtered.json<ReferrersIndex>().manifests.map((m) => m.digest), [sha256Digest(artifactB)]);
  const missingSubject = await suite('GET', `/v2/${SUITE_NAMES.discovery}/referrers/${sha256Digest(neverPushed)}`);
  assert.equal(missingSubject.status, 200);
  assert.deepEqual(missingSubject.json<ReferrersIndex>().manifests.map((m) => m.digest), [sha256Digest(dangling)]);
  const withAnnotations = (await suite('GET', `/v2/${SUITE_NAMES.discovery}/referrers/${sha256Digest(annotated)}`)).json<ReferrersIndex>().manifests;
  assert.equal(withAnnotations.length, 1);
  assert.equal(withAnnotations[0]!.annotations?.['org.opencontainers.conformance.test'], 'test annotation');

  // Teardown: manifests (2xx, 404 or 405), then blobs.
  for (const manifest of [tagged, subject, artifactA, artifactB, dangling]) {
    assert.ok([202, 404].includes((await suite('DELETE', `/v2/${SUITE_NAMES.discovery}/manifests/${sha256Digest(manifest)}`)).status));
  }
  for (const blob of [configs[0]!, configs[1]!, EMPTY_JSON, layer]) assert.ok([202, 404].includes((await suite('DELETE', `/v2/${SUITE_NAMES.discovery}/blobs/${sha256Digest(blob)}`)).status));
});

test('conformance 1.1.1 content management: delete a tag, then the manifest, then its blobs', async () => {
  const config = suiteConfig();
  const layer = randomBytes(120);
  for (const blob of [config, layer]) await suitePushBlob(SUITE_NAMES.management, blob);
  const manifest = suiteManifest(config, layer);
  assert.ok(isSuccess((await suitePutManifest(SUITE_NAMES.management, 'tagtest0', manifest)).status));
  const before = (await suite('GET', `/v2/${SUITE_NAMES.management}/tags/list`)).json<{ tags: string[] }>().tags.length;
  assert.equal((await suite('DELETE', `/v2/${SUITE_NAMES.management}/manifests/tagtest0`)).status, 202);
  assert.ok([202, 404].includes((await suite('DELETE', `/v2/${SUITE_NAMES.management}/manifests/${sha256Digest(manifest)}`)).status));
  assert.equal((await suite('GET', `/v2/${SUITE_NAMES.management}/manifests/${sha256Digest(manifest)}`)).status, 404);
  const tagsAfter = await suite('GET', `/v2/${SUITE_NAMES.management}/tags/list`);
  assert.equal(tagsAfter.status, 200);
  assert.ok(tagsAfter.json<{ tags: string[] }>().tags.length < before);
  for (const blob of [config, layer]) assert.equal((await suite('DELETE', `/v2/${SUITE_NAMES.management}/blobs/${sha256Digest(blob)}`)).status, 202);
  assert.equal((await suite('GET', `/v2/${SUITE_NAMES.management}/blobs/${sha256Digest(config)}`)).status, 404);
});

test('Docker up to 19.03: upload POST, PATCH and PUT with an empty Content-Type header are accepted', async () => {
  const auth = basic('alice', 'wonderland');
  // What dockerd <= 19.03 sends to start a push: `Content-Type:` with no value and no body.
  const start = await rawRequest(`${server.url}/v2/corp/app/blobs/uploads/`, 'POST', { authorization: auth, 'content-type': '', 'content-length': '0' });
  assert.equal(start.status, 202, start.body);
  const location = String(start.headers.location);
  assert.match(location, /^\/v2\/corp\/app\/blobs\/uploads\//);
  const blob = randomBytes(3000);
  const patch = await rawRequest(`${server.url}${location}`, 'PATCH', { authorization: auth, 'content-type': '', 'content-length': String(blob.byteLength) }, blob);
  assert.equal(patch.status, 202, patch.body);
  assert.equal(patch.headers.range, `0-${blob.byteLength - 1}`);
  const put = await rawRequest(`${server.url}${location}?digest=${sha256Digest(blob)}`, 'PUT', { authorization: auth, 'content-type': '', 'content-length': '0' });
  assert.equal(put.status, 201, put.body);
  assert.equal(put.headers['docker-content-digest'], sha256Digest(blob));
  // Other body-less requests with the same empty header: a status check and a cancel.
  const other = await rawRequest(`${server.url}/v2/corp/app/blobs/uploads/`, 'POST', { authorization: auth, 'content-type': '', 'content-length': '0' });
  assert.equal((await rawRequest(`${server.url}${String(other.headers.location)}`, 'GET', { authorization: auth, 'content-type': '' })).status, 204);
  assert.equal((await rawRequest(`${server.url}${String(other.headers.location)}`, 'DELETE', { authorization: auth, 'content-type': '', 'content-length': '0' })).status, 204);
  assert.equal((await api('HEAD', `/v2/corp/app/blobs/${sha256Digest(blob)}`, { auth })).status, 200);
});
