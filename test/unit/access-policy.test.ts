// The one access policy: the same rules for every credential kind, whichever API asks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessPolicy, NamespacePolicy, type Credential } from '../../src/auth/policy.js';

const users = { verify: () => Promise.resolve(true), mayPush: (name: string) => name !== 'newcomer' };

function policy(settings: { anonymousPull: boolean; privateAnonymousPull: boolean }): AccessPolicy {
  return new AccessPolicy(new NamespacePolicy(['corp']), settings, users);
}

const anonymous: Credential = { kind: 'anonymous' };
const alice: Credential = { kind: 'user', name: 'alice' };
const foreign: Credential = { kind: 'foreign' };
const anonymousToken: Credential = { kind: 'token', subject: '', grants: [{ repository: 'library/alpine', actions: ['pull'] }] };
const alicePullToken: Credential = { kind: 'token', subject: 'alice', grants: [{ repository: 'corp/app', actions: ['pull'] }] };

const reason = (decision: ReturnType<AccessPolicy['decide']>) => (decision.allowed ? 'allowed' : decision.reason);

test('mirrored repositories: pulls by the anonymousPull rule, for every credential; writes by nobody', () => {
  const open = policy({ anonymousPull: true, privateAnonymousPull: false });
  const closed = policy({ anonymousPull: false, privateAnonymousPull: false });
  for (const credential of [anonymous, foreign, alice]) assert.equal(reason(open.decide(credential, 'library/alpine', ['pull'])), 'allowed');
  assert.equal(reason(closed.decide(anonymous, 'library/alpine', ['pull'])), 'login');
  assert.equal(reason(closed.decide(foreign, 'library/alpine', ['pull'])), 'invalid_token', 'a token we did not issue opens nothing');
  assert.equal(reason(closed.decide(alice, 'library/alpine', ['pull'])), 'allowed');
  for (const credential of [anonymous, foreign, alice, anonymousToken]) {
    assert.equal(reason(open.decide(credential, 'library/alpine', ['pull', 'push'])), 'forbidden', `${credential.kind}: read-only`);
  }
  assert.equal(closed.readsMirrored(anonymous), false);
  assert.equal(closed.readsMirrored(foreign), false);
  assert.equal(open.readsMirrored(foreign), true);
});

test('private namespaces: users push (pull-only sign-ups excepted), anonymous pulls only with private.anonymousPull', () => {
  const rules = policy({ anonymousPull: true, privateAnonymousPull: false });
  assert.equal(reason(rules.decide(alice, 'corp/app', ['pull', 'push'])), 'allowed');
  assert.equal(reason(rules.decide({ kind: 'user', name: 'newcomer' }, 'corp/app', ['pull', 'push'])), 'forbidden');
  assert.deepEqual(rules.grantable('newcomer', 'corp/app', ['pull', 'push']), ['pull']);
  assert.equal(reason(rules.decide(anonymous, 'corp/app', ['pull'])), 'login');
  assert.equal(reason(rules.decide(foreign, 'corp/app', ['pull'])), 'invalid_token');
  assert.equal(reason(policy({ anonymousPull: false, privateAnonymousPull: true }).decide(anonymous, 'corp/app', ['pull'])), 'allowed');
  assert.equal(rules.readsPrivate(anonymous), false);
  assert.equal(rules.readsPrivate(alice), true);
});

test('tokens grant what they were minted with: lacking the action is insufficient_scope, unless the rules never allow it', () => {
  const rules = policy({ anonymousPull: true, privateAnonymousPull: false });
  assert.equal(reason(rules.decide(alicePullToken, 'corp/app', ['pull'])), 'allowed');
  assert.equal(reason(rules.decide(alicePullToken, 'corp/app', ['pull', 'push'])), 'insufficient_scope', 'a new token may carry push');
  assert.equal(reason(rules.decide(alicePullToken, 'corp/other', ['pull'])), 'insufficient_scope');
  assert.equal(reason(rules.decide(anonymousToken, 'corp/app', ['pull', 'push'])), 'insufficient_scope', 'dockerd pushing without login');
  const newcomerToken: Credential = { kind: 'token', subject: 'newcomer', grants: [{ repository: 'corp/app', actions: ['pull'] }] };
  assert.equal(reason(rules.decide(newcomerToken, 'corp/app', ['push'])), 'forbidden');
});

test('catalog and search: each name is a `list` decision, by anonymousPull for mirrored names and private.anonymousPull for private ones', () => {
  const names = ['corp/app', 'library/alpine'];
  const listed = (rules: AccessPolicy, credential: Credential) => rules.listing(credential, names);
  const none = policy({ anonymousPull: false, privateAnonymousPull: false });
  const mirroredOpen = policy({ anonymousPull: true, privateAnonymousPull: false });
  const privateOpen = policy({ anonymousPull: false, privateAnonymousPull: true });
  const allOpen = policy({ anonymousPull: true, privateAnonymousPull: true });

  assert.deepEqual(listed(none, anonymous).visible, []);
  assert.equal(listed(none, anonymous).refusal?.reason, 'login', 'an empty catalog tells an anonymous caller to log in');
  assert.deepEqual(listed(mirroredOpen, anonymous).visible, ['library/alpine']);
  assert.deepEqual(listed(privateOpen, anonymous).visible, ['corp/app']);
  assert.deepEqual(listed(allOpen, anonymous).visible, names);
  assert.equal(listed(allOpen, anonymous).refusal, undefined);
  for (const rules of [none, mirroredOpen, privateOpen]) assert.deepEqual(listed(rules, alice).visible, names, 'users list everything they may pull');

  // A foreign token lists what no credentials list, and is told it is invalid.
  assert.deepEqual(listed(mirroredOpen, foreign).visible, ['library/alpine']);
  assert.equal(listed(none, foreign).refusal?.reason, 'invalid_token');
  // A catalog token (registry:catalog:*) grants no repository: it lists what its subject may pull.
  const aliceCatalogToken: Credential = { kind: 'token', subject: 'alice', grants: [] };
  assert.deepEqual(listed(none, aliceCatalogToken).visible, names);
  assert.deepEqual(listed(mirroredOpen, anonymousToken).visible, ['library/alpine']);
  assert.deepEqual(listed(none, anonymousToken).visible, ['library/alpine'], 'what an anonymous token was granted');
  // Listing is reading: allowed on mirrored names, never a write.
  assert.equal(reason(mirroredOpen.decide(anonymous, 'library/alpine', ['list'])), 'allowed');
  assert.equal(reason(mirroredOpen.decide(alice, 'library/alpine', ['list', 'push'])), 'forbidden');
  // Tokens are never minted with `list`: it is decided from the rules.
  assert.deepEqual(allOpen.grantable('alice', 'corp/app', ['pull', 'push']), ['pull', 'push']);
});
