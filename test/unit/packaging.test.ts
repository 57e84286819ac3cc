// The deployment files reference things that exist, and the Dockerfile keeps its promises.
// (No Docker engine runs on the CI machines, so the images themselves are not built here.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { splitListen } from '../../src/server.js';

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

test('Grafana dashboard: an instance variable that every query filters on, so replicas can be told apart', async () => {
  const dashboard = JSON.parse(await read('grafana/dashboards/longshore.json')) as {
    templating: { list: Array<{ name: string; includeAll?: boolean; definition?: string }> };
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
  };
  const instance = dashboard.templating.list.find((v) => v.name === 'instance');
  assert.ok(instance?.includeAll);
  assert.match(instance.definition ?? '', /label_values\(longshore_\w+, instance\)/);
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      const selectors = target.expr.match(/\b(?:longshore|process)_[a-z_]+(\{[^}]*\})?/g) ?? [];
      assert.ok(selectors.length > 0, `${panel.title}: a query on our metrics`);
      for (const selector of selectors) assert.match(selector, /instance=~"\$instance"/, `${panel.title}: ${selector}`);
    }
  }
  assert.ok(dashboard.panels.some((p) => p.targets?.some((t) => t.expr.includes('longshore_upstream_circuit_state'))));
});

test('Dockerfile: multi-stage, non-root, /data volume, port, health check following the config, no baked-in overrides', async () => {
  const dockerfile = await read('Dockerfile');
  assert.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2);
  assert.match(dockerfile, /^USER node$/m);
  assert.match(dockerfile, /^VOLUME \["\/data"\]$/m);
  assert.match(dockerfile, /^EXPOSE 5000$/m);
  // Variables override the config file, so none may be baked in for config keys.
  assert.doesNotMatch(dockerfile, /^(?!#).*LONGSHORE_/m);
  assert.match(dockerfile, /^COPY config\/container\.yaml \/etc\/longshore\/config\.yaml$/m);
  assert.match(dockerfile, /^CMD \["serve", "--config", "\/etc\/longshore\/config\.yaml"\]$/m);
  assert.match(dockerfile, /^HEALTHCHECK .*\n\s+CMD \["node", "dist\/cli\/healthcheck\.js", "\/etc\/longshore\/config\.yaml"\]/m);
  assert.ok(await exists('src/cli/healthcheck.ts'));
  assert.match(dockerfile, /--omit=dev/);
  for (const copied of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'config']) assert.ok(await exists(copied), copied);
  const container = await loadConfig(path.join(ROOT, 'config/container.yaml'), {});
  assert.equal(container.listen, '0.0.0.0:5000');
  assert.equal(container.storage.path, '/data');
});

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: Record<string, unknown>;
}
interface Probe {
  httpGet: { path: string; port: string | number };
}
interface Container {
  image: string;
  args: string[];
  ports: Array<{ name: string; containerPort: number }>;
  readinessProbe: Probe;
  livenessProbe: Probe;
  securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean };
  volumeMounts: Array<{ name: string; mountPath: string; subPath?: string }>;
  env?: Array<{ name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
}

test('Kubernetes manifests: valid objects that fit together, probes, non-root, read-only root, config that parses', async () => {
  const documents = parseAllDocuments(await read('deploy/kubernetes/longshore.yaml'));
  for (const document of documents) assert.deepEqual(document.errors, [], 'YAML parses');
  const objects = documents.map((d) => d.toJS() as K8sObject);
  const byKind = new Map(objects.map((o) => [o.kind, o]));
  assert.deepEqual([...byKind.keys()].sort(), ['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Secret', 'Service']);
  const apiVersions: Record<string, string> = { ConfigMap: 'v1', Secret: 'v1', PersistentVolumeClaim: 'v1', Service: 'v1', Deployment: 'apps/v1' };
  for (const object of objects) {
    assert.equal(object.apiVersion, apiVersions[object.kind], `${object.kind} apiVersion`);
    assert.match(object.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${object.kind} name is a DNS label`);
  }
  const configMap = byKind.get('ConfigMap')!;
  const secret = byKind.get('Secret')!;
  const deployment = byKind.get('Deployment')! as K8sObject & {
    spec: {
      selector: { matchLabels: Record<string, string> };
      template: {
        metadata: { labels: Record<string, string> };
        spec: {
          terminationGracePeriodSeconds: number;
          securityContext: { runAsNonRoot: boolean };
          containers: Container[];
          volumes: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string; items: Array<{ key: string }> }; persistentVolumeClaim?: { claimName: string } }>;
        };
      };
    };
  };
  const pod = deployment.spec.template.spec;
  assert.deepEqual(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  const [container] = pod.containers;
  assert.ok(container);
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  // Every mount names a volume, and every volume names an object defined here.
  const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
  for (const mount of container.volumeMounts) assert.ok(volumes.has(mount.name), `volume ${mount.name}`);
  assert.equal(volumes.get('config')?.configMap?.name, configMap.metadata.name);
  assert.equal(volumes.get('data')?.persistentVolumeClaim?.claimName, byKind.get('PersistentVolumeClaim')!.metadata.name);
  assert.equal(volumes.get('auth')?.secret?.secretName, secret.metadata.name);
  for (const item of volumes.get('auth')?.secret?.items ?? []) assert.ok(item.key in (secret.stringData ?? {}), `secret key ${item.key}`);
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    if (ref) assert.ok(ref.name === secret.metadata.name && ref.key in (secret.stringData ?? {}), `${variable.name} from the Secret`);
  }
  // The ConfigMap's config passes the real schema with the pod's variables and the Service's
  // own LONGSHORE_* variables, and agrees with the ports, mounts and probes.
  const mountOf = (name: string) => container.volumeMounts.find((m) => m.name === name)!;
  const configPath = container.args[container.args.indexOf('--config') + 1];
  assert.equal(configPath, mountOf('config').mountPath);
  const env = { LONGSHORE_AUTH__SECRET: 'a-secret-of-enough-length', LONGSHORE_PORT: 'tcp://10.0.0.1:5000', LONGSHORE_SERVICE_HOST: '10.0.0.1' };
  const config = parseConfig(parseYaml(configMap.data!['config.yaml']!), env, 'ConfigMap', () => undefined);
  assert.equal(splitListen(config.listen).port, container.ports[0]?.containerPort);
  assert.equal(config.storage.path, mountOf('data').mountPath);
  assert.equal(path.dirname(config.auth.htpasswd!), mountOf('auth').mountPath);
  assert.ok(config.shutdownGracePeriod < pod.terminationGracePeriodSeconds * 1000, 'drain ends before Kubernetes sends SIGKILL');
  const service = byKind.get('Service')! as K8sObject & { spec: { selector: Record<string, string>; ports: Array<{ targetPort: string }> } };
  assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
  assert.equal(service.spec.ports[0]?.targetPort, container.ports[0]?.name);
});

test('systemd unit: runs serve with a config, reloads with SIGHUP, waits longer than the drain', async () => {
  const unit = await read('deploy/systemd/longshore.service');
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of unit.split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      continue;
    }
    const entry = /^(\w+)=(.*)$/.exec(line);
    assert.ok(entry && current, `a key=value line inside a section: ${line}`);
    current.set(entry[1]!, entry[2]!);
  }
  assert.deepEqual([...sections.keys()], ['Unit', 'Service', 'Install']);
  const service = sections.get('Service')!;
  assert.match(service.get('ExecStart') ?? '', / serve --config \S+$/);
  assert.equal(service.get('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.ok(Number(service.get('TimeoutStopSec')) * 1000 > parseConfig({}).shutdownGracePeriod);
  assert.ok(![...service.values()].some((value) => value.startsWith('LONGSHORE_')), 'no variable overriding the config file');
});

test('package: LICENSE matches package.json, files holds what runs, no dependency wants a newer Node than engines', async () => {
  const pkg = JSON.parse(await read('package.json')) as { license: string; files: string[]; bin: Record<string, string>; engines: { node: string } };
  assert.equal(pkg.license, 'Apache-2.0');
  assert.match(await read('LICENSE'), /Apache License\s+Version 2\.0/);
  assert.ok(pkg.files.includes('dist/'));
  assert.ok(pkg.files.includes('LICENSE'));
  assert.ok(!pkg.files.some((f) => /^(src|test|bench)\b/.test(f)), 'sources, tests and benchmarks stay out');
  for (const bin of Object.values(pkg.bin)) assert.ok(bin.startsWith('dist/'));
  const supported = Number(/>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
  const lock = JSON.parse(await read('package-lock.json')) as { packages: Record<string, { engines?: { node?: string } | string[]; dev?: boolean }> };
  for (const [name, entry] of Object.entries(lock.packages)) {
    const wanted = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
    if (!wanted || wanted.includes('||')) continue;
    const minimum = Number(/(?:>=|\^|~)\s*v?(\d+)/.exec(wanted)?.[1] ?? 0);
    assert.ok(minimum <= supported, `${name} wants node ${wanted}: npm ci warns EBADENGINE on Node ${supported}`);
  }
});

test('one set of node flags, in the shebang of src/main.ts, used by every way of starting Longshore', async () => {
  const { shippedNodeFlags } = await import('../harness/longshore.js');
  // The flags parse, and each is one node accepts (a typo would stop every start).
  const flags = shippedNodeFlags();
  assert.ok(flags.length > 0);
  const { spawnSync } = await import('node:child_process');
  const check = spawnSync(process.execPath, [...flags, '-e', ''], { encoding: 'utf8' });
  assert.equal(check.status, 0, check.stderr);
  // `npm start`, the image and the installed command run the file itself, so the shebang applies.
  const pkg = JSON.parse(await read('package.json')) as { bin: Record<string, string>; scripts: Record<string, string> };
  assert.equal(pkg.bin.longshore, 'dist/main.js');
  assert.match(pkg.scripts.start ?? '', /^\.\/dist\/main\.js serve /);
  assert.match(pkg.scripts.build ?? '', /chmodSync\('dist\/main\.js', 0o755\)/);
  assert.match(await read('Dockerfile'), /^ENTRYPOINT \["\.\/dist\/main\.js"\]$/m);
  assert.match(await read('deploy/systemd/longshore.service'), /^ExecStart=\/usr\/bin\/env longshore serve /m);
});
