// Metrics: values move as they should for a miss, a hit, a coalesced request and a stale
// serve; a real Prometheus (Debian's) scrapes a running mirror and agrees with its access
// log; every metric the Grafana dashboard queries is one the server exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { sha256Digest } from '../harness/digests.js';
import { onCleanup } from '../support/cleanup.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import { pushDockerImage } from '../harness/images.js';
import { REPO_ROOT, startLongshore } from '../harness/longshore.js';
import { freePort } from '../harness/ports.js';
import { spawnProcess } from '../harness/processes.js';
import { startRegistry } from '../harness/registry.js';
import { copyToDir } from '../harness/skopeo.js';
import { makeTempDir } from '../harness/tmp.js';
import { requireTool } from '../harness/tools.js';
import { pollUntil } from '../harness/wait.js';
import { startInProcess } from '../support/in-process.js';
import { metricFamilies, metricValue } from '../support/prometheus-text.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function scrape(url: string): Promise<string> {
  const response = await request(`${url}/metrics`);
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return response.body.text();
}

test('cache metrics move for a miss, a hit, coalesced requests and a stale tag', async (t) => {
  const upstream = await startFakeUpstream();
  onCleanup(t, () => upstream.close());
  const mirror = await startInProcess({ upstreams: [{ name: 'fake', url: upstream.url, default: true, tagTtl: '1ms' }] });
  onCleanup(t, () => mirror.stop());
  const blob = randomBytes(2 * 1024 * 1024);
  const digest = sha256Digest(blob);
  upstream.setBlob(digest, blob);

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const response = await request(`${mirror.url}${path}`, { headers });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, body };
  };
  // Three at once: one miss, two coalesced; then a hit.
  const cold = await Promise.all([1, 2, 3].map(() => get(`/v2/app/blobs/${digest}`)));
  for (const response of cold) assert.ok(response.body.equals(blob));
  await get(`/v2/app/blobs/${digest}`);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
  await get('/v2/app/manifests/v1', { accept: OCI_MANIFEST });
  upstream.setFault(/\/manifests\//, { kind: 'status', status: 503 });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await get('/v2/app/manifests/v1', { accept: OCI_MANIFEST });

  const text = await scrape(mirror.url);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'blob', result: 'miss' }), 1);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'blob', result: 'coalesced' }), 2);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'blob', result: 'hit' }), 1);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'tag', result: 'miss' }), 1);
  assert.equal(metricValue(text, 'longshore_cache_requests_total', { kind: 'tag', result: 'stale' }), 1);
  assert.equal(metricValue(text, 'longshore_served_bytes_total', { source: 'upstream' }), 3 * blob.byteLength + manifest.byteLength);
  assert.equal(metricValue(text, 'longshore_served_bytes_total', { source: 'cache' }), blob.byteLength + manifest.byteLength);
  assert.equal(metricValue(text, 'longshore_upstream_bytes_total', { upstream: 'fake' }), blob.byteLength + manifest.byteLength);
  assert.equal(metricValue(text, 'longshore_upstream_requests_total', { upstream: 'fake', kind: 'blob', status: '200' }), 1);
  assert.equal(metricValue(text, 'longshore_upstream_requests_total', { upstream: 'fake', kind: 'manifest', status: '503' }), 1);
  assert.equal(metricValue(text, 'longshore_http_requests_total', { api: 'v2', route: '/v2/:name/blobs/:digest', status: '200' }), 4);
  assert.ok(!text.includes('app/blobs'), 'labels carry route templates, never raw paths');
  assert.equal(metricValue(text, 'longshore_cache_objects', { class: 'mirrored' }), 2);
  assert.equal(metricValue(text, 'longshore_cache_size_bytes', { class: 'mirrored' }), blob.byteLength + manifest.byteLength);
  assert.equal(metricValue(text, 'longshore_inflight_fetches'), 0);
  assert.ok(metricValue(text, 'process_resident_memory_bytes') > 0, 'default process metrics are there');
});

test('rate limits reported by the upstream are recorded per upstream', async (t) => {
  const { startTestServer } = await import('../support/http-server.js');
  const upstream = await startTestServer((_req, res) => {
    res.setHeader('ratelimit-remaining', '76;w=21600');
    res.setHeader('content-type', OCI_MANIFEST);
    res.end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
  });
  onCleanup(t, () => upstream.close());
  const mirror = await startInProcess({ upstreams: [{ name: 'hub', url: upstream.url, default: true }] });
  onCleanup(t, () => mirror.stop());
  await (await request(`${mirror.url}/v2/app/manifests/v1`)).body.dump();
  assert.equal(metricValue(await scrape(mirror.url), 'longshore_upstream_rate_limit_remaining', { upstream: 'hub' }), 76);
});

test('health: /healthz and /readyz; metrics.listen serves /metrics on its own port', async (t) => {
  const port = await freePort();
  const mirror = await startInProcess({ metrics: { listen: `127.0.0.1:${port}` } });
  onCleanup(t, () => mirror.stop());
  assert.deepEqual(await (await request(`${mirror.url}/healthz`)).body.json(), { status: 'ok' });
  assert.deepEqual(await (await request(`${mirror.url}/readyz`)).body.json(), { status: 'ready' });
  assert.equal(mirror.server.metricsAddress, `http://127.0.0.1:${port}`);
  const separate = await request(`http://127.0.0.1:${port}/metrics`);
  assert.match(await separate.body.text(), /longshore_cache_requests_total/);
  const other = await request(`http://127.0.0.1:${port}/v2/`);
  await other.body.dump();
  assert.equal(other.statusCode, 404, 'only /metrics there');
});

test('a real Prometheus scrapes the mirror; its hit count equals the access log; the dashboard queries only exported metrics', async (t) => {
  const prometheusBinary = requireTool('prometheus', 'prometheus');
  const work = await makeTempDir('prometheus');
  onCleanup(t, () => work.remove());
  const registry = await startRegistry();
  onCleanup(t, () => registry.dispose());
  await pushDockerImage(registry.url, 'apps/tool', 'v1', [300_000, 50_000]);
  const mirror = await startLongshore({ upstreams: [{ name: 'local', url: registry.url, default: true }] });
  onCleanup(t, () => mirror.dispose());
  const mirrorHost = new URL(mirror.url).host;
  for (const round of ['cold', 'warm']) await copyToDir(`${mirrorHost}/apps/tool:v1`, path.join(work.path, round));

  const port = await freePort();
  const config = path.join(work.path, 'prometheus.yml');
  await writeFile(config, stringify({ global: { scrape_interval: '1s', scrape_timeout: '1s' }, scrape_configs: [{ job_name: 'longshore', static_configs: [{ targets: [mirrorHost] }] }] }));
  const prometheus = spawnProcess(prometheusBinary, [`--config.file=${config}`, `--storage.tsdb.path=${path.join(work.path, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`]);
  onCleanup(t, () => prometheus.stop());

  const expectedHits = mirror.logs.filter((l) => l.msg === 'request' && l.cache === 'hit').length;
  assert.ok(expectedHits >= 3, `the warm pull hit the cache (${expectedHits} hits logged)`);
  let lastAnswer = '';
  await pollUntil(
    async () => {
      const response = await request(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent('sum(longshore_cache_requests_total{result="hit"})')}`);
      lastAnswer = await response.body.text();
      const result = (JSON.parse(lastAnswer) as { data?: { result?: Array<{ value: [number, string] }> } }).data?.result?.[0];
      return result !== undefined && Number(result.value[1]) === expectedHits;
    },
    { timeoutMs: 30_000, intervalMs: 500, what: `Prometheus to report ${expectedHits} hits`, abortReason: () => (prometheus.exitStatus() ? prometheus.describe(20) : undefined) },
  );

  const exported = metricFamilies(await scrape(mirror.url));
  const dashboard = JSON.parse(await readFile(path.join(REPO_ROOT, 'grafana/dashboards/longshore.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const queried = new Set<string>();
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      for (const name of target.expr.match(/\b(?:longshore|process|nodejs)_[a-z0-9_]+/g) ?? []) queried.add(name.replace(/_(bucket|sum|count)$/, ''));
    }
  }
  assert.ok(queried.size >= 10, `the dashboard queries ${queried.size} metrics`);
  for (const name of queried) assert.ok(exported.has(name), `dashboard metric ${name} is exported`);
});
