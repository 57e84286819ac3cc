// Deployment readiness (issue 15) with real processes: Longshore serving HTTPS and reloading
// its certificate on SIGHUP, tinyproxy as the outbound proxy, nginx with a private CA in front
// of a real registry, a slow upstream during shutdown, and start-up/CLI failures as an
// operator meets them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { startCountingProxy } from '../harness/counting-proxy.js';
import { startForwardProxy } from '../harness/forward-proxy.js';
import { pushDockerImage, pushDockerManifestList, type GeneratedImage } from '../harness/images.js';
import { startLongshore, REPO_ROOT } from '../harness/longshore.js';
import { MANIFEST_ACCEPT } from '../harness/registry-client.js';
import { spawnProcess } from '../harness/processes.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { skopeo } from '../harness/skopeo.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { makePrivateCa, type PrivateCa } from '../harness/tls.js';
import { startTlsNginx } from '../harness/tls-nginx.js';
import { pollUntil } from '../harness/wait.js';
import { formatBytes } from '../../src/cli/progress.js';
import { runCli } from '../support/cli.js';
import { onCleanup } from '../support/cleanup.js';
import { writeHtpasswd } from '../support/users.js';

let registry: RegistryHandle;
let image: GeneratedImage;
let work: TempDir;
let ca: PrivateCa;

before(async () => {
  work = await makeTempDir('deploy');
  ca = await makePrivateCa(work.path);
  registry = await startRegistry();
  image = await pushDockerImage(registry.url, 'apps/web', 'v1', [50_000]);
});

after(async () => {
  await registry?.dispose();
  await work?.remove();
});

async function getManifest(base: string, path = '/v2/hub/apps/web/manifests/v1', dispatcher?: Agent) {
  const response = await request(`${base}${path}`, { headers: { accept: MANIFEST_ACCEPT }, dispatcher });
  return { status: response.statusCode, body: await response.body.text() };
}

/** The CN of the certificate a fresh TLS connection is served. */
async function servedName(port: number): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: await readFile(ca.cert) });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const name = String(socket.getPeerCertificate().subject.CN);
  socket.destroy();
  return name;
}

test('TLS: serves HTTPS, SIGHUP loads a new certificate for new connections, keeps open ones, refuses a bad pair', async (t) => {
  const first = await ca.issue('first');
  const second = await ca.issue('second');
  const live = { cert: join(work.path, 'live.crt'), key: join(work.path, 'live.key') };
  await copyFile(first.cert, live.cert);
  await copyFile(first.key, live.key);
  const mirror = await startLongshore({ tls: live });
  onCleanup(t, () => mirror.dispose());
  assert.match(mirror.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const port = Number(new URL(mirror.url).port);
  const trusting = new Agent({ connect: { ca: await readFile(ca.cert) } });
  onCleanup(t, () => trusting.close());
  assert.equal((await request(`${mirror.url}/v2/`, { dispatcher: trusting })).statusCode, 200);
  assert.equal(await servedName(port), 'first');

  // A keep-alive connection opened before the reload.
  const early = tls.connect({ host: '127.0.0.1', port, ca: await readFile(ca.cert) });
  await new Promise<void>((resolve, reject) => early.once('secureConnect', resolve).once('error', reject));
  onCleanup(t, () => early.destroy());

  await copyFile(second.cert, live.cert);
  await copyFile(second.key, live.key);
  mirror.process?.child.kill('SIGHUP');
  await mirror.waitForLog((r) => r.msg === 'TLS certificate reloaded', 10_000);
  assert.equal(await servedName(port), 'second');
  // The connection from before still works, with the certificate it was opened with.
  early.write('GET /healthz HTTP/1.1\r\nHost: longshore\r\n\r\n');
  const answer = await new Promise<string>((resolve) => early.once('data', (chunk: Buffer) => resolve(chunk.toString('utf8'))));
  assert.match(answer, /^HTTP\/1\.1 200/);
  assert.equal(early.getPeerCertificate().subject.CN, 'first');

  // A certificate with someone else's key: refused with a log line, the current pair stays.
  await copyFile(first.key, live.key);
  mirror.process?.child.kill('SIGHUP');
  const refused = await mirror.waitForLog((r) => r.msg === 'TLS certificate reload refused; still serving the previous certificate', 10_000);
  assert.match(String(refused.err), /not a usable certificate and key/);
  assert.equal(await servedName(port), 'second');
  assert.equal(mirror.process?.exitStatus(), undefined, 'the server keeps running');
});

test('outbound proxy: HTTP_PROXY is used for upstream requests; upstreams[].proxy overrides it', async (t) => {
  const proxy = await startForwardProxy();
  onCleanup(t, () => proxy.dispose());
  const registryPort = new URL(registry.url).port;
  const viaEnv = await startLongshore(
    { upstreams: [{ name: 'hub', url: registry.url }] },
    { env: { HTTP_PROXY: proxy.url, http_proxy: proxy.url, NO_PROXY: '', no_proxy: '' } },
  );
  onCleanup(t, () => viaEnv.dispose());
  assert.equal((await getManifest(viaEnv.url)).status, 200);
  assert.match(await proxy.log(), new RegExp(`127\\.0\\.0\\.1:${registryPort}`), 'the upstream request went through the proxy');

  // A dead proxy in the environment, the working one configured on the upstream.
  const proxyLogBefore = (await proxy.log()).length;
  const perUpstream = await startLongshore(
    { upstreams: [{ name: 'hub', url: registry.url, proxy: proxy.url, circuitBreaker: { failures: 100 } }] },
    { env: { HTTP_PROXY: 'http://127.0.0.1:9', http_proxy: 'http://127.0.0.1:9', NO_PROXY: '', no_proxy: '' } },
  );
  onCleanup(t, () => perUpstream.dispose());
  assert.equal((await getManifest(perUpstream.url)).status, 200);
  assert.match((await proxy.log()).slice(proxyLogBefore), new RegExp(`127\\.0\\.0\\.1:${registryPort}`));
});

test('private CA: refused without upstreams[].ca (a clear error and a warn line), works with it or with insecure', async (t) => {
  const nginx = await startTlsNginx(registry.url, await ca.issue('upstream'));
  onCleanup(t, () => nginx.dispose());

  const untrusting = await startLongshore({ upstreams: [{ name: 'hub', url: nginx.url }] });
  onCleanup(t, () => untrusting.dispose());
  const refused = await getManifest(untrusting.url);
  assert.equal(refused.status, 502);
  assert.match(refused.body, /TLS certificate not accepted/);
  const warn = await untrusting.waitForLog((r) => r.msg === 'upstream TLS certificate not accepted', 5_000);
  assert.equal(warn.upstream, 'hub');
  assert.equal(warn.level, 40);

  const trusting = await startLongshore({ upstreams: [{ name: 'hub', url: nginx.url, ca: ca.cert }] });
  onCleanup(t, () => trusting.dispose());
  const served = await getManifest(trusting.url);
  assert.equal(served.status, 200);
  assert.equal(served.body, image.manifestBytes.toString('utf8'));

  const insecure = await startLongshore({ upstreams: [{ name: 'hub', url: nginx.url, insecure: true }] });
  onCleanup(t, () => insecure.dispose());
  assert.equal((await getManifest(insecure.url)).status, 200);
  assert.ok(insecure.logs.some((r) => r.level === 40 && r.upstream === 'hub' && /verification is off/.test(String(r.msg))));
});

test('shutdown: with a slow download in flight, new requests and /readyz get 503 and the process exits within the grace period plus a second', async (t) => {
  const big = await pushDockerImage(registry.url, 'apps/big', 'v1', [8 * 1024 * 1024]);
  const slow = await startCountingProxy(registry.url, { bytesPerSecond: 256 * 1024 });
  onCleanup(t, () => slow.close());
  const mirror = await startLongshore({ shutdownGracePeriod: '2s', upstreams: [{ name: 'hub', url: slow.url }] });
  onCleanup(t, () => mirror.dispose());
  const layer = big.layers[0]!;
  const download = await request(`${mirror.url}/v2/hub/apps/big/blobs/${layer.digest}`);
  assert.equal(download.statusCode, 200);
  const received = (async () => {
    let bytes = 0;
    try {
      for await (const chunk of download.body as AsyncIterable<Buffer>) bytes += chunk.byteLength;
    } catch {
      return 'cut';
    }
    return bytes === layer.size ? 'complete' : `ended short at ${bytes} of ${layer.size} bytes`;
  })();
  const child = mirror.process!;
  const signalled = Date.now();
  child.child.kill('SIGTERM');
  await mirror.waitForLog((r) => r.msg === 'draining: waiting for responses in flight', 5_000);
  const fresh = new Agent(); // a new connection, as a client arriving during the drain makes
  onCleanup(t, () => fresh.close());
  const ready = await request(`${mirror.url}/readyz`, { dispatcher: fresh });
  assert.equal(ready.statusCode, 503);
  assert.deepEqual(await ready.body.json(), { status: 'draining' });
  const pull = await request(`${mirror.url}/v2/hub/apps/web/manifests/v1`, { dispatcher: fresh, reset: true });
  assert.equal(pull.statusCode, 503);
  assert.equal(((await pull.body.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');
  const status = await child.exited;
  const tookMs = Date.now() - signalled;
  assert.equal(status.code, 0);
  assert.ok(tookMs < 3_000, `exited ${tookMs} ms after SIGTERM (grace 2 s)`);
  assert.equal(await received, 'cut');
  assert.ok(mirror.logs.some((r) => r.msg === 'grace period over; closing remaining connections'));
  assert.deepEqual(await readdir(join(mirror.dataDir, 'tmp')), [], 'no temp file left behind');
});

test('start-up errors are one line naming the problem, exit code 1, no stack trace', async (t) => {
  const dir = await makeTempDir('startup');
  onCleanup(t, () => dir.remove());
  const occupied = createServer();
  await new Promise<void>((resolve) => occupied.listen(0, '127.0.0.1', resolve));
  onCleanup(t, () => new Promise((resolve) => occupied.close(resolve)));
  const port = (occupied.address() as { port: number }).port;
  const notADirectory = join(dir.path, 'file');
  await writeFile(notADirectory, 'x');
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['port in use', { listen: `127.0.0.1:${port}`, storage: { path: join(dir.path, 'a') } }, new RegExp(`listen 127\\.0\\.0\\.1:${port}: the address is already in use`)],
    ['storage is a file', { storage: { path: notADirectory } }, /storage\.path .*file is not a directory/],
    ['htpasswd missing', { storage: { path: join(dir.path, 'b') }, auth: { htpasswd: join(dir.path, 'users') } }, /auth\.htpasswd .*users cannot be read \(ENOENT\)/],
    ['tls files missing', { storage: { path: join(dir.path, 'c') }, tls: { cert: join(dir.path, 'no.crt'), key: join(dir.path, 'no.key') } }, /tls\.cert .*no\.crt cannot be read \(ENOENT\)/],
  ];
  for (const [what, config, expected] of cases) {
    const file = join(dir.path, `${what.replace(/ /g, '-')}.json`);
    await writeFile(file, JSON.stringify({ listen: '127.0.0.1:0', ...config }));
    const result = await runCli(['serve', '--config', file], 60_000);
    assert.equal(result.code, 1, `${what}: exit code`);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `${what}: one line, got:\n${result.stderr}`);
    assert.match(lines[0]!, /^longshore: cannot start: /);
    assert.match(lines[0]!, expected, what);
  }
});

test('CLI: --version, <command> --help, no command, warm with nowhere to warm', async () => {
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const version = await runCli(['--version']);
  assert.equal(version.code, 0);
  assert.equal(version.stdout.trim(), `longshore ${pkg.version}`);
  for (const command of ['serve', 'gc', 'warm', 'export', 'import', 'ls']) {
    const help = await runCli([command, '--help']);
    assert.equal(help.code, 0, `${command} --help`);
    assert.match(help.stdout, new RegExp(`^usage: longshore ${command} `));
  }
  const bare = await runCli([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^usage: longshore <command>/);
  const warm = await runCli(['warm', 'alpine:3']);
  assert.equal(warm.code, 2);
  assert.match(warm.stderr, /warm needs --url URL of a running Longshore or --config FILE/);
});

test('one server per data directory: a second serve refuses, warm --config goes through the running one, a crashed holder leaves a stale lock', async (t) => {
  const mirror = await startLongshore({ upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'], default: true }] });
  onCleanup(t, () => mirror.dispose());
  const pid = mirror.process!.child.pid!;

  const second = await runCli(['serve', '--config', mirror.configPath], 60_000);
  assert.equal(second.code, 1);
  assert.match(second.stderr.trim(), new RegExp(`^longshore: cannot start: storage\\.path .* is in use by Longshore process ${pid} on .*\\(${mirror.url.replace(/[.]/g, '\\.')}\\); stop it`));
  assert.equal(second.stderr.trim().split('\n').length, 1);

  // warm with the same config: through the running server, whose temp files it leaves alone.
  const warmed = await runCli(['warm', '--config', mirror.configPath, 'registry.test/apps/web:v1'], 60_000);
  assert.equal(warmed.code, 0, warmed.stderr);
  assert.match(warmed.stderr, new RegExp(`served by process ${pid}; going through it at ${mirror.url.replace(/[.]/g, '\\.')}`));
  assert.ok(
    mirror.logs.some((r) => r.msg === 'request' && r.path === '/v2/registry.test/apps/web/manifests/v1' && String(r.userAgent).startsWith('longshore/')),
    'the warm requests reached the running server',
  );

  // After a crash the lock names a process that is gone: the next start takes it over.
  await mirror.kill9();
  await mirror.start();
  assert.equal((await request(`${mirror.url}/v2/`)).statusCode, 200);
  // A clean stop removes the lock.
  await mirror.stop();
  assert.deepEqual((await readdir(mirror.dataDir)).filter((f) => f === 'longshore.lock'), []);
});

test('warm --creds (or the stored docker/podman login) warms images from a mirror that wants credentials', async (t) => {
  const dir = await makeTempDir('creds');
  onCleanup(t, () => dir.remove());
  const users = join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const mirror = await startLongshore({
    auth: { htpasswd: users, anonymousPull: false },
    upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }],
  });
  onCleanup(t, () => mirror.dispose());
  const noAuthFile = { REGISTRY_AUTH_FILE: join(dir.path, 'none.json'), DOCKER_CONFIG: dir.path, XDG_RUNTIME_DIR: dir.path };

  const anonymous = await runCli(['warm', '--url', mirror.url, 'registry.test/apps/web:v1'], 60_000, noAuthFile);
  assert.equal(anonymous.code, 1, 'refused without credentials');
  const withCreds = await runCli(['warm', '--url', mirror.url, '--creds', 'alice:wonderland', 'registry.test/apps/web:v1'], 60_000, noAuthFile);
  assert.equal(withCreds.code, 0, withCreds.stderr);

  const authFile = join(dir.path, 'auth.json');
  await writeFile(authFile, JSON.stringify({ auths: { [new URL(mirror.url).host]: { auth: Buffer.from('alice:wonderland').toString('base64') } } }));
  const stored = await runCli(['warm', '--url', mirror.url, 'registry.test/apps/web:v1'], 60_000, { ...noAuthFile, REGISTRY_AUTH_FILE: authFile });
  assert.equal(stored.code, 0, stored.stderr);

  const malformed = await runCli(['warm', '--url', mirror.url, '--creds', 'alice', 'registry.test/apps/web:v1']);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr, /--creds: expected USER:PASSWORD/);
});

test('warm tells blobs already cached apart from those fetched from upstream: a second warm of the same image fetches nothing', async (t) => {
  const warmed = await pushDockerImage(registry.url, 'apps/warmtwice', 'v1', [40_000, 25_000]);
  const mirror = await startLongshore({ upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }] });
  onCleanup(t, () => mirror.dispose());
  const blobBytes = warmed.configBytes.byteLength + warmed.layers.reduce((sum, l) => sum + l.size, 0);
  const total = (stdout: string) => stdout.split('\n').find((l) => l.startsWith('total: ')) ?? '';
  const size = (bytes: number) => formatBytes(bytes).replace('.', '\\.');

  const first = await runCli(['warm', '--url', mirror.url, 'registry.test/apps/warmtwice:v1'], 60_000);
  assert.equal(first.code, 0, first.stderr);
  assert.match(total(first.stdout), new RegExp(`^total: 1/1 images, 3 blobs, ${size(blobBytes)}: 0 cached \\(0 B\\), 3 fetched \\(${size(blobBytes)}\\)$`));
  const second = await runCli(['warm', '--url', mirror.url, 'registry.test/apps/warmtwice:v1'], 60_000);
  assert.equal(second.code, 0, second.stderr);
  assert.match(total(second.stdout), new RegExp(`^total: 1/1 images, 3 blobs, ${size(blobBytes)}: 3 cached \\(${size(blobBytes)}\\), 0 fetched \\(0 B\\)$`));
  // Per blob too, as each one finishes.
  assert.match(second.stdout, /^registry\.test\/apps\/warmtwice:v1: 1\/3 blobs, .*: 1 cached \(.*\), 0 fetched \(0 B\)$/m);

  // On a terminal (script(1) gives it one): the bars say how many were cached, a last line the split.
  const onTerminal = spawnProcess('script', ['-qec', `${process.execPath} --import tsx src/main.ts warm --url ${mirror.url} registry.test/apps/warmtwice:v1`, '/dev/null'], { cwd: REPO_ROOT });
  onCleanup(t, () => onTerminal.kill9());
  assert.equal((await onTerminal.exited).code, 0);
  const screen = onTerminal.stdoutLines.join('\n');
  assert.ok(screen.includes('\x1b['), 'drawn as bars on a terminal');
  assert.match(screen, /3\/3 blobs \(3 cached\) {2}registry\.test\/apps\/warmtwice:v1 done/);
  assert.match(screen, new RegExp(`blobs: 3 cached \\(${size(blobBytes)}\\), 0 fetched \\(0 B\\)`));
});

test('refused upstream credentials: the client gets a 404, the log one warn line per upstream per cooldown naming the upstream and the reason', async (t) => {
  const dir = await makeTempDir('refused');
  onCleanup(t, () => dir.remove());
  const users = join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  // Another Longshore with accounts is a real registry that refuses wrong credentials.
  const guarded = await startLongshore({ auth: { htpasswd: users, anonymousPull: false }, upstreams: [{ name: 'hub', url: registry.url, default: true }] });
  onCleanup(t, () => guarded.dispose());
  const mirror = await startLongshore({
    upstreams: [{ name: 'corp', url: guarded.url, username: 'alice', password: 'not-her-password', circuitBreaker: { cooldown: '1h' } }],
  });
  onCleanup(t, () => mirror.dispose());

  const first = await getManifest(mirror.url, '/v2/corp/apps/web/manifests/v1');
  assert.equal(first.status, 404);
  const second = await getManifest(mirror.url, '/v2/corp/apps/web/manifests/v2');
  assert.equal(second.status, 404);
  const warning = await mirror.waitForLog((r) => r.msg === 'upstream refused the configured credentials', 5_000);
  assert.equal(warning.level, 40);
  assert.equal(warning.upstream, 'corp');
  assert.match(String(warning.reason), /401/);
  assert.equal(mirror.logs.filter((r) => r.msg === 'upstream refused the configured credentials').length, 1, 'once per cooldown, not per request');

  // With the right password the same pull works: the warning was about the credentials.
  const fixed = await startLongshore({ upstreams: [{ name: 'corp', url: guarded.url, username: 'alice', password: 'wonderland' }] });
  onCleanup(t, () => fixed.dispose());
  assert.equal((await getManifest(fixed.url, '/v2/corp/apps/web/manifests/v1')).status, 200);
  assert.ok(!fixed.logs.some((r) => r.msg === 'upstream refused the configured credentials'));
});

test('longshore ls lists cached and private repositories with tags, sizes and last pull time (JSON with --json)', async (t) => {
  const dir = await makeTempDir('ls');
  onCleanup(t, () => dir.remove());
  const users = join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const mirror = await startLongshore({
    auth: { htpasswd: users },
    private: { namespaces: ['corp'], anonymousPull: true },
    upstreams: [{ name: 'hub', url: registry.url }],
  });
  onCleanup(t, () => mirror.dispose());
  const pushed = await pushPrivateAndPullMirrored(mirror.url);

  await mirror.stop(); // access times are written at close
  const listed = await runCli(['ls', '--config', mirror.configPath, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const repositories = JSON.parse(listed.stdout) as Array<{ kind: string; upstream?: string; name: string; tags: Array<{ tag: string; digest: string; bytes: number; lastPull?: string }> }>;
  assert.deepEqual(
    repositories.map((r) => [r.kind, r.upstream, r.name, r.tags.map((tag) => [tag.tag, tag.digest, tag.bytes])]),
    [
      ['mirrored', 'hub', 'apps/web', [['v1', image.manifestDigest, sizeOf(image)]]],
      ['private', undefined, 'corp/app', [['1.0', pushed.manifestDigest, sizeOf(pushed)]]],
    ],
  );
  const lastPull = Date.parse(repositories[0]!.tags[0]!.lastPull ?? '');
  assert.ok(Math.abs(Date.now() - lastPull) < 10 * 60_000, `last pull is recent: ${repositories[0]!.tags[0]!.lastPull}`);

  const one = await runCli(['ls', '--config', mirror.configPath, 'corp/app:1.0']);
  assert.equal(one.code, 0, one.stderr);
  const lines = one.stdout.trim().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+SIZE\s+LAST PULL\s+SOURCE$/);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /^corp\/app\s+1\.0\s+\S+.*private$/);
});

test('ls --url asks a running server: the entries ls --config reads, in both formats; private ones with --creds; clear errors when unreachable or refused', async (t) => {
  const dir = await makeTempDir('ls-url');
  onCleanup(t, () => dir.remove());
  const users = join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const mirror = await startLongshore({ auth: { htpasswd: users }, private: { namespaces: ['corp'] }, upstreams: [{ name: 'hub', url: registry.url }] });
  onCleanup(t, () => mirror.dispose());
  const pushed = await pushPrivateAndPullMirrored(mirror.url);
  const noAuthFile = { REGISTRY_AUTH_FILE: join(dir.path, 'none.json'), DOCKER_CONFIG: dir.path, XDG_RUNTIME_DIR: dir.path };
  type Listed = Array<{ kind: string; upstream?: string; name: string; tags: Array<{ tag: string; digest: string; bytes: number; lastPull?: string }> }>;
  const entries = (listed: Listed) => listed.map((r) => [r.kind, r.upstream, r.name, r.tags.map((tag) => [tag.tag, tag.digest, tag.bytes])]);
  const mirrored = ['mirrored', 'hub', 'apps/web', [['v1', image.manifestDigest, sizeOf(image)]]];
  const private_ = ['private', undefined, 'corp/app', [['1.0', pushed.manifestDigest, sizeOf(pushed)]]];

  const anonymous = await runCli(['ls', '--url', mirror.url, '--json'], 60_000, noAuthFile);
  assert.equal(anonymous.code, 0, anonymous.stderr);
  assert.deepEqual(entries(JSON.parse(anonymous.stdout) as Listed), [mirrored], 'anonymous: the mirrored repository only');

  const withCreds = await runCli(['ls', '--url', mirror.url, '--creds', 'alice:wonderland', '--json'], 60_000, noAuthFile);
  assert.equal(withCreds.code, 0, withCreds.stderr);
  const listed = JSON.parse(withCreds.stdout) as Listed;
  assert.deepEqual(entries(listed), [mirrored, private_]);
  const lastPull = Date.parse(listed[0]!.tags[0]!.lastPull ?? '');
  assert.ok(Math.abs(Date.now() - lastPull) < 10 * 60_000, `last pull is recent: ${listed[0]!.tags[0]!.lastPull}`);
  // The same entries as read from the data directory.
  const fromConfig = await runCli(['ls', '--config', mirror.configPath, '--json']);
  assert.equal(fromConfig.code, 0, fromConfig.stderr);
  assert.deepEqual(entries(JSON.parse(fromConfig.stdout) as Listed), entries(listed));

  // The table, with the login docker or podman stored for the mirror's host.
  const authFile = join(dir.path, 'auth.json');
  await writeFile(authFile, JSON.stringify({ auths: { [new URL(mirror.url).host]: { auth: Buffer.from('alice:wonderland').toString('base64') } } }));
  const table = await runCli(['ls', '--url', mirror.url, 'corp/app:1.0'], 60_000, { ...noAuthFile, REGISTRY_AUTH_FILE: authFile });
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+SIZE\s+LAST PULL\s+SOURCE$/);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /^corp\/app\s+1\.0\s+\S+.*private$/);

  const refused = await runCli(['ls', '--url', mirror.url, '--creds', 'alice:not-her-password'], 60_000, noAuthFile);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr.trim(), /^longshore: ls: http:\/\/127\.0\.0\.1:\d+ refused the credentials of "alice": /);
  assert.equal(refused.stdout, '');

  await mirror.stop();
  const unreachable = await runCli(['ls', '--url', mirror.url], 60_000, noAuthFile);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr.trim(), /^longshore: ls: cannot reach Longshore at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
});

test('import reports images and bundles, not "1/0 blobs" and "1/1 images"; a failed bundle adds nothing to the total', async (t) => {
  await pushDockerImage(registry.url, 'apps/api', 'v1', [20_000]);
  const source = await startLongshore({ upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }] });
  onCleanup(t, () => source.dispose());
  const dir = await makeTempDir('bundle');
  onCleanup(t, () => dir.remove());
  const bundle = join(dir.path, 'two.tar');
  const exported = await runCli(['export', '--url', source.url, '-o', bundle, 'registry.test/apps/web:v1', 'registry.test/apps/api:v1']);
  assert.equal(exported.code, 0, exported.stderr);
  const broken = join(dir.path, 'broken.tar');
  await writeFile(broken, 'not a tar file at all');
  const config = join(dir.path, 'site.yaml');
  await writeFile(config, JSON.stringify({ storage: { path: join(dir.path, 'site-data') }, upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }] }));

  const imported = await runCli(['import', '--config', config, bundle, broken]);
  assert.equal(imported.code, 1, 'one bundle failed');
  assert.doesNotMatch(imported.stdout, /\/0 blobs/);
  assert.match(imported.stdout, /imported .*two\.tar: 2 images, \d+ blobs/);
  const totalLine = imported.stdout.split('\n').find((l) => l.startsWith('total: '));
  const twoLine = imported.stdout.split('\n').find((l) => l.startsWith(`imported ${bundle}`));
  assert.match(totalLine ?? '', /^total: 1\/2 bundles, (\d+) blobs, /);
  // The total is the good bundle's alone.
  assert.equal(/(\d+) blobs/.exec(totalLine ?? '')?.[1], /(\d+) blobs/.exec(twoLine ?? '')?.[1]);
});

test('export --platform writes an index holding only the bundled manifests: skopeo copy --all reads the bundle, import takes it', async (t) => {
  const list = await pushDockerManifestList(registry.url, 'apps/multi', 'multi');
  const source = await startLongshore({ upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }] });
  onCleanup(t, () => source.dispose());
  const dir = await makeTempDir('platform-bundle');
  onCleanup(t, () => dir.remove());
  const bundle = join(dir.path, 'amd64.tar');
  const exported = await runCli(['export', '--url', source.url, '--platform', 'linux/amd64', '-o', bundle, 'registry.test/apps/multi:multi']);
  assert.equal(exported.code, 0, exported.stderr);

  const amd64 = list.manifests.find((m) => m.platform.architecture === 'amd64')!;
  const out = join(dir.path, 'copied');
  await skopeo(['copy', '--all', `oci-archive:${bundle}`, `dir:${out}`]);
  const copiedIndex = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  assert.deepEqual(
    copiedIndex.manifests.map((m) => m.digest),
    [amd64.manifestDigest],
  );

  const config = join(dir.path, 'site.yaml');
  await writeFile(config, JSON.stringify({ storage: { path: join(dir.path, 'site-data') }, upstreams: [{ name: 'hub', url: registry.url, hosts: ['registry.test'] }] }));
  const imported = await runCli(['import', '--config', config, bundle]);
  assert.equal(imported.code, 0, imported.stderr);
});

test('an interrupted warm --config removes its temp files', async (t) => {
  await pushDockerImage(registry.url, 'apps/slowwarm', 'v1', [4 * 1024 * 1024]);
  const slow = await startCountingProxy(registry.url, { bytesPerSecond: 256 * 1024 });
  onCleanup(t, () => slow.close());
  const dir = await makeTempDir('warm-interrupted');
  onCleanup(t, () => dir.remove());
  const data = join(dir.path, 'data');
  const config = join(dir.path, 'config.yaml');
  await writeFile(config, JSON.stringify({ storage: { path: data }, upstreams: [{ name: 'hub', url: slow.url, hosts: ['registry.test'] }] }));
  const warm = spawnProcess(process.execPath, ['--import', 'tsx', 'src/main.ts', 'warm', '--config', config, 'registry.test/apps/slowwarm:v1'], { cwd: REPO_ROOT });
  onCleanup(t, () => warm.kill9());
  const tmp = join(data, 'tmp');
  await pollUntil(async () => (await readdir(tmp).catch(() => [])).length > 0, { timeoutMs: 30_000, what: 'a download in progress', abortReason: () => (warm.exitStatus() ? warm.describe() : undefined) });
  warm.child.kill('SIGINT');
  const status = await warm.exited;
  assert.equal(status.code, 130);
  assert.deepEqual(await readdir(tmp), [], 'no temp file left behind');
});

/** What `ls` tests list: alice pushes corp/app:1.0, and the mirrored hub/apps/web is pulled whole (manifest, config, layer). */
async function pushPrivateAndPullMirrored(mirrorUrl: string): Promise<GeneratedImage> {
  const basic = { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };
  const pushed = await pushDockerImage(mirrorUrl, 'corp/app', '1.0', [30_000], { headers: basic });
  assert.equal((await getManifest(mirrorUrl)).status, 200);
  for (const digest of [image.configDigest, ...image.layers.map((l) => l.digest)]) {
    const blob = await request(`${mirrorUrl}/v2/hub/apps/web/blobs/${digest}`);
    assert.equal(blob.statusCode, 200);
    await blob.body.dump({ limit: Number.MAX_SAFE_INTEGER });
  }
  return pushed;
}

/** What a pull downloads besides the manifest, as the web page counts it. */
function sizeOf(pulled: GeneratedImage): number {
  return pulled.configBytes.byteLength + pulled.layers.reduce((sum, layer) => sum + layer.size, 0);
}
