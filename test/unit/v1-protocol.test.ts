// The v1 path grammar, names and ids (docs: v1-protocol.md §2, §3) and v1 token access.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessPolicy, NamespacePolicy } from '../../src/auth/policy.js';
import { JwtCodec } from '../../src/auth/jwt.js';
import { V1Access } from '../../src/auth/v1-access.js';
import { isValidImageId, normalizeV1Repository, parseImageList, parseV1Path, V1Error } from '../../src/protocol/v1.js';

const ID = 'a'.repeat(64);

test('paths: every client path of §2 maps to its route, with library/ for one-component names', () => {
  assert.deepEqual(parseV1Path('/v1/_ping'), { kind: 'ping' });
  assert.deepEqual(parseV1Path('/_ping'), { kind: 'ping' });
  assert.deepEqual(parseV1Path('/v1/users/'), { kind: 'users' });
  assert.deepEqual(parseV1Path('/v1/users'), { kind: 'users' });
  assert.deepEqual(parseV1Path('/v1/users/carol/'), { kind: 'user', username: 'carol' });
  assert.deepEqual(parseV1Path('/v1/repositories/corp/app/'), { kind: 'repository', repository: 'corp/app' });
  assert.deepEqual(parseV1Path('/v1/repositories/busybox/'), { kind: 'repository', repository: 'library/busybox' });
  assert.deepEqual(parseV1Path('/v1/repositories/corp/app/images'), { kind: 'repositoryImages', repository: 'corp/app' });
  assert.deepEqual(parseV1Path('/v1/repositories/corp/app/tags'), { kind: 'tags', repository: 'corp/app' });
  assert.deepEqual(parseV1Path('/v1/repositories/busybox/tags/latest'), { kind: 'tag', repository: 'library/busybox', tag: 'latest' });
  assert.deepEqual(parseV1Path('/v1/repositories/corp/app/tags/v1.0'), { kind: 'tag', repository: 'corp/app', tag: 'v1.0' });
  // Two readings fit; the one with an explicit namespace wins (clients add library/ for tags).
  assert.deepEqual(parseV1Path('/v1/repositories/corp/tags/tags'), { kind: 'tags', repository: 'corp/tags' });
  assert.deepEqual(parseV1Path(`/v1/images/${ID}/json`), { kind: 'image', id: ID, resource: 'json' });
  assert.deepEqual(parseV1Path(`/v1/images/${ID}/checksum`), { kind: 'image', id: ID, resource: 'checksum' });
  assert.deepEqual(parseV1Path('/v1/search'), { kind: 'search' });
  for (const path of ['/v1/', '/v1/images/x/files', '/v1/repositories/a/b/c/tags', '/v1/repositories/Corp/app/', '/v2/', '/v1/repositories/a/b/unknown']) {
    assert.equal(parseV1Path(path), undefined, path);
  }
});

test('names and ids: 64 lower-case hex ids; repositories are one or two valid components', () => {
  assert.ok(isValidImageId(ID));
  for (const bad of ['A'.repeat(64), 'a'.repeat(63), 'a'.repeat(16), '../x', `${ID}/`]) assert.ok(!isValidImageId(bad), bad);
  assert.equal(normalizeV1Repository(['ubuntu']), 'library/ubuntu');
  assert.equal(normalizeV1Repository(['corp', 'app']), 'corp/app');
  assert.equal(normalizeV1Repository(['a', 'b', 'c']), undefined);
  assert.equal(normalizeV1Repository(['..', 'x']), undefined);
});

test('image lists: ids validated, Go\'s capitalised Tag kept, anything else a 400', () => {
  assert.deepEqual(parseImageList([{ id: ID }, { id: ID, Tag: 'latest' }]), [{ id: ID }, { id: ID, Tag: 'latest' }]);
  for (const bad of [{}, [{ id: 'x' }], [{ id: ID, Tag: 'bad tag' }], [null]]) {
    assert.throws(() => parseImageList(bad), (error: unknown) => error instanceof V1Error && error.status === 400);
  }
});

test('tokens: signed by us, scoped to one repository and level; foreign tokens are told apart', async () => {
  const codec = new JwtCodec(Buffer.from('unit-test-secret-0123456789'));
  const access = new V1Access(new AccessPolicy(new NamespacePolicy(['corp']), { anonymousPull: true, privateAnonymousPull: false }), undefined, codec, { tokenTtlMs: 60_000, audience: 'longshore-v1' });
  const token = access.issueToken({ kind: 'user', name: 'alice' }, 'corp/app', 'write');
  assert.match(token, /^signature=[^,]+,repository="corp\/app",access=write$/);
  const request = { headers: { authorization: `Token ${token}` }, identity: undefined };
  const identity = await access.identify(request);
  assert.deepEqual(identity, { kind: 'token', user: 'alice', repository: 'corp/app', access: 'write' });
  assert.deepEqual(request.identity, { user: 'alice', method: 'token' }, 'recorded on the request for the log');
  assert.doesNotThrow(() => access.authorizeRepository(identity, 'corp/app', 'read'), 'a write token also reads (push probes)');
  assert.throws(() => access.authorizeRepository(identity, 'corp/app', 'delete'), (e: unknown) => e instanceof V1Error && e.status === 401);
  assert.throws(() => access.authorizeRepository(identity, 'corp/other', 'read'), (e: unknown) => e instanceof V1Error && e.status === 401);

  const other = new JwtCodec(Buffer.from('another-secret-entirely-000'));
  const forged = new V1Access(new AccessPolicy(new NamespacePolicy(['corp']), { anonymousPull: true, privateAnonymousPull: false }), undefined, other, { tokenTtlMs: 60_000, audience: 'longshore-v1' }).issueToken(
    { kind: 'user', name: 'mallory' },
    'corp/app',
    'write',
  );
  const forgedRequest = { headers: { authorization: `Token ${forged}` }, identity: undefined };
  const foreign = await access.identify(forgedRequest);
  assert.equal(foreign.kind, 'foreign');
  assert.deepEqual(forgedRequest.identity, { user: undefined, method: 'anonymous' }, 'a token we did not sign names nobody');
  assert.throws(() => access.authorizeRepository(foreign, 'corp/app', 'read'), (e: unknown) => e instanceof V1Error && e.status === 401);
  // A mirrored repository: an upstream's token is the upstream's business, never ours.
  assert.doesNotThrow(() => access.authorizeRepository(foreign, 'library/ubuntu', 'read'));
  assert.ok(!access.seesPrivateImages(foreign));
  assert.throws(() => access.authorizeRepository({ kind: 'user', name: 'alice' }, 'library/ubuntu', 'write'), (e: unknown) => e instanceof V1Error && e.status === 403);
});
