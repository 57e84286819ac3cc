// Route behaviour through inject(): the app plugin on an instance built per test, no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { makeTempDir } from '../harness/tmp.js';
import { buildTestApp } from '../support/app.js';
import { onCleanup } from '../support/cleanup.js';
import { writeHtpasswd } from '../support/users.js';

test('GET /v2/ answers with the API version header; anonymous pulls allowed by default', async (t) => {
  const { app } = await buildTestApp(t);
  const response = await app.inject({ method: 'GET', url: '/v2/' });
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['docker-distribution-api-version'], 'registry/2.0');
});

test('an unknown endpoint gets the OCI error envelope with 404', async (t) => {
  const { app } = await buildTestApp(t);
  const response = await app.inject({ method: 'GET', url: '/nothing/here?x=1' });
  assert.equal(response.statusCode, 404);
  const body = response.json<{ errors: Array<{ code: string; message: string }> }>();
  assert.equal(body.errors[0]?.code, 'UNSUPPORTED');
  assert.match(body.errors[0]?.message ?? '', /GET \/nothing\/here$/);
});

test('an invalid repository name is refused in the OCI envelope, before any storage access', async (t) => {
  const { app } = await buildTestApp(t, { private: { namespaces: ['corp'], anonymousPull: true } });
  const response = await app.inject({ method: 'GET', url: '/v2/corp/App/manifests/v1' });
  assert.equal(response.statusCode, 400);
  assert.equal(response.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'NAME_INVALID');
});

test('a private repository needs credentials when anonymous private pulls are off', async (t) => {
  const { app } = await buildTestApp(t, { private: { namespaces: ['corp'] } });
  const response = await app.inject({ method: 'GET', url: '/v2/corp/app/manifests/latest' });
  assert.equal(response.statusCode, 401);
  assert.match(String(response.headers['www-authenticate']), /^Bearer realm=/);
});

test('a missing private manifest is MANIFEST_UNKNOWN (404), not an upstream lookup', async (t) => {
  const { app } = await buildTestApp(t, { private: { namespaces: ['corp'], anonymousPull: true } });
  const response = await app.inject({ method: 'GET', url: '/v2/corp/app/manifests/latest' });
  assert.equal(response.statusCode, 404);
  assert.equal(response.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'MANIFEST_UNKNOWN');
});

test('HEAD has its own routes: no implicit HEAD that would run a GET handler', async (t) => {
  const { app } = await buildTestApp(t);
  const head = await app.inject({ method: 'HEAD', url: '/v2/' });
  assert.equal(head.statusCode, 200);
  assert.equal(head.body, '');
  // /healthz declares GET only; with implicit HEAD routes this would be 200.
  assert.equal((await app.inject({ method: 'HEAD', url: '/healthz' })).statusCode, 404);
});

test('/healthz and /readyz answer; /metrics is Prometheus text', async (t) => {
  const { app } = await buildTestApp(t);
  assert.deepEqual((await app.inject({ url: '/healthz' })).json(), { status: 'ok' });
  assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
  const metrics = await app.inject({ url: '/metrics' });
  assert.equal(metrics.statusCode, 200);
  assert.match(metrics.body, /^# HELP longshore_/m);
});

test('api.v2: false answers /v2/ with 404 so old clients fall back to v1', async (t) => {
  const { app } = await buildTestApp(t, { api: { v2: false } });
  assert.equal((await app.inject({ url: '/v2/' })).statusCode, 404);
  assert.equal((await app.inject({ url: '/v1/_ping' })).statusCode, 200);
});

test('each request is one access-log line with method, path, status, client address and user agent', async (t) => {
  const { app, logs } = await buildTestApp(t);
  await app.inject({ method: 'GET', url: '/v2/', remoteAddress: '192.0.2.7', headers: { 'user-agent': 'docker/27.0 go/go1.22' } });
  const lines = logs.filter((l) => l.msg === 'request');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.method, 'GET');
  assert.equal(lines[0]?.path, '/v2/');
  assert.equal(lines[0]?.status, 200);
  assert.equal(lines[0]?.client, '192.0.2.7');
  assert.equal(lines[0]?.userAgent, 'docker/27.0 go/go1.22');
  assert.equal(lines[0]?.level, 30);
});

test('/metrics, /healthz and /readyz requests are logged at debug, not info', async (t) => {
  const { app, logs } = await buildTestApp(t);
  for (const url of ['/metrics', '/healthz', '/readyz?verbose=1']) await app.inject({ url });
  const lines = logs.filter((l) => l.msg === 'request');
  assert.deepEqual(
    lines.map((l) => [l.path, l.level]),
    [
      ['/metrics', 20],
      ['/healthz', 20],
      ['/readyz?verbose=1', 20],
    ],
  );
});

test('/readyz names upstreams whose certificates are not verified', async (t) => {
  const { app } = await buildTestApp(t, {
    upstreams: [
      { name: 'lab', url: 'https://lab.example', insecure: true },
      { name: 'hub', url: 'https://hub.example' },
    ],
  });
  const ready = await app.inject({ url: '/readyz' });
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { status: 'ready', warnings: ['upstream lab: certificate verification is off (insecure: true)'] });
});

test('request lines name the user: accepted Basic credentials, or the subject of a token we issued', async (t) => {
  const dir = await makeTempDir('users');
  onCleanup(t, () => dir.remove());
  const users = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const { app, logs } = await buildTestApp(t, { auth: { htpasswd: users } });
  const basic = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
  assert.equal((await app.inject({ url: '/v2/', headers: { authorization: basic } })).statusCode, 200);
  const wrong = `Basic ${Buffer.from('alice:nope').toString('base64')}`;
  assert.equal((await app.inject({ url: '/v2/', headers: { authorization: wrong } })).statusCode, 401);
  const token = (await app.inject({ url: '/token?service=longshore&scope=repository:library/alpine:pull', headers: { authorization: basic } })).json<{ token: string }>().token;
  assert.equal((await app.inject({ url: '/v2/', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
  const anonymousToken = (await app.inject({ url: '/token?service=longshore&scope=repository:library/alpine:pull' })).json<{ token: string }>().token;
  await app.inject({ url: '/v2/', headers: { authorization: `Bearer ${anonymousToken}` } });
  const seen = logs.filter((l) => l.msg === 'request' && l.path === '/v2/').map((l) => [l.status, l.user]);
  assert.deepEqual(seen, [
    [200, 'alice'],
    [401, undefined],
    [200, 'alice'],
    [200, undefined],
  ]);
});
