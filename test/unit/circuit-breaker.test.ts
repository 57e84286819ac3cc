import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CircuitBreakerUpstream, CircuitBreakerV1Upstream } from '../../src/upstream/circuit-breaker.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import type { UpstreamRegistry, V1UpstreamRegistry } from '../../src/upstream/upstream.js';

function scripted(outcomes: Array<'ok' | 'down' | 'missing' | 'denied'>) {
  let calls = 0;
  const upstream = {
    name: 'up',
    hosts: [],
    isDefault: true,
    libraryPrefix: false,
    tagTtlMs: 1000,
    listTags: () => {
      const outcome = outcomes[calls++] ?? 'ok';
      if (outcome === 'down') return Promise.reject(new UpstreamError('up', 'unavailable', 'connection refused'));
      if (outcome === 'denied') return Promise.reject(new UpstreamError('up', 'denied', 'no'));
      return Promise.resolve(outcome === 'missing' ? undefined : ['latest']);
    },
  } as unknown as UpstreamRegistry;
  return { upstream, calls: () => calls };
}

test('opens after consecutive transient failures, fails fast while open, recovers after the cooldown', async () => {
  let now = 0;
  const { upstream, calls } = scripted(['down', 'down', 'down', 'ok', 'ok']);
  const breaker = new CircuitBreakerUpstream(upstream, { failures: 3, cooldownMs: 10_000 }, () => now);
  for (let i = 0; i < 3; i++) await assert.rejects(breaker.listTags('a'), /connection refused/);
  assert.equal(breaker.circuit, 'open');
  await assert.rejects(breaker.listTags('a'), (e: UpstreamError) => e.isTransient && /circuit open/.test(e.message));
  assert.equal(calls(), 3, 'an open circuit does not ask the upstream');
  now = 10_000;
  assert.equal(breaker.circuit, 'half-open');
  assert.deepEqual(await breaker.listTags('a'), ['latest']);
  assert.equal(breaker.circuit, 'closed');
  assert.equal(calls(), 4);
});

test('a failed trial reopens; successes, 404s and non-transient errors reset the count', async () => {
  let now = 0;
  const { upstream } = scripted(['down', 'down', 'missing', 'down', 'denied', 'down', 'down', 'down']);
  const breaker = new CircuitBreakerUpstream(upstream, { failures: 2, cooldownMs: 1000 }, () => now);
  await assert.rejects(breaker.listTags('a'));
  await assert.rejects(breaker.listTags('a'));
  assert.equal(breaker.circuit, 'open');
  now = 1000;
  assert.equal(await breaker.listTags('a'), undefined, 'a 404 is an answer: the upstream is up');
  assert.equal(breaker.circuit, 'closed');
  await assert.rejects(breaker.listTags('a')); // down: 1
  await assert.rejects(breaker.listTags('a'), /no/); // denied: not transient, count resets
  assert.equal(breaker.circuit, 'closed');
  await assert.rejects(breaker.listTags('a'), /connection refused/); // down: 1 again, not 2
  assert.equal(breaker.circuit, 'closed');
  await assert.rejects(breaker.listTags('a'), /connection refused/); // down: 2
  assert.equal(breaker.circuit, 'open');
  now = 2000;
  await assert.rejects(breaker.listTags('a'), /connection refused/); // the trial fails
  assert.equal(breaker.circuit, 'open');
});

test('the v1 upstream sits behind the same breaker: repeated failures open it and it fails fast', async () => {
  let now = 0;
  let calls = 0;
  const v1 = {
    name: 'legacy',
    tags: () => {
      calls += 1;
      return Promise.reject(new UpstreamError('legacy', 'unavailable', 'connection refused'));
    },
  } as unknown as V1UpstreamRegistry;
  const breaker = new CircuitBreakerV1Upstream(v1, { failures: 2, cooldownMs: 5_000 }, () => now);
  for (let i = 0; i < 2; i++) await assert.rejects(breaker.tags('corp/app'), /connection refused/);
  assert.equal(breaker.circuit, 'open');
  await assert.rejects(breaker.tags('corp/app'), (e: UpstreamError) => e.isTransient && /circuit open/.test(e.message));
  assert.equal(calls, 2, 'an open circuit does not ask the v1 upstream');
  now = 5_000;
  assert.equal(breaker.circuit, 'half-open');
});
