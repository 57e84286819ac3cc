// The three failures found by trying v1 and v2 side by side (issue 12), each written to fail
// on the code before the one access policy, provenance and one engine:
//   1. v1 obeys auth.anonymousPull: false, and a token the mirror did not issue opens nothing;
//   2. mirrored v1 image records are scoped to their upstream: one cannot answer for another;
//   3. a mirrored image whose digests were also pushed privately still pulls with the upstream
//      away (down, circuit open, offline), and costs no upstream request from the cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import { startCountingProxy } from '../harness/counting-proxy.js';
import { pushDockerImage } from '../harness/images.js';
import { fetchBlob, fetchManifest } from '../harness/registry-client.js';
import { startRegistry } from '../harness/registry.js';
import { skopeo } from '../harness/skopeo.js';
import { makeTempDir } from '../harness/tmp.js';
import { V1Client, type V1Image } from '../harness/v1-client.js';
import { onCleanup } from '../support/cleanup.js';
import { startTestServer } from '../support/http-server.js';
import { startInProcess } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

test('v1 with auth.anonymousPull: false: no credentials, or a token the mirror did not issue, read nothing mirrored', async (t) => {
  const work = await makeTempDir('engine-v1-auth');
  onCleanup(t, () => work.remove());
  const upstreamUsers = path.join(work.path, 'upstream-htpasswd');
  await writeHtpasswd(upstreamUsers, { alice: 'wonderland' });
  const upstream = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd: upstreamUsers } });
  onCleanup(t, () => upstream.stop());
  const chain = await v1Chain('engine-auth', ['a', 'b']);
  const top = chain[1] as V1Image;
  await new V1Client(upstream.url, { username: 'alice', password: 'wonderland' }).push('corp/app', chain, { latest: top.id });

  const mirrorUsers = path.join(work.path, 'mirror-htpasswd');
  await writeHtpasswd(mirrorUsers, { bob: 'builder' });
  const mirror = await startInProcess({
    auth: { htpasswd: mirrorUsers, anonymousPull: false },
    upstreams: [{ name: 'legacy', v1: { index: upstream.url }, username: 'alice', password: 'wonderland', tagTtl: '1h', default: true }],
  });
  onCleanup(t, () => mirror.stop());

  // A user pulls: everything is cached now, fetched with the mirror's upstream credentials.
  const pulled = await new V1Client(mirror.url, { username: 'bob', password: 'builder' }).pull('corp/app', 'latest');
  assert.equal(sha256(pulled.images.get(top.id)?.layer ?? Buffer.alloc(0)), sha256(top.layer));

  const forged = { authorization: 'Token signature=forged.by.someone,repository="corp/app",access=read' };
  for (const [who, headers] of [
    ['no credentials', {}],
    ['a token the mirror did not issue', forged],
  ] as const) {
    const client = new V1Client(mirror.url);
    const images = await client.call('GET', `${mirror.url}/v1/repositories/corp/app/images`, { indexCall: true, headers });
    assert.equal(images.status, 401, `${who}: the image list`);
    assert.equal(images.headers['x-docker-token'], undefined, `${who}: no read token is minted`);
    assert.equal((await client.call('GET', `${mirror.url}/v1/repositories/corp/app/tags`, { headers })).status, 401, `${who}: tags`);
    assert.equal((await client.call('GET', `${mirror.url}/v1/repositories/corp/app/tags/latest`, { headers })).status, 401, `${who}: a tag`);
    for (const resource of ['json', 'ancestry', 'layer']) {
      const response = await client.call('GET', `${mirror.url}/v1/images/${top.id}/${resource}`, { headers });
      assert.ok(response.status === 401 || response.status === 404, `${who}: ${resource} answered ${response.status}`);
      assert.ok(response.json<{ error: string }>().error, `${who}: ${resource} has a v1 error body`);
    }
  }

  // Old-Docker --registry-mirror mode: a token from the upstream index, which the upstream
  // accepts, is what the upstream says it is worth: the image is served (from the cache).
  const viaMirror = new V1Client(upstream.url, { username: 'alice', password: 'wonderland' });
  const mirrored = await viaMirror.pull('corp/app', 'latest', { mirrors: [mirror.url] });
  assert.equal(sha256(mirrored.images.get(top.id)?.layer ?? Buffer.alloc(0)), sha256(top.layer));
  const layerCalls = viaMirror.calls.filter((c) => c.url.endsWith('/layer'));
  assert.ok(
    layerCalls.length > 0 && layerCalls.every((c) => c.url.startsWith(mirror.url) && c.status === 200),
    'every layer came from the mirror, with the upstream token',
  );
});

test('mirrored v1 image records are scoped to their upstream: an image id published elsewhere does not replace ours', async (t) => {
  const work = await makeTempDir('engine-v1-scope');
  onCleanup(t, () => work.remove());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const upstream = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd } });
  onCleanup(t, () => upstream.stop());
  const chain = await v1Chain('engine-scope', ['a', 'b']);
  const top = chain[1] as V1Image;
  await new V1Client(upstream.url, { username: 'alice', password: 'wonderland' }).push('corp/app', chain, { latest: top.id });

  // A hostile v1 upstream publishes an image under the id of corp/app:latest, with its own
  // json and layer (v1 ids are whatever the publisher says they are).
  const hostileJson = Buffer.from(JSON.stringify({ id: top.id, comment: 'not the real image' }));
  const hostileLayer = Buffer.from('hostile layer bytes');
  const hostile = await startTestServer((req, res) => {
    const send = (body: Buffer | string, headers: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(body);
    };
    const url = req.url ?? '';
    if (url.endsWith('/json')) send(hostileJson, { 'x-docker-size': String(hostileLayer.length) });
    else if (url.endsWith('/ancestry')) send(JSON.stringify([top.id]));
    else if (url.endsWith('/layer')) send(hostileLayer);
    else if (url.endsWith('/tags/latest')) send(JSON.stringify(top.id));
    else send(JSON.stringify([{ id: top.id }]), { 'x-docker-token': 'signature=hostile', 'x-docker-endpoints': new URL(hostileUrl()).host });
  });
  const hostileUrl = () => hostile.url;
  onCleanup(t, () => hostile.close());

  const mirror = await startInProcess({
    upstreams: [
      { name: 'legacy', v1: { index: upstream.url }, username: 'alice', password: 'wonderland', default: true },
      { name: 'other', v1: { index: hostile.url } },
    ],
  });
  onCleanup(t, () => mirror.stop());

  const fromOther = await new V1Client(mirror.url).pull('other/evil', 'latest');
  assert.ok(fromOther.images.get(top.id)?.layer.equals(hostileLayer), 'the other upstream answers for its own name');

  const fromLegacy = await new V1Client(mirror.url).pull('corp/app', 'latest');
  const got = fromLegacy.images.get(top.id);
  assert.ok(got, 'the top image is pulled');
  assert.ok(got.json.equals(top.json), 'json of corp/app:latest is the one its upstream published');
  assert.equal(sha256(got.layer), sha256(top.layer), 'layer of corp/app:latest is the one its upstream published');

  // And the other way round, now that both are cached.
  const again = await new V1Client(mirror.url).pull('other/evil', 'latest');
  assert.ok(again.images.get(top.id)?.json.equals(hostileJson));

  // v1-only upstreams sit behind a circuit breaker too, and it is reported like a v2 one.
  const metrics = await (await request(`${mirror.url}/metrics`)).body.text();
  for (const name of ['legacy', 'other']) {
    assert.match(metrics, new RegExp(`^longshore_upstream_circuit_state\\{[^}]*upstream="${name}"[^}]*\\} 0$`, 'm'), `${name}: reported, closed`);
  }
});

test('a mirrored image also pushed privately is served from the cache: no upstream HEAD, upstream down, circuit open, offline', async (t) => {
  const work = await makeTempDir('engine-promoted');
  onCleanup(t, () => work.remove());
  const registry = await startRegistry();
  onCleanup(t, () => registry.dispose());
  const image = await pushDockerImage(registry.url, 'library/base', '1.0', [30_000, 20_000]);
  const proxy = await startCountingProxy(registry.url);
  onCleanup(t, () => proxy.close());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const dataDir = path.join(work.path, 'data');
  const config = {
    private: { namespaces: ['corp'] },
    auth: { htpasswd },
    upstreams: [{ name: 'hub', url: proxy.url, default: true, libraryPrefix: true, tagTtl: '1h', circuitBreaker: { failures: 1, cooldown: '1h' } }],
  };
  let mirror = await startInProcess(config, dataDir);
  onCleanup(t, () => mirror.stop());
  const host = new URL(mirror.url).host;
  const digests = [image.configDigest, ...image.layers.map((l) => l.digest)];

  const pullAll = async (what: string) => {
    const manifest = await fetchManifest(mirror.url, 'library/base', '1.0');
    assert.equal(manifest.status, 200, `${what}: manifest by tag`);
    assert.equal(manifest.digest, image.manifestDigest, `${what}: manifest bytes`);
    assert.equal((await fetchManifest(mirror.url, 'library/base', image.manifestDigest)).status, 200, `${what}: manifest by digest`);
    for (const digest of digests) {
      const blob = await fetchBlob(mirror.url, 'library/base', digest);
      assert.equal(blob.status, 200, `${what}: blob ${digest}`);
      assert.equal(`sha256:${sha256(blob.bytes)}`, digest, `${what}: blob bytes`);
    }
  };
  await pullAll('first pull');

  // Promote: the mirrored image is copied into a private namespace, as teams do.
  await skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `docker://${host}/library/base:1.0`, `docker://${host}/corp/base:1.0`]);

  proxy.reset();
  await pullAll('promoted, upstream up');
  assert.deepEqual(
    proxy.requests.map((r) => `${r.method} ${r.path}`),
    [],
    'digests the mirror fetched from this upstream need no upstream confirmation',
  );

  await registry.stop();
  await pullAll('promoted, upstream down');

  // Open the circuit: one failure with failures: 1.
  const cold = await request(`${mirror.url}/v2/library/base/blobs/sha256:${'0'.repeat(64)}`);
  await cold.body.dump();
  assert.ok(cold.statusCode >= 500, `a cold miss with the upstream down is a 5xx (${cold.statusCode})`);
  await pullAll('promoted, circuit open');

  await mirror.stop();
  mirror = await startInProcess({ ...config, offline: true }, dataDir);
  await pullAll('promoted, offline');

  // A private digest the mirror never fetched from the upstream stays unreadable under its names.
  const privateOnly = await pushDockerImage(mirror.url, 'corp/only', 'v1', [1000], {
    headers: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` },
  });
  const leaked = await fetchBlob(mirror.url, 'library/base', privateOnly.layers[0]?.digest ?? '');
  assert.equal(leaked.status, 404, 'a private-only digest is not served under a mirrored name');
});

test('Bearer challenges say why: insufficient_scope for a valid token lacking the action, invalid_token for a bad one', async (t) => {
  const work = await makeTempDir('engine-challenge');
  onCleanup(t, () => work.remove());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startInProcess({ private: { namespaces: ['corp'] }, auth: { htpasswd } });
  onCleanup(t, () => mirror.stop());

  // An anonymous token (what dockerd gets before a push without login) grants nothing on corp/app.
  const tokenResponse = await request(`${mirror.url}/token?service=longshore&scope=repository:corp/app:pull,push`);
  const { token } = (await tokenResponse.body.json()) as { token: string };
  const upload = async (authorization: string) => {
    const response = await request(`${mirror.url}/v2/corp/app/blobs/uploads/`, { method: 'POST', headers: { authorization } });
    await response.body.dump();
    return { status: response.statusCode, challenge: String(response.headers['www-authenticate'] ?? '') };
  };
  const lacking = await upload(`Bearer ${token}`);
  assert.equal(lacking.status, 401);
  assert.match(lacking.challenge, /^Bearer /);
  assert.match(lacking.challenge, /error="insufficient_scope"/);
  assert.match(lacking.challenge, /scope="repository:corp\/app:pull,push"/);

  const forged = await upload(`Bearer ${token.slice(0, -4)}AAAA`);
  assert.equal(forged.status, 401);
  assert.match(forged.challenge, /error="invalid_token"/);

  // No credentials at all: a plain challenge, no error (RFC 6750 §3.1).
  const none = await request(`${mirror.url}/v2/corp/app/blobs/uploads/`, { method: 'POST' });
  await none.body.dump();
  assert.equal(none.statusCode, 401);
  assert.doesNotMatch(String(none.headers['www-authenticate']), /error=/);
});
