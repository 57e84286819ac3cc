// The metric definitions: an own registry, bytes by source, cache sizes read at scrape time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { Metrics, type CacheStatsSource } from '../../src/metrics/metrics.js';
import { metricFamilies, metricValue } from '../support/prometheus-text.js';

function fixedCache(stats: Awaited<ReturnType<CacheStatsSource['stats']>>): CacheStatsSource {
  return { stats: () => Promise.resolve(stats) };
}

const EMPTY = { mirrored: { bytes: 0, objects: 0 }, private: { bytes: 0, objects: 0 }, evictions: 0 };

test('each Metrics has its own registry: two in one process, nothing in the global one', async () => {
  const first = new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0 });
  const second = new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0 });
  first.cacheRequest('blob', 'hit', 10);
  assert.equal(metricValue(await first.registry.metrics(), 'longshore_cache_requests_total', { kind: 'blob', result: 'hit' }), 1);
  assert.equal(metricValue(await second.registry.metrics(), 'longshore_cache_requests_total', { kind: 'blob', result: 'hit' }), 0);
  assert.ok(![...metricFamilies(await globalRegistry.metrics())].some((name) => name.startsWith('longshore_')));
});

test('served bytes: hits and stale serves come from the cache, misses and coalesced from upstream', async () => {
  const metrics = new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0 });
  metrics.cacheRequest('blob', 'hit', 100);
  metrics.cacheRequest('tag', 'stale', 20);
  metrics.cacheRequest('blob', 'miss', 1000);
  metrics.cacheRequest('blob', 'coalesced', 1000);
  metrics.cacheRequest('manifest', 'hit', undefined); // a HEAD or a response cut short: no bytes
  const text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_served_bytes_total', { source: 'cache' }), 120);
  assert.equal(metricValue(text, 'longshore_served_bytes_total', { source: 'upstream' }), 2000);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'manifest', result: 'hit' }), 1);
});

test('cache size, objects, evictions and in-flight fetches are read from their sources at each scrape', async () => {
  let stats = { mirrored: { bytes: 500, objects: 2 }, private: { bytes: 70, objects: 1 }, evictions: 0 };
  let inflight = 3;
  const metrics = new Metrics({ cache: { stats: () => Promise.resolve(stats) }, inflightFetches: () => inflight });
  let text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_cache_size_bytes', { class: 'mirrored' }), 500);
  assert.equal(metricValue(text, 'longshore_cache_size_bytes', { class: 'private' }), 70);
  assert.equal(metricValue(text, 'longshore_cache_objects', { class: 'private' }), 1);
  assert.equal(metricValue(text, 'longshore_inflight_fetches'), 3);
  stats = { mirrored: { bytes: 300, objects: 1 }, private: { bytes: 70, objects: 1 }, evictions: 4 };
  inflight = 0;
  text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_cache_size_bytes', { class: 'mirrored' }), 300);
  assert.equal(metricValue(text, 'longshore_cache_evictions_total'), 4);
  assert.equal(metricValue(text, 'longshore_inflight_fetches'), 0);
});

test('http requests are labelled with the route template; durations land in the histogram', async () => {
  const metrics = new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0 });
  metrics.httpRequest('v2', 'GET', '/v2/:name/blobs/:digest', 200, 0.02);
  metrics.httpRequest('v2', 'GET', '/v2/:name/blobs/:digest', 404, 0.001);
  const text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_http_requests_total', { api: 'v2', route: '/v2/:name/blobs/:digest' }), 2);
  assert.equal(metricValue(text, 'longshore_http_request_duration_seconds_count', { route: '/v2/:name/blobs/:digest' }), 2);
  assert.equal(metricValue(text, 'longshore_http_request_duration_seconds_bucket', { route: '/v2/:name/blobs/:digest', le: '0.01' }), 1);
});

test('the cache bound is exported when storage.cache.maxBytes is set, and has no sample otherwise', async () => {
  const bounded = new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0, cacheMaxBytes: 10 * 1024 ** 3 });
  assert.equal(metricValue(await bounded.registry.metrics(), 'longshore_cache_max_bytes', { class: 'mirrored' }), 10 * 1024 ** 3);
  const unbounded = await new Metrics({ cache: fixedCache(EMPTY), inflightFetches: () => 0 }).registry.metrics();
  assert.ok(metricFamilies(unbounded).has('longshore_cache_max_bytes'));
  assert.doesNotMatch(unbounded, /^longshore_cache_max_bytes[{ ]/m);
});

test('the circuit state of each upstream is a gauge read at scrape time', async () => {
  let hubState: 'closed' | 'half-open' | 'open' = 'closed';
  const metrics = new Metrics({
    cache: fixedCache(EMPTY),
    inflightFetches: () => 0,
    circuits: () => [
      { upstream: 'hub', state: hubState },
      { upstream: 'quay', state: 'half-open' },
    ],
  });
  let text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_upstream_circuit_state', { upstream: 'hub' }), 0);
  assert.equal(metricValue(text, 'longshore_upstream_circuit_state', { upstream: 'quay' }), 1);
  hubState = 'open';
  text = await metrics.registry.metrics();
  assert.equal(metricValue(text, 'longshore_upstream_circuit_state', { upstream: 'hub' }), 2);
});
