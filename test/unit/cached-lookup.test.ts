import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { CachedLookup, type CachedEntry, type Lookup } from '../../src/mirror/cached-lookup.js';
import { UpstreamError } from '../../src/upstream/errors.js';

const silent = pino({ level: 'silent' });

/** One cached value in memory and an upstream that answers from a script. */
function fixture(now: () => number, answers: Array<string | undefined | Error>) {
  let entry: CachedEntry<string> | undefined;
  let calls = 0;
  const lookup: Lookup<string> = {
    key: 'k',
    ttlMs: 100,
    cached: () => Promise.resolve(entry),
    refresh: async () => {
      calls += 1;
      await new Promise((resolve) => setImmediate(resolve));
      const answer = answers.shift();
      if (answer instanceof Error) throw answer;
      if (answer !== undefined) entry = { value: answer, fetchedAt: now() };
      return answer;
    },
    same: (a, b) => a === b,
  };
  return { lookup, calls: () => calls };
}

test('within the TTL no upstream call; past it one refresh shared by concurrent callers; unchanged is a hit', async () => {
  let now = 0;
  const lookups = new CachedLookup({ offline: false, now: () => now }, silent);
  const { lookup, calls } = fixture(() => now, ['a', 'a', 'b']);
  assert.deepEqual(await lookups.get(lookup), { value: 'a', outcome: 'miss' });
  now = 50;
  assert.deepEqual(await lookups.get(lookup), { value: 'a', outcome: 'hit' });
  assert.equal(calls(), 1);
  now = 200;
  const [first, second] = await Promise.all([lookups.get(lookup), lookups.get(lookup)]);
  assert.deepEqual([first?.outcome, second?.outcome], ['hit', 'coalesced'], 'revalidated unchanged, and shared');
  assert.equal(calls(), 2);
  now = 400;
  assert.deepEqual(await lookups.get(lookup), { value: 'b', outcome: 'miss' });
});

test('a transient upstream failure serves the last answer stale; other failures and absent answers do not', async () => {
  let now = 0;
  const lookups = new CachedLookup({ offline: false, now: () => now }, silent);
  const denied = new UpstreamError('up', 'denied', 'no');
  const { lookup } = fixture(() => now, ['a', new UpstreamError('up', 'unavailable', 'down'), denied, undefined]);
  await lookups.get(lookup);
  now = 200;
  assert.deepEqual(await lookups.get(lookup), { value: 'a', outcome: 'stale' });
  await assert.rejects(lookups.get(lookup), denied);
  assert.equal(await lookups.get(lookup), undefined, 'the upstream says it is gone');
});

test('offline: known answers are served (stale past the TTL) and nothing else is asked for', async () => {
  let now = 0;
  const online = new CachedLookup({ offline: false, now: () => now }, silent);
  const offline = new CachedLookup({ offline: true, now: () => now }, silent);
  const { lookup, calls } = fixture(() => now, ['a']);
  assert.equal(await offline.get(lookup), undefined);
  assert.equal(calls(), 0);
  await online.get(lookup);
  now = 200;
  assert.deepEqual(await offline.get(lookup), { value: 'a', outcome: 'stale' });
  assert.equal(calls(), 1);
});

test('with locks: the refresh re-reads under the lock and takes a fresh answer another holder wrote; a lock that cannot be had still refreshes, a refresh that fails under the lock is not retried', async () => {
  const now = 1000;
  // Another replica refreshed while this one waited: the lock's holder wrote before releasing.
  let stored: CachedEntry<string> = { value: 'old', fetchedAt: 0 };
  const memory: CachedEntry<string> = { value: 'old', fetchedAt: 0 };
  let refreshes = 0;
  const lookup: Lookup<string> = {
    key: 'k',
    ttlMs: 100,
    cached: () => Promise.resolve(memory),
    latest: () => Promise.resolve(stored),
    refresh: () => {
      refreshes += 1;
      return Promise.resolve('mine');
    },
  };
  const otherReplicaFirst = {
    withLock: async <T>(_key: string, work: () => Promise<T>): Promise<T> => {
      stored = { value: 'theirs', fetchedAt: now - 10 };
      return work();
    },
  };
  const coordinated = new CachedLookup({ offline: false, now: () => now, locks: otherReplicaFirst }, silent);
  assert.deepEqual(await coordinated.get(lookup), { value: 'theirs', outcome: 'hit' });
  assert.equal(refreshes, 0, 'no upstream request: the other replica made it');

  const unreachable = { withLock: () => Promise.reject(new Error('lock "x" still held by another replica after 30000 ms')) };
  assert.deepEqual(await new CachedLookup({ offline: false, now: () => now + 1000, locks: unreachable }, silent).get(lookup), { value: 'mine', outcome: 'miss' });
  assert.equal(refreshes, 1, 'refreshed uncoordinated');

  let attempts = 0;
  const failing: Lookup<string> = { ...lookup, latest: undefined, refresh: () => Promise.reject(new Error(`boom ${(attempts += 1)}`)) };
  const locks = { withLock: <T>(_key: string, work: () => Promise<T>) => work() };
  await assert.rejects(new CachedLookup({ offline: false, now: () => now + 1000, locks }, silent).get(failing), /boom 1/);
  assert.equal(attempts, 1, 'a failure of the work is not mistaken for a lock not had');
});

test('servedFromCache is the rule get() applies: a hit within the TTL, stale past it only offline', async () => {
  let now = 1000;
  const online = new CachedLookup({ offline: false, now: () => now }, silent);
  const offline = new CachedLookup({ offline: true, now: () => now }, silent);
  assert.equal(online.servedFromCache(950, 100), 'hit');
  assert.equal(online.servedFromCache(900, 100), undefined, 'at the TTL the upstream is asked');
  assert.equal(offline.servedFromCache(900, 100), 'stale');
  now = 1050;
  const { lookup } = fixture(() => now, []);
  lookup.cached = () => Promise.resolve({ value: 'a', fetchedAt: 1000 });
  assert.deepEqual(await online.get(lookup), { value: 'a', outcome: online.servedFromCache(1000, lookup.ttlMs) });
});
