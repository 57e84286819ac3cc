// State that several replicas share through a real redis-server (issue 17, "Shared state"),
// with the replicas in this process: each upstream's circuit, driven by upstream doubles that
// fail on cue. The scenarios real processes can reach (Redis lost, tag freshness, chunked
// uploads across replicas) run on three of them in cluster.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { CircuitBreakerUpstream } from '../../src/upstream/circuit-breaker.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import type { UpstreamRegistry } from '../../src/upstream/upstream.js';
import { sha256Digest } from '../harness/digests.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import { startRedis, type RedisHandle } from '../harness/redis.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess } from '../support/in-process.js';
import { metricValue } from '../support/prometheus-text.js';
import { redisCluster } from '../support/redis-coordination.js';

let redis: RedisHandle | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
});

const running = (): RedisHandle => {
  if (!redis) throw new Error('redis-server did not start');
  return redis;
};

const SECRET = 'a-shared-secret-of-enough-length';

/** An upstream whose tags/list is down or up as the test says, counting the calls that reached it. */
function switchableUpstream() {
  const state = { down: true, calls: 0 };
  const upstream = {
    name: 'up',
    hosts: [],
    isDefault: true,
    libraryPrefix: false,
    tagTtlMs: 1000,
    listTags: async () => {
      state.calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 50)); // a trial takes a while: others arrive meanwhile
      if (state.down) throw new UpstreamError('up', 'unavailable', 'connection refused');
      return ['latest'];
    },
    close: () => Promise.resolve(),
  } as unknown as UpstreamRegistry;
  return { upstream, state };
}

void describe('circuit state shared across replicas', () => {
  it('a circuit opened by one replica makes the others skip the upstream until the retry time; one replica makes the half-open trial, and its success closes it everywhere', async (t) => {
    const cluster = redisCluster(t, running);
    const settings = { failures: 2, cooldownMs: 600 };
    const { upstream, state } = switchableUpstream();
    const replicas: CircuitBreakerUpstream[] = [];
    for (let i = 0; i < 3; i += 1) {
      const coordinator = await cluster.coordinator();
      const breaker = new CircuitBreakerUpstream(upstream, settings, Date.now, { circuits: coordinator.circuits, leases: coordinator.leases, circuit: 'v2:up' });
      onCleanup(t, () => breaker.close());
      replicas.push(breaker);
    }
    const [one, two, three] = replicas as [CircuitBreakerUpstream, CircuitBreakerUpstream, CircuitBreakerUpstream];

    for (let i = 0; i < 2; i += 1) await assert.rejects(one.listTags('a'), /connection refused/);
    assert.equal(one.circuit, 'open');
    await pollUntil(() => Promise.resolve(two.circuit === 'open' && three.circuit === 'open'), { timeoutMs: 2000, what: 'the other replicas told the circuit is open' });
    await assert.rejects(two.listTags('a'), (e: UpstreamError) => e.isTransient && /circuit open/.test(e.message));
    assert.equal(state.calls, 2, 'a replica that never failed does not ask an upstream another replica found down');

    // A replica that starts while the circuit is open joins it.
    const late = await cluster.coordinator();
    const joining = new CircuitBreakerUpstream(upstream, settings, Date.now, { circuits: late.circuits, leases: late.leases, circuit: 'v2:up' });
    onCleanup(t, () => joining.close());
    await pollUntil(() => Promise.resolve(joining.circuit === 'open'), { timeoutMs: 2000, what: 'a replica started later reading the open circuit' });

    await pollUntil(() => Promise.resolve(replicas.every((r) => r.circuit === 'half-open')), { timeoutMs: 3000, what: 'the retry time' });
    state.down = false;
    const tries = await Promise.allSettled(replicas.map((r) => r.listTags('a')));
    assert.equal(state.calls, 3, 'one trial request for the whole cluster');
    assert.equal(tries.filter((r) => r.status === 'fulfilled').length, 1, 'made by one replica');
    for (const refused of tries.filter((r) => r.status === 'rejected')) assert.match(String(refused.reason), /another replica is making the trial/);
    await pollUntil(() => Promise.resolve([...replicas, joining].every((r) => r.circuit === 'closed')), { timeoutMs: 2000, what: 'the circuit closed on every replica' });
    assert.deepEqual(await two.listTags('a'), ['latest']);
  });

  it('a failed trial reopens the circuit on every replica', async (t) => {
    const cluster = redisCluster(t, running);
    const settings = { failures: 1, cooldownMs: 400 };
    const { upstream, state } = switchableUpstream();
    const make = async () => {
      const coordinator = await cluster.coordinator();
      const breaker = new CircuitBreakerUpstream(upstream, settings, Date.now, { circuits: coordinator.circuits, leases: coordinator.leases, circuit: 'v2:up' });
      onCleanup(t, () => breaker.close());
      return breaker;
    };
    const [one, two] = [await make(), await make()];
    await assert.rejects(one.listTags('a'), /connection refused/);
    await pollUntil(() => Promise.resolve(two.circuit === 'half-open'), { timeoutMs: 3000, what: 'the retry time on the other replica' });
    await assert.rejects(two.listTags('a'), /connection refused/); // the trial, by the other replica, fails
    assert.equal(state.calls, 2);
    await pollUntil(() => Promise.resolve(one.circuit === 'open'), { timeoutMs: 2000, what: 'the first replica told of the failed trial' });
    await assert.rejects(one.listTags('a'), /circuit open/);
    assert.equal(state.calls, 2);
  });

  it('two servers on one Redis: the circuit one server opened shows on the other, which does not ask that upstream', async (t) => {
    const upstream = await startFakeUpstream();
    onCleanup(t, () => upstream.close());
    const config = {
      cluster: { redis: running().url, advertiseUrl: 'http://127.0.0.1:1' },
      auth: { secret: SECRET },
      // Its own name: the open circuit stays in Redis for an hour, past this test.
      upstreams: [{ name: 'down-for-an-hour', url: upstream.url, default: true, circuitBreaker: { failures: 2, cooldown: '1h' } }],
    };
    const [a, b] = [await startInProcess(config), await startInProcess(config)];
    onCleanup(t, () => a.stop());
    onCleanup(t, () => b.stop());
    upstream.setFault(/\/blobs\//, { kind: 'status', status: 503 });
    const blob = randomBytes(1024);
    upstream.setBlob(sha256Digest(blob), blob);
    for (let i = 0; i < 2; i += 1) {
      const response = await request(`${a.url}/v2/app/blobs/${sha256Digest(blob)}`);
      await response.body.dump();
      assert.ok(response.statusCode >= 500, `a failed pull answers ${response.statusCode}`);
    }
    const circuitOf = async (server: { url: string }) => metricValue(await (await request(`${server.url}/metrics`)).body.text(), 'longshore_upstream_circuit_state', { upstream: 'down-for-an-hour' });
    assert.equal(await circuitOf(a), 2, 'open on the server that saw the failures');
    await pollUntil(async () => (await circuitOf(b)) === 2, { timeoutMs: 3000, what: 'the circuit open on the other server' });
    const asked = upstream.requests.length;
    const response = await request(`${b.url}/v2/app/blobs/${sha256Digest(blob)}`);
    await response.body.dump();
    assert.ok(response.statusCode >= 500);
    assert.equal(upstream.requests.length, asked, 'the other server did not ask the upstream');
  });
});
