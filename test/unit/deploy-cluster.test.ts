// deploy/kubernetes/cluster.yaml: several replicas, one bucket, one Redis. The objects fit
// together, and the config each pod ends up with (ConfigMap + its variables) passes the real
// schema as a cluster member: Redis at the Service's name, its own pod IP advertised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { splitListen } from '../../src/server.js';

const ROOT = path.join(import.meta.dirname, '../..');

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  args: string[];
  ports: Array<{ name: string; containerPort: number }>;
  env?: EnvVar[];
  readinessProbe: unknown;
  securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext: { runAsNonRoot: boolean };
  containers: Container[];
  volumes: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string; items: Array<{ key: string }> }; emptyDir?: object; persistentVolumeClaim?: object }>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec: {
    replicas?: number;
    /** A Service's labels; a Deployment's { matchLabels }. */
    selector: Record<string, string> & { matchLabels?: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    ports: Array<{ name: string; port: number; targetPort: string }>;
  };
}

const POD_IP = '10.1.2.3';

test('Kubernetes cluster manifests: 3 mirror replicas advertising their pod IP, a Redis and its Service, S3 credentials from the Secret, a config every pod parses', async () => {
  const documents = parseAllDocuments(await readFile(path.join(ROOT, 'deploy/kubernetes/cluster.yaml'), 'utf8'));
  for (const document of documents) assert.deepEqual(document.errors, [], 'YAML parses');
  const objects = documents.map((d) => d.toJS() as K8sObject);
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  assert.deepEqual(objects.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'Deployment', 'Secret', 'Service', 'Service']);
  for (const object of objects) assert.equal(object.apiVersion, object.kind === 'Deployment' ? 'apps/v1' : 'v1', `${object.kind} ${object.metadata.name}`);
  const [configMap] = ofKind('ConfigMap');
  const [secret] = ofKind('Secret');
  const deployments = ofKind('Deployment');
  const services = ofKind('Service');
  // Every Service selects the pods of exactly one Deployment, by all of that pod's labels.
  const selected = (service: K8sObject) => deployments.filter((d) => Object.entries(service.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
  for (const service of services) assert.equal(selected(service).length, 1, `Service ${service.metadata.name} selects one Deployment`);
  for (const deployment of deployments) assert.deepEqual(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels);
  const redisContainerOf = (d: K8sObject) => d.spec.template.spec.containers.find((c) => c.name === 'redis');
  const redisDeployment = deployments.find((d) => redisContainerOf(d) !== undefined)!;
  const mirror = deployments.find((d) => d !== redisDeployment)!;
  assert.ok(redisDeployment && mirror);
  assert.equal(mirror.spec.replicas, 3);
  const redisService = services.find((s) => selected(s)[0] === redisDeployment)!;
  const mirrorService = services.find((s) => selected(s)[0] === mirror)!;

  // Redis: no persistence (coordination and caches only), its port named by the Service.
  const redis = redisContainerOf(redisDeployment)!;
  assert.deepEqual(redis.args.slice(0, 4), ['--save', '', '--appendonly', 'no']);
  assert.ok(redis.ports.some((p) => p.name === redisService.spec.ports[0]?.targetPort));

  // The mirror pod: its variables, resolved as Kubernetes would.
  const pod = mirror.spec.template.spec;
  assert.equal(pod.enableServiceLinks, false, 'no LONGSHORE_* service variables read as config overrides');
  assert.equal(pod.securityContext.runAsNonRoot, true);
  const [container] = pod.containers;
  assert.ok(container);
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (from?.fieldRef) {
      assert.equal(from.fieldRef.fieldPath, 'status.podIP', `${variable.name}: the downward API`);
      env[variable.name] = POD_IP;
    } else if (from?.secretKeyRef) {
      assert.equal(from.secretKeyRef.name, secret!.metadata.name, variable.name);
      const value = secret!.stringData?.[from.secretKeyRef.key];
      assert.ok(value !== undefined, `${variable.name}: key ${from.secretKeyRef.key} in the Secret`);
      env[variable.name] = value === '' ? 'x' : value;
    } else {
      // $(NAME) expands only to variables defined earlier in the list.
      env[variable.name] = (variable.value ?? '').replace(/\$\((\w+)\)/g, (_all, name: string) => {
        assert.ok(name in env, `${variable.name} uses $(${name}) defined before it`);
        return env[name]!;
      });
    }
  }
  env.LONGSHORE_AUTH__SECRET = 'a-secret-of-enough-length';
  const config = parseConfig(parseYaml(configMap!.data!['config.yaml']!), env, 'ConfigMap', () => undefined);
  assert.equal(config.cluster.advertiseUrl?.replace(/\/$/, ''), `http://${POD_IP}:${container.ports[0]?.containerPort}`, 'each replica advertises its own pod IP');
  assert.equal(splitListen(config.listen).port, container.ports[0]?.containerPort);
  const redisUrl = new URL(config.cluster.redis!);
  assert.equal(redisUrl.hostname, redisService.metadata.name, 'cluster.redis names the Redis Service');
  assert.equal(Number(redisUrl.port), redisService.spec.ports[0]?.port);
  assert.equal(config.storage.driver, 's3');
  assert.equal(config.storage.s3?.accessKeyId, secret!.stringData!.s3AccessKeyId, 'S3 credentials from the Secret');
  assert.ok(config.storage.s3?.secretAccessKey);
  assert.ok(config.shutdownGracePeriod < (pod.terminationGracePeriodSeconds ?? 30) * 1000);

  // Mounts name volumes; scratch is a pod's own (nothing on it outlives the pod).
  const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
  for (const mount of container.volumeMounts) assert.ok(volumes.has(mount.name), `volume ${mount.name}`);
  const scratch = container.volumeMounts.find((m) => m.mountPath === config.storage.path);
  assert.ok(scratch, 'storage.path is mounted');
  assert.ok(volumes.get(scratch.name)?.emptyDir, 'scratch is an emptyDir');
  assert.equal(volumes.get('config')?.configMap?.name, configMap!.metadata.name);
  assert.equal(path.dirname(config.auth.htpasswd!), container.volumeMounts.find((m) => m.name === 'auth')?.mountPath);
  assert.equal(mirrorService.spec.ports[0]?.targetPort, container.ports[0]?.name);
});

test('Grafana dashboard shows replicas apart: requests, upstream fetches, peer follows, lease takeovers and Redis reachability per instance; shared cache figures not summed over replicas', async () => {
  const dashboard = JSON.parse(await readFile(path.join(ROOT, 'grafana/dashboards/longshore.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string; legendFormat?: string }> }> };
  const targets = dashboard.panels.flatMap((p) => p.targets ?? []);
  for (const metric of ['longshore_http_requests_total', 'longshore_upstream_bytes_total', 'longshore_coordination_connected', 'longshore_coordination_uncoordinated_total', 'longshore_inflight_fetches', 'longshore_peer_follows_total', 'longshore_fetch_lease_takeovers_total']) {
    assert.ok(
      targets.some((t) => t.expr.includes(metric) && /by \([^)]*\binstance\b/.test(t.expr) && t.legendFormat?.includes('{{instance}}')),
      `${metric}: a series per replica`,
    );
  }
  // Every replica of a cluster reports the one shared cache: a sum would count it once per replica.
  for (const target of targets.filter((t) => /longshore_cache_(size_bytes|evictions_total)/.test(t.expr))) {
    assert.doesNotMatch(target.expr, /\bsum\b/, target.expr);
  }
});
