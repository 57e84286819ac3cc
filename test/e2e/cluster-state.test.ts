// State that several replicas share through a real redis-server (issue 17, "Shared state"):
// each upstream's circuit, tag freshness, and what holds across replicas on one storage.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import path from 'node:path';
import { createClient } from 'redis';
import { request } from 'undici';
import { CircuitBreakerUpstream } from '../../src/upstream/circuit-breaker.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import type { UpstreamRegistry } from '../../src/upstream/upstream.js';
import { sha256Digest } from '../harness/digests.js';
import { freePort } from '../harness/ports.js';
import { putManifest, uploadBlob } from '../harness/registry-client.js';
import { makeTempDir } from '../harness/tmp.js';
import { writeHtpasswd } from '../support/users.js';
import { V1Client } from '../harness/v1-client.js';
import { v1Chain } from '../support/v1-images.js';
import { startFakeUpstream } from '../harness/fake-upstream.js';
import { startRedis, type RedisHandle } from '../harness/redis.js';
import { disposeSharedSwift, s3StorageConfig, sharedSwift } from '../harness/swift.js';
import { pollUntil } from '../harness/wait.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { metricValue } from '../support/prometheus-text.js';
import { redisCluster } from '../support/redis-coordination.js';

let redis: RedisHandle | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
  await disposeSharedSwift();
});

const running = (): RedisHandle => {
  if (!redis) throw new Error('redis-server did not start');
  return redis;
};

const SECRET = 'a-shared-secret-of-enough-length';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** An htpasswd file with one user who may push into private namespaces, and their Basic header. */
async function pushingUser(t: TestContext): Promise<{ htpasswd: string; basic: Record<string, string> }> {
  const work = await makeTempDir('users');
  onCleanup(t, () => work.remove());
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  return { htpasswd, basic: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` } };
}

/**
 * `count` servers in this process, one S3 bucket and one Redis between them, each with a
 * scratch directory of its own: replicas of one mirror.
 */
async function replicasOnOneBucket(t: TestContext, count: number, upstreamConfig: Record<string, unknown>): Promise<InProcessLongshore[]> {
  const storage = await s3StorageConfig(await sharedSwift());
  const replicas: InProcessLongshore[] = [];
  for (let i = 0; i < count; i += 1) {
    const replica = await startInProcess({ storage, cluster: { redis: running().url, advertiseUrl: 'http://127.0.0.1:1' }, auth: { secret: SECRET }, upstreams: [upstreamConfig] });
    onCleanup(t, () => replica.stop());
    replicas.push(replica);
  }
  return replicas;
}

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
      assert.ok(coordinator.circuits, 'a Redis coordinator shares circuits');
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

void describe('tag freshness across replicas', () => {
  it('one upstream request per tag per tagTtl cluster-wide: concurrent refreshes on several replicas make one HEAD, and a replica refreshed by another does not ask again', async (t) => {
    const upstream = await startFakeUpstream();
    onCleanup(t, () => upstream.close());
    const tagTtlMs = 1500;
    const replicas = await replicasOnOneBucket(t, 3, { name: 'fake', url: upstream.url, default: true, tagTtl: tagTtlMs });
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));
    const digest = upstream.setManifest('app', 'v1', manifest, OCI_MANIFEST);
    const pull = async (replica: InProcessLongshore) => {
      const response = await request(`${replica.url}/v2/app/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
      const body = Buffer.from(await response.body.arrayBuffer());
      assert.equal(response.statusCode, 200, body.toString());
      assert.equal(response.headers['docker-content-digest'], digest);
    };
    const tagRequests = (method: string) => upstream.requests.filter((r) => r.method === method && r.path.endsWith('/manifests/v1')).length;

    // Every refresh of a round is over by its end: waiting a TTL from then passes every checkedAt.
    const pastTtl = (roundEnded: number) => new Promise((resolve) => setTimeout(resolve, roundEnded + tagTtlMs + 50 - Date.now()));
    for (const replica of replicas) await pull(replica);
    assert.equal(tagRequests('GET'), 1, 'the first pull fetched it; the other replicas read it from the bucket');
    assert.equal(tagRequests('HEAD'), 0);

    await pastTtl(Date.now());
    const started = Date.now();
    await Promise.all([0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => pull(replicas[i % 3]!)));
    assert.ok(Date.now() - started < tagTtlMs, 'the round ended within one TTL');
    assert.equal(tagRequests('HEAD'), 1, 'nine concurrent pulls past the TTL on three replicas: one HEAD');

    await pastTtl(Date.now());
    for (const replica of replicas) await pull(replica);
    assert.equal(tagRequests('HEAD'), 2, 'one after the other: the second and third replica take the refresh of the first');
    assert.equal(tagRequests('GET'), 1);
  });
});

void describe('lose Redis, lose nothing', () => {
  it('while Redis is away replicas serve from the bucket and fetch misses uncoordinated; with Redis flushed and every replica restarted on an empty scratch directory, the upstream down, everything pulled or pushed before (v2 and v1) still pulls, stale tags included', async (t) => {
    const { htpasswd, basic } = await pushingUser(t);
    const upstream = await startFakeUpstream();
    let upstreamRunning = true;
    onCleanup(t, () => (upstreamRunning ? upstream.close() : undefined));
    const tagTtlMs = 300;
    const storage = await s3StorageConfig(await sharedSwift());
    const config = {
      storage,
      cluster: { redis: running().url, advertiseUrl: 'http://127.0.0.1:1' },
      auth: { secret: SECRET, htpasswd },
      private: { namespaces: ['corp'] },
      upstreams: [{ name: 'fake', url: upstream.url, default: true, tagTtl: tagTtlMs }],
    };
    const startReplicas = async () => {
      const started: InProcessLongshore[] = [];
      for (let i = 0; i < 3; i += 1) {
        const replica = await startInProcess(config); // a new, empty scratch directory each time
        onCleanup(t, () => replica.stop());
        started.push(replica);
      }
      return started;
    };
    const image = (name: string) => {
      const layer = randomBytes(200 * 1024);
      const configBlob = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', name }));
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(configBlob), size: configBlob.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256Digest(layer), size: layer.length }],
        }),
      );
      return { blobs: [layer, configBlob], manifest, digest: sha256Digest(manifest) };
    };
    const pullImage = async (replica: InProcessLongshore, repository: string, tag: string, expected: ReturnType<typeof image>, headers: Record<string, string> = {}) => {
      const manifest = await request(`${replica.url}/v2/${repository}/manifests/${tag}`, { headers: { ...headers, accept: OCI_MANIFEST } });
      const bytes = Buffer.from(await manifest.body.arrayBuffer());
      assert.equal(manifest.statusCode, 200, `${repository}:${tag} on ${replica.url}: ${bytes.toString()}`);
      assert.equal(sha256Digest(bytes), expected.digest);
      for (const blob of expected.blobs) {
        const response = await request(`${replica.url}/v2/${repository}/blobs/${sha256Digest(blob)}`, { headers });
        assert.equal(response.statusCode, 200);
        assert.ok(Buffer.from(await response.body.arrayBuffer()).equals(blob), `${repository} blob on ${replica.url}`);
      }
    };
    const scrape = async (replica: InProcessLongshore) => (await request(`${replica.url}/metrics`)).body.text();

    // Pulled through one replica, read through the others; pushed through another.
    let replicas = await startReplicas();
    const mirrored = image('mirrored');
    for (const blob of mirrored.blobs) upstream.setBlob(sha256Digest(blob), blob);
    upstream.setManifest('app', 'v1', mirrored.manifest, OCI_MANIFEST);
    for (const replica of replicas) await pullImage(replica, 'app', 'v1', mirrored);
    const pushed = image('pushed');
    for (const blob of pushed.blobs) await uploadBlob(replicas[1]!.url, 'corp/own', sha256Digest(blob), blob, basic);
    assert.equal(await putManifest(replicas[1]!.url, 'corp/own', 'v1', pushed.manifest, OCI_MANIFEST, basic), pushed.digest);
    for (const replica of replicas) await pullImage(replica, 'corp/own', 'v1', pushed, basic);
    // v1 records: a Docker 1.x push through a third replica.
    const v1Pushed = await v1Chain('lose-redis', ['a', 'b']);
    const v1Tags = { latest: v1Pushed[1]!.id };
    await new V1Client(replicas[2]!.url, { username: 'alice', password: 'wonderland' }).push('corp/legacy', v1Pushed, v1Tags);
    const pullV1 = async (replica: InProcessLongshore) => {
      const pulled = await new V1Client(replica.url, { username: 'alice', password: 'wonderland' }).pull('corp/legacy', 'latest');
      assert.deepEqual(pulled.tags, v1Tags);
      for (const image of v1Pushed) {
        const got = pulled.images.get(image.id);
        assert.ok(got?.json.equals(image.json) && got.layer.equals(image.layer), `v1 image ${image.id} through ${replica.url}`);
      }
    };
    await pullV1(replicas[0]!);

    // Redis away: hits from the bucket, a miss fetched uncoordinated (counted and logged).
    await running().stop();
    for (const replica of replicas) {
      await pollUntil(async () => metricValue(await scrape(replica), 'longshore_coordination_connected', { mode: 'redis' }) === 0, { timeoutMs: 5000, what: 'Redis seen gone' });
    }
    for (const replica of replicas) {
      await pullImage(replica, 'app', 'v1', mirrored);
      await pullImage(replica, 'corp/own', 'v1', pushed, basic);
    }
    const duringOutage = image('during the outage');
    for (const blob of duringOutage.blobs) upstream.setBlob(sha256Digest(blob), blob);
    upstream.setManifest('app', 'v2', duringOutage.manifest, OCI_MANIFEST);
    await pullImage(replicas[2]!, 'app', 'v2', duringOutage);
    assert.ok(metricValue(await scrape(replicas[2]!), 'longshore_coordination_uncoordinated_total', { port: 'leases' }) >= 1, 'the uncoordinated fetches are counted');
    assert.ok(replicas[2]!.logs.some((line) => line.level === 40 && String(line.msg).startsWith('Redis unreachable')), 'and logged');

    // An empty Redis comes back: the replicas coordinate again.
    await running().start();
    for (const replica of replicas) {
      await pollUntil(async () => metricValue(await scrape(replica), 'longshore_coordination_connected', { mode: 'redis' }) === 1, { timeoutMs: 10_000, what: 'Redis seen back' });
    }

    // Redis flushed, every replica restarted on an empty scratch directory, the upstream down.
    for (const replica of replicas) await replica.stop();
    const client = createClient({ url: running().url });
    await client.connect();
    await client.flushAll();
    assert.equal(await client.dbSize(), 0);
    client.destroy();
    await upstream.close();
    upstreamRunning = false;
    replicas = await startReplicas();
    await new Promise((resolve) => setTimeout(resolve, tagTtlMs)); // every tag is stale now
    for (const replica of replicas) {
      await pullImage(replica, 'app', 'v1', mirrored);
      await pullImage(replica, 'app', 'v2', duringOutage);
      await pullImage(replica, 'corp/own', 'v1', pushed, basic);
      await pullImage(replica, 'corp/own', pushed.digest, pushed, basic);
      await pullV1(replica);
    }
    assert.ok(
      replicas.some((replica) => replica.logs.some((line) => line.msg === 'upstream failed; serving stale')),
      'the mirrored tags were served stale',
    );
    for (const replica of replicas) {
      const text = await scrape(replica);
      assert.equal(metricValue(text, 'longshore_coordination_connected', { mode: 'redis' }), 1);
    }
  });
});

void describe('upload sessions across replicas', () => {
  it('a chunked upload opened on one replica continues on the others, chunk by chunk, and the blob is pushed; the holder gone, the session is reported unknown', async (t) => {
    const { htpasswd, basic } = await pushingUser(t);
    const storage = await s3StorageConfig(await sharedSwift());
    const replicas: InProcessLongshore[] = [];
    for (let i = 0; i < 3; i += 1) {
      const port = await freePort(); // known before start: each replica advertises its own address
      const replica = await startInProcess({
        listen: `127.0.0.1:${port}`,
        storage,
        cluster: { redis: running().url, advertiseUrl: `http://127.0.0.1:${port}` },
        auth: { secret: SECRET, htpasswd },
        private: { namespaces: ['corp'] },
        upstreams: [],
      });
      onCleanup(t, () => replica.stop());
      replicas.push(replica);
    }
    const [a, b, c] = replicas as [InProcessLongshore, InProcessLongshore, InProcessLongshore];
    const blob = randomBytes(300 * 1024);
    const chunks = [blob.subarray(0, 100 * 1024), blob.subarray(100 * 1024, 250 * 1024), blob.subarray(250 * 1024)];

    const opened = await request(`${a.url}/v2/corp/app/blobs/uploads/`, { method: 'POST', headers: { ...basic, 'content-length': '0' } });
    await opened.body.dump();
    assert.equal(opened.statusCode, 202);
    let location = String(opened.headers.location);
    let offset = 0;
    for (const [index, replica] of [b, c, a].entries()) {
      const chunk = chunks[index]!;
      const patched = await request(new URL(location, replica.url), {
        method: 'PATCH',
        headers: { ...basic, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}`, 'content-length': String(chunk.length) },
        body: chunk,
      });
      const text = await patched.body.text();
      assert.equal(patched.statusCode, 202, `chunk ${index} through ${replica.url}: ${text}`);
      offset += chunk.length;
      assert.equal(patched.headers.range, `0-${offset - 1}`);
      location = String(patched.headers.location);
    }
    const status = await request(new URL(location, c.url), { headers: basic });
    await status.body.dump();
    assert.equal(status.statusCode, 204);
    assert.equal(status.headers.range, `0-${blob.length - 1}`, 'the status, asked of another replica, is the holder\'s');
    const closing = new URL(location, b.url);
    closing.searchParams.set('digest', sha256Digest(blob));
    const closed = await request(closing, { method: 'PUT', headers: { ...basic, 'content-length': '0' } });
    const closedText = await closed.body.text();
    assert.equal(closed.statusCode, 201, closedText);
    for (const replica of replicas) {
      const pulled = await request(`${replica.url}/v2/corp/app/blobs/${sha256Digest(blob)}`, { headers: basic });
      assert.equal(pulled.statusCode, 200);
      assert.ok(Buffer.from(await pulled.body.arrayBuffer()).equals(blob));
    }

    // A session whose holder stopped: another replica says so in the v2 error format.
    const orphan = await request(`${c.url}/v2/corp/app/blobs/uploads/`, { method: 'POST', headers: { ...basic, 'content-length': '0' } });
    await orphan.body.dump();
    await c.stop();
    const lost = await request(new URL(String(orphan.headers.location), a.url), { headers: basic });
    const body = (await lost.body.json()) as { errors: Array<{ code: string }> };
    assert.equal(lost.statusCode, 404);
    assert.equal(body.errors[0]?.code, 'BLOB_UPLOAD_UNKNOWN');
  });
});
