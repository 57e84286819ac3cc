// Clients as an attacker would be one (issue 14, points 1, 2, 8): access decided before any
// body is read, slow and stalled senders dropped, buffered bodies bounded in total, failed
// logins answered 429 in each API's format, repeated query parameters and broken v1 tags
// answered 400, and clients that go away logged at info, never at error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { makeTempDir } from '../harness/tmp.js';
import { makePrivateCa } from '../harness/tls.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';

async function usersFileIn(dir: string): Promise<string> {
  const htpasswd = path.join(dir, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  return htpasswd;
}

async function startWithUsers(t: test.TestContext, config: Record<string, unknown> = {}): Promise<InProcessLongshore> {
  const work = await makeTempDir('hostile');
  onCleanup(t, () => work.remove());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const auth = { htpasswd, ...(config.auth as Record<string, unknown> | undefined) };
  const mirror = await startInProcess({ private: { namespaces: ['corp'] }, ...config, auth });
  onCleanup(t, () => mirror.stop());
  return mirror;
}

interface RawExchange {
  /** What the server sent before it closed (or before `waitMs`). */
  received: string;
  /** Milliseconds until the server closed the connection; undefined: still open at `waitMs`. */
  closedAfterMs: number | undefined;
}

/** Writes `data` on a raw connection and waits up to `waitMs` for the server to answer or close. */
function rawExchange(url: string, data: string, waitMs: number, until?: (received: string) => boolean): Promise<RawExchange> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(Number(port), hostname, () => socket.write(data));
    let received = '';
    const finish = (closedAfterMs: number | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received, closedAfterMs });
    };
    const timer = setTimeout(() => finish(undefined), waitMs);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (until?.(received)) finish(Date.now() - started);
    });
    socket.on('close', () => finish(Date.now() - started));
    socket.on('error', (error) => (received ? finish(Date.now() - started) : reject(error)));
  });
}

test('POST /v1/users/ with sign-up closed is refused before the body is read', async (t) => {
  const mirror = await startWithUsers(t);
  // Headers promise 4 MiB; only a few bytes come. The old code waited for all of them.
  const head = 'POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n{"username":';
  const answer = await rawExchange(mirror.url, head, 3000, (text) => text.includes('\r\n\r\n') && text.includes('}'));
  assert.match(answer.received, /^HTTP\/1\.1 401 /);
  assert.match(answer.received, /"error":"account creation is disabled/);
});

test('a client that sends its headers slowly is dropped after http.headersTimeout', async (t) => {
  const mirror = await startWithUsers(t, { http: { headersTimeout: '1s', requestTimeout: '10s' } });
  const answer = await rawExchange(mirror.url, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n', 6000);
  assert.ok(answer.closedAfterMs !== undefined, 'the connection is still open after 6 s');
  assert.ok(answer.closedAfterMs >= 900 && answer.closedAfterMs < 4000, `closed after ${answer.closedAfterMs} ms`);
  assert.match(answer.received, /^(HTTP\/1\.1 408 |$)/);
});

test('a client whose body stalls is dropped after http.bodyIdleTimeout', async (t) => {
  const mirror = await startWithUsers(t, { auth: { allowSignup: true }, http: { bodyIdleTimeout: '1s' } });
  const head = 'POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user';
  const answer = await rawExchange(mirror.url, head, 6000);
  assert.ok(answer.closedAfterMs !== undefined, 'the connection is still open after 6 s');
  assert.ok(answer.closedAfterMs >= 900 && answer.closedAfterMs < 4000, `closed after ${answer.closedAfterMs} ms`);
  const errors = mirror.logs.filter((line) => (line.level as number) >= 50);
  assert.deepEqual(errors, [], 'a stalled client is not a server error');
});

test('buffered request bodies are bounded in total (http.maxBufferedBodies): past it, 503 with Retry-After', async (t) => {
  const mirror = await startWithUsers(t, { auth: { allowSignup: true }, http: { maxBufferedBodies: 1000 } });
  // One client holds 900 bytes of an unfinished body...
  const holder = net.connect(Number(new URL(mirror.url).port), '127.0.0.1');
  onCleanup(t, () => holder.destroy());
  holder.write(`POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n${' '.repeat(900)}`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  // ...so another body that would take the total past 1000 bytes is refused.
  const body = JSON.stringify({ username: 'mallory', password: 'x'.repeat(300) });
  const response = await request(`${mirror.url}/v1/users/`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  assert.equal(response.statusCode, 503);
  assert.equal(response.headers['retry-after'], '1');
  assert.match(((await response.body.json()) as { error: string }).error, /too many request bodies/);
  holder.destroy();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const again = await request(`${mirror.url}/v1/users/`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  assert.equal(again.statusCode, 201, 'memory is given back when the holder goes away');
  await again.body.dump();
});

test('failed logins past the limit get 429 + Retry-After, in the OCI envelope on v2 and {"error"} on v1', async (t) => {
  const mirror = await startWithUsers(t, { auth: { loginFailures: { perAddress: 0, perUser: 3, window: '1m' } } });
  const basic = (password: string) => `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`;
  for (let i = 0; i < 3; i++) {
    const response = await request(`${mirror.url}/v2/`, { headers: { authorization: basic(`guess-${i}`) } });
    assert.equal(response.statusCode, 401);
    await response.body.dump();
  }
  const v2 = await request(`${mirror.url}/v2/`, { headers: { authorization: basic('wonderland') } });
  assert.equal(v2.statusCode, 429);
  assert.ok(Number(v2.headers['retry-after']) > 0 && Number(v2.headers['retry-after']) <= 60);
  const envelope = (await v2.body.json()) as { errors: Array<{ code: string }> };
  assert.equal(envelope.errors[0]?.code, 'TOOMANYREQUESTS');
  const token = await request(`${mirror.url}/token?service=longshore&scope=repository:corp/x:pull`, { headers: { authorization: basic('wonderland') } });
  assert.equal(token.statusCode, 429);
  await token.body.dump();
  const v1 = await request(`${mirror.url}/v1/users/`, { headers: { authorization: basic('wonderland') } });
  assert.equal(v1.statusCode, 429);
  assert.ok(Number(v1.headers['retry-after']) > 0);
  assert.match(((await v1.body.json()) as { error: string }).error, /too many failed logins/);
});

test('repeated query parameters are a 400 in the API\'s own format, not a 500', async (t) => {
  const mirror = await startWithUsers(t);
  const v2 = await request(`${mirror.url}/v2/library/alpine/manifests/latest?ns=docker.io&ns=evil.example`);
  assert.equal(v2.statusCode, 400);
  const envelope = (await v2.body.json()) as { errors: Array<{ code: string; message: string }> };
  assert.match(envelope.errors[0]?.message ?? '', /"ns" is given more than once/);
  const v1 = await request(`${mirror.url}/v1/search?q=a&q=b`);
  assert.equal(v1.statusCode, 400);
  assert.match(((await v1.body.json()) as { error: string }).error, /"q" is given more than once/);
  const tags = await request(`${mirror.url}/v2/corp/app/tags/list?n=1&n=2`, { headers: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` } });
  assert.equal(tags.statusCode, 400);
  await tags.body.dump();
});

test('v1 tags with encoded NUL, slash or broken escapes are a 400 {"error"}, not a 500', async (t) => {
  const mirror = await startWithUsers(t, { private: { namespaces: ['corp'], anonymousPull: true } });
  for (const tag of ['a%00b', 'a%2Fb', '..%2F..%2Fx', '%E0%A4%A']) {
    const response = await request(`${mirror.url}/v1/repositories/corp/app/tags/${tag}`);
    assert.equal(response.statusCode, 400, tag);
    const { error } = (await response.body.json()) as { error: string };
    // A path that is not valid percent-encoding is refused by the router itself ("Bad Request").
    assert.match(error, tag.startsWith('%E0') ? /Bad Request/ : /invalid tag/, tag);
  }
  const user = await request(`${mirror.url}/v1/users/a%00b/`, { method: 'PUT', body: '{}' });
  assert.equal(user.statusCode, 400);
  assert.match(((await user.body.json()) as { error: string }).error, /invalid user name/);
  const errors = mirror.logs.filter((line) => (line.level as number) >= 50);
  assert.deepEqual(errors, []);
});

test('a client that goes away mid-request is logged at info with the request line, never at error', async (t) => {
  const mirror = await startWithUsers(t, { auth: { allowSignup: true } });
  for (let i = 0; i < 5; i++) {
    const socket = net.connect(Number(new URL(mirror.url).port), '127.0.0.1');
    socket.write('POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"us');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const errors = mirror.logs.filter((line) => (line.level as number) >= 50);
  assert.deepEqual(errors, [], 'no error-level lines for clients that hang up');
  const gone = mirror.logs.filter((line) => line.msg === 'client went away before the request finished');
  assert.equal(gone.length, 5);
  assert.equal(gone[0]?.level, 30);
  assert.equal(gone[0]?.path, '/v1/users/');
});

test('self-registered accounts may only pull until an operator removes them from <htpasswd>.signups', async (t) => {
  const mirror = await startWithUsers(t, { auth: { allowSignup: true } });
  const signup = await request(`${mirror.url}/v1/users/`, { method: 'POST', body: JSON.stringify({ username: 'mallory', password: 'mallory-pw' }), headers: { 'content-type': 'application/json' } });
  assert.equal(signup.statusCode, 201);
  await signup.body.dump();
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const tryPushes = async (authorization: string) => {
    const v1 = await request(`${mirror.url}/v1/repositories/corp/app/`, { method: 'PUT', body: '[]', headers: { authorization, 'x-docker-token': 'true' } });
    const v1Body = (await v1.body.json()) as { error?: string };
    const v2 = await request(`${mirror.url}/v2/corp/app/blobs/uploads/`, { method: 'POST', headers: { authorization } });
    const v2Body = (await v2.body.json().catch(() => ({}))) as { errors?: Array<{ code: string }> };
    const token = await request(`${mirror.url}/token?service=longshore&scope=repository:corp/app:pull,push`, { headers: { authorization } });
    const { access } = JSON.parse(Buffer.from(((await token.body.json()) as { token: string }).token.split('.')[1] ?? '', 'base64url').toString()) as { access: Array<{ actions: string[] }> };
    return { v1: v1.statusCode, v1Body, v2: v2.statusCode, v2Body, tokenActions: access[0]?.actions ?? [] };
  };
  const refused = await tryPushes(basic('mallory', 'mallory-pw'));
  assert.equal(refused.v1, 403);
  assert.match(refused.v1Body.error ?? '', /self-registered and may only pull/);
  assert.equal(refused.v2, 403);
  assert.equal(refused.v2Body.errors?.[0]?.code, 'DENIED');
  assert.deepEqual(refused.tokenActions, ['pull']);
  const pull = await request(`${mirror.url}/v2/corp/app/tags/list`, { headers: { authorization: basic('mallory', 'mallory-pw') } });
  assert.equal(pull.statusCode, 404, 'pulls are allowed (the repository just does not exist yet)');
  await pull.body.dump();
  assert.equal((await tryPushes(basic('alice', 'wonderland'))).v2, 202, 'operator-made accounts push as before');

  // The operator grants more: the name leaves the .signups file.
  const users = mirror.server.services.users;
  assert.ok(users);
  assert.deepEqual((await readFile(users.signupsFile, 'utf8')).trim().split('\n'), ['mallory']);
  await writeFile(users.signupsFile, '');
  await new Promise((resolve) => setTimeout(resolve, 1100)); // the files are looked at once a second
  const granted = await tryPushes(basic('mallory', 'mallory-pw'));
  assert.equal(granted.v2, 202);
  assert.deepEqual(granted.tokenActions, ['pull', 'push']);
});

test('property: any method, path, query and credentials get an answer below 500, in the API\'s own error format', async (t) => {
  const mirror = await startWithUsers(t, { auth: { allowSignup: true } });
  const segment = fc.oneof(
    fc.constantFrom('v1', 'v2', 'corp', 'app', 'library', 'tags', 'manifests', 'blobs', 'uploads', 'images', 'repositories', 'users', 'search', '_catalog', 'json', 'layer', 'ancestry', 'checksum', 'latest', '%00', '%2F', '%2e', 'sha256:' + 'a'.repeat(64), 'a'.repeat(64), ''),
    fc.string({ maxLength: 8 }).map(encodeURIComponent),
  );
  const path = fc.tuple(fc.constantFrom('/v1/', '/v2/', '/'), fc.array(segment, { maxLength: 7 })).map(([root, parts]) => root + parts.join('/'));
  const query = fc.array(fc.tuple(fc.constantFrom('n', 'last', 'q', 'page', 'ns', 'digest', 'mount', 'from', 'scope', 'x'), fc.string({ maxLength: 6 }).map(encodeURIComponent)), { maxLength: 4 });
  const authorization = fc.option(
    fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.string({ maxLength: 20 }).map((s) => `Basic ${Buffer.from(s).toString('base64')}`),
      fc.constantFrom('Basic', 'Bearer ', 'Bearer a.b.c', 'Token signature=x,repository="corp/app",access=write', 'Basic !!!'),
    ),
    { nil: undefined },
  );
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH'), path, query, authorization, fc.string({ maxLength: 40 }), async (method, url, params, auth, body) => {
      const search = params.map(([k, v]) => `${k}=${v}`).join('&');
      const response = await mirror.server.app.inject({
        method: method as 'GET',
        url: search ? `${url}?${search}` : url,
        headers: { ...(auth === undefined ? {} : { authorization: auth }), 'content-type': 'application/json' },
        ...(method === 'GET' || method === 'HEAD' ? {} : { payload: body }),
      });
      assert.ok(response.statusCode < 500, `${method} ${url}?${search} (${auth ?? 'anonymous'}) -> ${response.statusCode} ${response.body.slice(0, 300)}`);
      if (response.statusCode >= 400 && method !== 'HEAD' && response.body) {
        const parsed = JSON.parse(response.body) as { errors?: unknown[]; error?: unknown };
        assert.ok(Array.isArray(parsed.errors) || typeof parsed.error === 'string', response.body);
      }
    }),
    { numRuns: 400 },
  );
  assert.deepEqual(mirror.logs.filter((line) => (line.level as number) >= 50), []);
});

test('behind a listed proxy, failed-login limits count each X-Forwarded-For client; from anyone else the header is ignored', async (t) => {
  const basic = `Basic ${Buffer.from('nobody:guess').toString('base64')}`;
  const attempt = async (url: string, forwardedFor: string) => {
    const response = await request(`${url}/v2/`, { headers: { authorization: basic, 'x-forwarded-for': forwardedFor } });
    await response.body.dump();
    return response.statusCode;
  };
  const limits = { loginFailures: { perAddress: 2, perUser: 0 } };
  const proxied = await startWithUsers(t, { auth: limits, http: { trustProxy: ['127.0.0.1'] } });
  assert.deepEqual([await attempt(proxied.url, '203.0.113.1'), await attempt(proxied.url, '203.0.113.1'), await attempt(proxied.url, '203.0.113.1')], [401, 401, 429]);
  assert.equal(await attempt(proxied.url, '203.0.113.2'), 401, 'another client behind the proxy has its own count');

  const direct = await startWithUsers(t, { auth: limits });
  assert.deepEqual([await attempt(direct.url, '203.0.113.1'), await attempt(direct.url, '203.0.113.2'), await attempt(direct.url, '203.0.113.3')], [401, 401, 429], 'a forged header does not buy new tries');
});

/** Opens a TLS connection, writes `head`, then drips `drip` every 400 ms (or stays silent); ms until the server closes it (undefined: open at 9 s). */
function slowTlsSender(port: number, caFile: string, head: string, drip: string | undefined): Promise<number | undefined> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(caFile) }, () => socket.write(head));
    const dripping = setInterval(() => drip !== undefined && socket.writable && socket.write(drip), 400);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, 9000);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      clearInterval(dripping);
      resolve(Date.now() - started);
    });
  });
}

test('over TLS too, slow headers are dropped after http.headersTimeout and slow bodies after http.requestTimeout', async (t) => {
  const work = await makeTempDir('hostile-tls');
  onCleanup(t, () => work.remove());
  const ca = await makePrivateCa(work.path);
  const pair = await ca.issue('longshore');
  const mirror = await startInProcess({ tls: pair, auth: { htpasswd: await usersFileIn(work.path), allowSignup: true }, http: { headersTimeout: '1s', requestTimeout: '5s' } });
  onCleanup(t, () => mirror.stop());
  const port = Number(new URL(mirror.url).port);
  // Half the headers, then silence: node:https alone notices only when more bytes arrive, so
  // this connection would be held until http.bodyIdleTimeout (60 s).
  const headers = await slowTlsSender(port, ca.cert, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n', undefined);
  assert.ok(headers !== undefined && headers < 3000, `slow headers: closed after ${headers} ms`);
  const body = await slowTlsSender(port, ca.cert, 'POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n', ' ');
  assert.ok(body !== undefined && body >= 4800 && body < 8500, `slow body: closed after ${body} ms`);
  // A well-behaved client keeps its connection between requests, idle longer than the limit.
  const agent = new Agent({ connect: { ca: readFileSync(ca.cert) }, keepAliveTimeout: 30_000 });
  onCleanup(t, () => agent.close());
  let connections = 0;
  const ping = async () => {
    const response = await request(`${mirror.url}/v2/`, { dispatcher: agent });
    await response.body.dump();
    return response.statusCode;
  };
  agent.on('connect', () => connections++);
  assert.equal(await ping(), 401); // users are configured: the challenge
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(await ping(), 401);
  assert.equal(connections, 1, 'one kept-alive connection for both requests');
});
