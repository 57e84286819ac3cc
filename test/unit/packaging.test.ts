// The deployment files reference things that exist, and the Dockerfile keeps its promises.
// (No Docker engine runs on the CI machines, so the images themselves are not built here.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.join(import.meta.dirname, '../..');
const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');
const exists = (file: string) => access(path.join(ROOT, file)).then(() => true, () => false);

test('docker-compose.yml: Longshore, Prometheus and Grafana, with mounted files that exist', async () => {
  const compose = parse(await read('docker-compose.yml')) as { services: Record<string, { build?: string; volumes?: string[] }> };
  assert.deepEqual(Object.keys(compose.services).sort(), ['grafana', 'longshore', 'prometheus']);
  assert.equal(compose.services.longshore?.build, '.');
  for (const service of Object.values(compose.services)) {
    for (const volume of service.volumes ?? []) {
      const source = volume.split(':')[0] as string;
      if (source.startsWith('./')) assert.ok(await exists(source), `${source} exists`);
    }
  }
  const scrape = parse(await read('deploy/prometheus.yml')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
  assert.deepEqual(scrape.scrape_configs[0]?.static_configs[0]?.targets, ['longshore:5000']);
});

test('Grafana provisioning points at the dashboard directory and the compose Prometheus', async () => {
  const datasources = parse(await read('grafana/provisioning/datasources/prometheus.yml')) as { datasources: Array<{ type: string; url: string }> };
  assert.equal(datasources.datasources[0]?.type, 'prometheus');
  assert.equal(datasources.datasources[0]?.url, 'http://prometheus:9090');
  const dashboards = parse(await read('grafana/provisioning/dashboards/longshore.yml')) as { providers: Array<{ options: { path: string } }> };
  assert.equal(dashboards.providers[0]?.options.path, '/var/lib/grafana/dashboards');
  const dashboard = JSON.parse(await read('grafana/dashboards/longshore.json')) as { uid: string; panels: unknown[] };
  assert.equal(dashboard.uid, 'longshore');
  assert.ok(dashboard.panels.length >= 10);
});

test('Dockerfile: multi-stage, non-root, /data volume, port, health check, config by file or env', async () => {
  const dockerfile = await read('Dockerfile');
  assert.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2);
  assert.match(dockerfile, /^USER node$/m);
  assert.match(dockerfile, /^VOLUME \["\/data"\]$/m);
  assert.match(dockerfile, /^EXPOSE 5000$/m);
  assert.match(dockerfile, /^HEALTHCHECK .*\n.*\/healthz/m);
  assert.match(dockerfile, /LONGSHORE_LISTEN=0\.0\.0\.0:5000/);
  assert.match(dockerfile, /--omit=dev/);
  for (const copied of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'config']) assert.ok(await exists(copied), copied);
});
