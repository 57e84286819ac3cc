// The overview's traffic figures (from the Prometheus counters) and the upstream activity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../src/metrics/metrics.js';
import { PullTally, TrafficHistory } from '../../src/ui/traffic.js';
import { UpstreamActivity } from '../../src/ui/upstream-activity.js';

const emptyCache = { stats: () => Promise.resolve({ mirrored: { bytes: 0, objects: 0 }, private: { bytes: 0, objects: 0 }, evictions: 0 }) };

test('traffic: hit ratio and bytes since start, and over the last hour from minute samples', async () => {
  const metrics = new Metrics({ cache: emptyCache, inflightFetches: () => 0 });
  let now = 0;
  const traffic = new TrafficHistory(metrics.registry, () => now);
  await traffic.sample(); // at 0: nothing yet
  metrics.cacheRequest('blob', 'miss', 1000);
  metrics.cacheRequest('manifest', 'miss', 200);
  metrics.upstreamReceived('hub', 1200);
  now = 30 * 60_000;
  await traffic.sample();
  metrics.cacheRequest('blob', 'hit', 1000);
  metrics.cacheRequest('manifest', 'stale', 200);
  metrics.cacheRequest('tag', 'coalesced', undefined);

  const start = await traffic.sinceStart();
  assert.equal(start.lookups, 5);
  assert.equal(start.hits, 2);
  assert.equal(start.hitRatio, 2 / 5);
  assert.equal(start.bytesFromCache, 1200);
  assert.equal(start.bytesFromUpstream, 1200);
  assert.equal(start.upstreamBytes, 1200);

  now = 75 * 60_000; // the sample at 0 is older than an hour: the one at 30 min is the base
  const hour = await traffic.lastHour();
  assert.equal(hour.lookups, 3);
  assert.equal(hour.hits, 2);
  assert.equal(hour.upstreamBytes, 0);
  assert.equal(hour.sinceMs, 45 * 60_000);
  traffic.close();
});

test('upstream activity: median latency of recent requests, and the last failure (404 is an answer, not a failure)', () => {
  let now = 1000;
  const activity = new UpstreamActivity(() => now);
  assert.equal(activity.recent('hub').latencyMs, undefined);
  activity.request('hub', 'manifest', 200, 0.010);
  activity.request('hub', 'blob', 503, 0.030);
  now = 2000;
  activity.request('hub', 'manifest', 404, 0.020);
  const recent = activity.recent('hub');
  assert.equal(recent.latencyMs, 20);
  assert.deepEqual(recent.lastFailure, { status: 'HTTP 503', kind: 'blob', at: 1000 });
  activity.request('hub', 'blob', 'error', 5);
  assert.equal(activity.recent('hub').lastFailure?.status, 'no response');
  assert.equal(activity.recent('hub').requests, 4);
});

test('pull tally: counts per path with the latest time; a drain hands them over and starts over', () => {
  let now = 10;
  const tally = new PullTally(() => now);
  tally.add('/v2/library/alpine/manifests/3.20');
  now = 20;
  tally.add('/v2/library/alpine/manifests/3.20');
  tally.add('/v2/apps/web/manifests/latest?ns=docker.io');
  assert.deepEqual([...tally.drain()], [
    ['/v2/library/alpine/manifests/3.20', { pulls: 2, lastAt: 20 }],
    ['/v2/apps/web/manifests/latest?ns=docker.io', { pulls: 1, lastAt: 20 }],
  ]);
  assert.equal(tally.drain().size, 0, 'nothing is counted twice');
  tally.add('/v2/library/alpine/manifests/3.20');
  assert.deepEqual([...tally.drain()], [['/v2/library/alpine/manifests/3.20', { pulls: 1, lastAt: 20 }]]);
});
