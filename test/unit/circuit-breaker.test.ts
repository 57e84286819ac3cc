import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessCluster, inProcessCoordinator } from '../../src/coordination/in-process.js';
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

// The server always gives a breaker its coordinator's circuits; for one replica (in-process)
// that must change nothing.
for (const sharing of ['unshared', 'one replica, in-process'] as const) {
  test(`opens after consecutive transient failures, fails fast while open, recovers after the cooldown (${sharing})`, async () => {
    let now = 0;
    const { upstream, calls } = scripted(['down', 'down', 'down', 'ok', 'ok']);
    const cluster = new InProcessCluster(() => now);
    const coordinator = inProcessCoordinator({ cluster });
    const breaker = new CircuitBreakerUpstream(upstream, { failures: 3, cooldownMs: 10_000 }, () => now, sharing === 'unshared' ? undefined : { circuits: coordinator.circuits, leases: coordinator.leases, circuit: 'v2:up' });
    for (let i = 0; i < 3; i++) await assert.rejects(breaker.listTags('a'), /connection refused/);
    assert.equal(breaker.circuit, 'open');
    await assert.rejects(breaker.listTags('a'), (e: UpstreamError) => e.isTransient && /circuit open/.test(e.message));
    assert.equal(calls(), 3, 'an open circuit does not ask the upstream');
    now = 10_000;
    assert.equal(breaker.circuit, 'half-open');
    assert.deepEqual(await breaker.listTags('a'), ['latest']);
    assert.equal(breaker.circuit, 'closed');
    assert.equal(calls(), 4);
    assert.equal(await coordinator.circuits.openUntil('v2:up'), undefined, 'closed for replicas started later too');
  });
}

test('replicas on one in-process cluster share the circuit: one opens it for all, a later one joins, one trial for all, its success closes it everywhere', async () => {
  let now = 0;
  const cluster = new InProcessCluster(() => now);
  const { upstream, calls } = scripted(['down', 'down', 'ok']);
  const settings = { failures: 2, cooldownMs: 600 };
  const replica = () => {
    const coordinator = inProcessCoordinator({ cluster });
    return new CircuitBreakerUpstream(upstream, settings, () => now, { circuits: coordinator.circuits, leases: coordinator.leases, circuit: 'v2:up' });
  };
  const [one, two, three] = [replica(), replica(), replica()];
  for (let i = 0; i < 2; i++) await assert.rejects(one.listTags('a'), /connection refused/);
  assert.deepEqual([one.circuit, two.circuit, three.circuit], ['open', 'open', 'open']);
  await assert.rejects(two.listTags('a'), /circuit open/);
  assert.equal(calls(), 2, 'a replica that never failed does not ask an upstream another replica found down');
  const late = replica();
  await new Promise((resolve) => setImmediate(resolve)); // it reads the circuit when it starts
  assert.equal(late.circuit, 'open', 'a replica started while the circuit is open joins it');
  now = 600;
  const tries = await Promise.allSettled([one, two, three, late].map((breaker) => breaker.listTags('a')));
  assert.equal(calls(), 3, 'one trial request for the whole cluster');
  assert.equal(tries.filter((r) => r.status === 'fulfilled').length, 1);
  for (const refused of tries.filter((r) => r.status === 'rejected')) assert.match(String(refused.reason), /another replica is making the trial/);
  assert.deepEqual([one.circuit, two.circuit, three.circuit, late.circuit], ['closed', 'closed', 'closed', 'closed']);
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
