// The identity the access edge decides on is recorded on the request (request.identity) and
// read by everything after it: the access-log line names the user of good Basic credentials
// and of our tokens (v2 Bearer, v1 Token), nobody for anonymous callers or refused
// credentials, and no request verifies its credentials twice (bcrypt and JWT calls counted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { makeTempDir } from '../harness/tmp.js';
import { buildTestApp, type TestApp } from '../support/app.js';
import { onCleanup } from '../support/cleanup.js';
import { writeHtpasswd } from '../support/users.js';

const BASIC = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
const WRONG = `Basic ${Buffer.from('alice:nope').toString('base64')}`;
const DIGEST = `sha256:${'a'.repeat(64)}`;
// A mount names a second repository, so the request takes two access decisions.
const MOUNT = `/v2/corp/app/blobs/uploads/?mount=${DIGEST}&from=corp/base`;

async function appWithUsers(t: Parameters<typeof buildTestApp>[0]): Promise<TestApp & { calls: { bcrypt: number; jwt: number } }> {
  const dir = await makeTempDir('users');
  onCleanup(t, () => dir.remove());
  const users = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const built = await buildTestApp(t, { auth: { htpasswd: users }, private: { namespaces: ['corp'] } });
  const calls = { bcrypt: 0, jwt: 0 };
  const { users: verifier, tokens } = built.services;
  assert.ok(verifier);
  const verifyPassword = verifier.verify.bind(verifier);
  verifier.verify = (...args) => {
    calls.bcrypt += 1;
    return verifyPassword(...args);
  };
  const verifyToken = tokens.verify.bind(tokens);
  tokens.verify = (token) => {
    calls.jwt += 1;
    return verifyToken(token);
  };
  return { ...built, calls };
}

function lineFor(logs: Array<Record<string, unknown>>, path: string, authorization: string | undefined): Record<string, unknown> {
  const lines = logs.filter((l) => l.msg === 'request' && l.path === path);
  const line = lines.at(-1);
  assert.ok(line, `a request line for ${path} (${authorization ?? 'anonymous'})`);
  return line;
}

test('request lines name the user the access policy decided on: Basic and Bearer yes; anonymous, wrong passwords and forged tokens no', async (t) => {
  const { app, logs } = await appWithUsers(t);
  const token = (await app.inject({ url: '/token?service=longshore&scope=repository:corp/app:pull,push', headers: { authorization: BASIC } })).json<{ token: string }>().token;
  const forged = `${token.slice(0, -4)}AAAA`;
  const cases: Array<[string | undefined, number, string | undefined]> = [
    [BASIC, 202, 'alice'],
    [`Bearer ${token}`, 202, 'alice'],
    [undefined, 401, undefined],
    [WRONG, 401, undefined],
    [`Bearer ${forged}`, 401, undefined],
  ];
  for (const [authorization, status, user] of cases) {
    const response = await app.inject({ method: 'POST', url: MOUNT, headers: authorization ? { authorization } : {} });
    assert.equal(response.statusCode, status, `${authorization ?? 'anonymous'}: ${response.body}`);
    const line = lineFor(logs, MOUNT, authorization);
    assert.equal(line.user, user, `${authorization ?? 'anonymous'}`);
    logs.length = 0;
  }
});

test('credentials are verified once per request, however many decisions it takes, and the log line verifies nothing', async (t) => {
  const { app, logs, calls } = await appWithUsers(t);
  assert.equal((await app.inject({ method: 'POST', url: MOUNT, headers: { authorization: BASIC } })).statusCode, 202);
  assert.equal(calls.bcrypt, 1, 'one password check for the push and the mount source');
  assert.equal(lineFor(logs, MOUNT, BASIC).user, 'alice');

  const token = (await app.inject({ url: '/token?service=longshore&scope=repository:corp/app:pull,push', headers: { authorization: BASIC } })).json<{ token: string }>().token;
  calls.jwt = 0;
  assert.equal((await app.inject({ method: 'POST', url: MOUNT, headers: { authorization: `Bearer ${token}` } })).statusCode, 202);
  assert.equal(calls.jwt, 1, 'one token check for the push and the mount source, none for the log line');

  // The catalog decides every name it could list: still one check.
  calls.bcrypt = 0;
  assert.equal((await app.inject({ url: '/v2/_catalog', headers: { authorization: BASIC } })).statusCode, 200);
  assert.equal(calls.bcrypt, 1);
  assert.equal(lineFor(logs, '/v2/_catalog', BASIC).user, 'alice');
});

test('v1: the user of a Basic login and of our Token is on the line; a token we did not sign names nobody', async (t) => {
  const { app, logs } = await appWithUsers(t);
  const login = await app.inject({ url: '/v1/users/', headers: { authorization: BASIC } });
  assert.equal(login.statusCode, 200);
  assert.equal(lineFor(logs, '/v1/users/', BASIC).user, 'alice');

  const index = await app.inject({ method: 'PUT', url: '/v1/repositories/corp/app/', headers: { authorization: BASIC, 'x-docker-token': 'true', 'content-type': 'application/json' }, payload: '[]' });
  assert.equal(index.statusCode, 200, index.body);
  const token = String(index.headers['x-docker-token']);
  const tags = '/v1/repositories/corp/app/tags';
  await app.inject({ url: tags, headers: { authorization: `Token ${token}` } });
  assert.equal(lineFor(logs, tags, 'token').user, 'alice');
  await app.inject({ url: tags, headers: { authorization: 'Token signature=not.our.token,repository="corp/app",access=read' } });
  assert.equal(lineFor(logs, tags, 'foreign').user, undefined);
});

test('the web page API reads the same decision: a logged-in user is on the line, a forged token is a 401 with nobody', async (t) => {
  const { app, logs } = await appWithUsers(t);
  const token = (await app.inject({ url: '/token?service=longshore', headers: { authorization: BASIC } })).json<{ token: string }>().token;
  const session = await app.inject({ url: '/ui/api/session', headers: { authorization: `Bearer ${token}` } });
  assert.equal(session.json<{ user: string }>().user, 'alice');
  assert.equal(lineFor(logs, '/ui/api/session', 'bearer').user, 'alice');
  const forged = await app.inject({ url: '/ui/api/session', headers: { authorization: `Bearer ${token}x` } });
  assert.equal(forged.statusCode, 401);
  assert.equal(lineFor(logs, '/ui/api/session', 'forged').user, undefined);
});
