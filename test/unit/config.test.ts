import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, envNameToPath, loadConfig, parseConfig, pathToEnvName } from '../../src/config/load.js';
import { parseByteSize, parseDuration } from '../../src/config/units.js';

test('defaults describe a local cache on 127.0.0.1:5000 with no upstreams', () => {
  const config = parseConfig({});
  assert.equal(config.listen, '127.0.0.1:5000');
  assert.equal(config.storage.path, './data');
  assert.deepEqual(config.upstreams, []);
});

test('the shipped default.yaml mirrors Docker Hub as the default upstream', async () => {
  const config = await loadConfig(path.join(import.meta.dirname, '../../config/default.yaml'), {});
  assert.equal(config.listen, '127.0.0.1:5000');
  assert.equal(config.storage.path, './data');
  assert.equal(config.upstreams.length, 1);
  const hub = config.upstreams[0]!;
  assert.equal(hub.url, 'https://registry-1.docker.io');
  assert.deepEqual(hub.hosts, ['docker.io']);
  assert.equal(hub.default, true);
  assert.equal(hub.libraryPrefix, true);
  assert.equal(hub.tagTtl, 5 * 60_000);
  assert.equal(config.storage.cache.maxBytes, undefined);
  assert.equal(config.offline, false);
});

test('a section with every key commented out (null in YAML) takes its defaults', () => {
  const config = parseConfig({ storage: { path: './x', cache: null }, upstreams: null });
  assert.equal(config.storage.cache.maxBytes, undefined);
  assert.deepEqual(config.upstreams, []);
  assert.equal(parseConfig({ storage: null }).storage.path, './data');
});

test('environment variables override nested keys and list items', () => {
  const config = parseConfig(
    { upstreams: [{ name: 'hub', url: 'https://registry-1.docker.io', hosts: ['docker.io'] }] },
    {
      LONGSHORE_LISTEN: '0.0.0.0:6000',
      LONGSHORE_STORAGE__PATH: '/var/cache/ls',
      LONGSHORE_UPSTREAMS__0__TAG_TTL: '90s',
      LONGSHORE_UPSTREAMS__1__NAME: 'ghcr',
      LONGSHORE_UPSTREAMS__1__URL: 'https://ghcr.io',
      LONGSHORE_UPSTREAMS__1__HOSTS: '[ghcr.io]',
      UNRELATED: 'x',
    },
  );
  assert.equal(config.listen, '0.0.0.0:6000');
  assert.equal(config.storage.path, '/var/cache/ls');
  assert.equal(config.upstreams[0]?.tagTtl, 90_000);
  assert.equal(config.upstreams[1]?.name, 'ghcr');
  assert.deepEqual(config.upstreams[1]?.hosts, ['ghcr.io']);
  assert.equal(config.upstreams[1]?.libraryPrefix, false);
});

test('env names and key paths convert both ways', () => {
  assert.deepEqual(envNameToPath('LONGSHORE_UPSTREAMS__0__TAG_TTL'), ['upstreams', 0, 'tagTtl']);
  assert.equal(pathToEnvName(['upstreams', 0, 'tagTtl']), 'LONGSHORE_UPSTREAMS__0__TAG_TTL');
  assert.equal(pathToEnvName(['storage', 'path']), 'LONGSHORE_STORAGE__PATH');
});

test('an unknown key fails with its full path', () => {
  assert.throws(() => parseConfig({ storage: { path: './d', pth: 'x' } }), (error: Error) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /storage\.pth: unknown key/);
    return true;
  });
});

test('an unknown key under a known section set by environment names the variable', () => {
  assert.throws(() => parseConfig({}, { LONGSHORE_STORAGE__PTH: 'x' }), /storage\.pth: unknown key \(set by LONGSHORE_STORAGE__PTH\)/);
});

test('grouped unknown keys each keep their "(set by …)" hint', () => {
  assert.throws(
    () => parseConfig({ storage: { pth: 'a' } }, { LONGSHORE_STORAGE__DELET: 'true', LONGSHORE_STORAGE__UPLOAD: '1m' }),
    (error: Error) => {
      assert.match(error.message, /storage\.pth, storage\.delet \(set by LONGSHORE_STORAGE__DELET\), storage\.upload \(set by LONGSHORE_STORAGE__UPLOAD\): unknown keys/);
      return true;
    },
  );
});

test('a bad value deep inside a section set by one variable names that variable', () => {
  assert.throws(() => parseConfig({}, { LONGSHORE_STORAGE: '{path: 5}' }), /storage\.path: .*\(set by LONGSHORE_STORAGE\)/);
});

test('Kubernetes service variables (LONGSHORE_PORT, LONGSHORE_SERVICE_HOST, …) are ignored with one warning', () => {
  const warnings: Array<{ message: string; details: Record<string, unknown> }> = [];
  const env = {
    LONGSHORE_PORT: 'tcp://10.0.0.7:5000',
    LONGSHORE_PORT_5000_TCP: 'tcp://10.0.0.7:5000',
    LONGSHORE_PORT_5000_TCP_ADDR: '10.0.0.7',
    LONGSHORE_PORT_5000_TCP_PORT: '5000',
    LONGSHORE_PORT_5000_TCP_PROTO: 'tcp',
    LONGSHORE_SERVICE_HOST: '10.0.0.7',
    LONGSHORE_SERVICE_PORT: '5000',
    LONGSHORE_LOG_LEVEL: 'debug',
  };
  const config = parseConfig({}, env, 'config', (message, details) => warnings.push({ message, details }));
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.listen, '127.0.0.1:5000');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!.message, /ignored LONGSHORE_\* variables/);
  assert.deepEqual(warnings[0]!.details.variables, [
    'LONGSHORE_PORT',
    'LONGSHORE_PORT_5000_TCP',
    'LONGSHORE_PORT_5000_TCP_ADDR',
    'LONGSHORE_PORT_5000_TCP_PORT',
    'LONGSHORE_PORT_5000_TCP_PROTO',
    'LONGSHORE_SERVICE_HOST',
    'LONGSHORE_SERVICE_PORT',
  ]);
  // A variable under a known key with a bad value still stops start-up.
  assert.throws(() => parseConfig({}, { ...env, LONGSHORE_LISTEN: 'nowhere' }, 'config', () => undefined), /listen: expected "host:port".*\(set by LONGSHORE_LISTEN\)/);
});

test('bad values name their key', () => {
  assert.throws(
    () => parseConfig({ upstreams: [{ name: 'hub', url: 'https://x.example', tagTtl: 'soon' }] }),
    /upstreams\[0\]\.tagTtl: not a duration: "soon"/,
  );
  assert.throws(() => parseConfig({ listen: 'localhost' }), /listen: expected "host:port"/);
  assert.throws(() => parseConfig({ upstreams: [{ name: 'hub', url: 'ftp://x' }] }), /upstreams\[0\]\.url/);
  assert.throws(
    () =>
      parseConfig({
        upstreams: [
          { name: 'a', url: 'https://a.example', default: true },
          { name: 'a', url: 'https://b.example', default: true },
        ],
      }),
    (error: Error) => /upstreams\[1\]\.name: duplicate upstream name "a"/.test(error.message) && /at most one upstream/.test(error.message),
  );
  assert.throws(() => parseConfig({ upstreams: [{ name: 'a', url: 'https://a.example', username: 'u' }] }), /upstreams\[0\]\.password: username and password go together/);
  assert.throws(() => parseConfig({ upstreams: [{ name: 'none' }] }), /upstreams\[0\]\.url: an upstream needs url \(v2\), v1\.index, or both/);
  assert.throws(() => parseConfig({ upstreams: [{ name: 'r', v1: { registry: 'https://r.example' } }] }), /upstreams\[0\]\.v1\.index: v1\.registry needs v1\.index/);
  assert.throws(() => parseConfig({ upstreams: [{ name: 'p', url: 'https://p.example', v1: { platform: 'amd64' } }] }), /upstreams\[0\]\.v1\.platform/);
  assert.equal(parseConfig({ upstreams: [{ name: 'legacy', v1: { index: 'https://index.example/' } }] }).upstreams[0]?.v1.index, 'https://index.example');
  assert.throws(() => parseConfig({ auth: { allowSignup: true } }), /auth\.allowSignup: sign-up writes accounts to auth\.htpasswd/);
  assert.throws(() => parseConfig({ api: { v1: 'yes' } }), /api\.v1/);
});

test('loadConfig reports unreadable files and YAML errors with the file name', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ls-config-'));
  await assert.rejects(loadConfig(path.join(dir, 'missing.yaml'), {}), /cannot read config file .*missing\.yaml/);
  const bad = path.join(dir, 'bad.yaml');
  await writeFile(bad, 'listen: [unclosed');
  await assert.rejects(loadConfig(bad, {}), /bad\.yaml is not valid YAML/);
});

test('durations and sizes', () => {
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1500'), 1500);
  assert.equal(parseDuration('5 minutes'), undefined);
  assert.equal(parseDuration(''), undefined);
  assert.equal(parseByteSize('10GiB'), 10 * 2 ** 30);
  assert.equal(parseByteSize('512MB'), 512e6);
  assert.equal(parseByteSize(1024), 1024);
  assert.equal(parseByteSize('10 furlongs'), undefined);
});

test('cluster.redis needs auth.secret and cluster.advertiseUrl, each named when missing; env overrides reach them', () => {
  const secret = 'a-shared-secret-of-enough-length';
  assert.throws(() => parseConfig({ cluster: { redis: 'redis://127.0.0.1:6379', advertiseUrl: 'http://10.0.0.5:5000' } }), /auth\.secret: required with cluster\.redis/);
  assert.throws(() => parseConfig({ cluster: { redis: 'redis://127.0.0.1:6379' }, auth: { secret } }), /cluster\.advertiseUrl: required with cluster\.redis/);
  assert.throws(() => parseConfig({ cluster: { redis: 'http://127.0.0.1:6379', advertiseUrl: 'http://10.0.0.5:5000' }, auth: { secret } }), /cluster\.redis: must be a redis:\/\/ or rediss:\/\/ URL/);
  const config = parseConfig({ auth: { secret } }, { LONGSHORE_CLUSTER__REDIS: 'redis://:pw@10.0.0.9:6380/2', LONGSHORE_CLUSTER__ADVERTISE_URL: 'http://10.0.0.5:5000/' });
  assert.equal(config.cluster.redis, 'redis://:pw@10.0.0.9:6380/2');
  assert.equal(config.cluster.advertiseUrl, 'http://10.0.0.5:5000');
  assert.deepEqual(parseConfig({}).cluster, {}, 'unset: one replica, coordinated in-process');
});

test('hardening keys: defaults, and contradictions named by key', () => {
  const config = parseConfig({});
  assert.deepEqual(config.http, { headersTimeout: 10_000, requestTimeout: 3_600_000, bodyIdleTimeout: 60_000, maxBufferedBodies: 64 * 1024 * 1024, trustProxy: [] });
  assert.deepEqual(config.auth.loginFailures, { perAddress: 20, perUser: 10, window: 300_000 });
  assert.equal(config.auth.signupAccess, 'pull');
  assert.equal(config.auth.verifyWorkers, 1);
  assert.throws(() => parseConfig({ http: { headersTimeout: '2m', requestTimeout: '1m' } }), /http\.headersTimeout: must not be longer than http\.requestTimeout/);
  assert.throws(() => parseConfig({ auth: { signupAccess: 'admin' } }), /auth\.signupAccess/);
  assert.deepEqual(parseConfig({ upstreams: [{ name: 'a', url: 'http://a', tokenRealms: ['http://auth.internal:5001/token'] }] }).upstreams[0]?.tokenRealms, ['http://auth.internal:5001']);
});

test('storage.directWrites: on by default, off by file or environment, and a non-boolean names the key', () => {
  assert.equal(parseConfig({}).storage.directWrites, true);
  assert.equal(parseConfig({ storage: { directWrites: false } }).storage.directWrites, false);
  assert.equal(parseConfig({}, { LONGSHORE_STORAGE__DIRECT_WRITES: 'false' }).storage.directWrites, false);
  assert.throws(() => parseConfig({ storage: { directWrites: 'sometimes' } }), /storage\.directWrites/);
});
