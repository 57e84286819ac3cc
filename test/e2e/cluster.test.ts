// Three Longshore replicas as one mirror (test/harness/cluster.ts: one Swift bucket, one
// redis-server, real processes) behind a round-robin client: one upstream fetch cluster-wide
// with live followers on the other replicas, skopeo pulls through each replica, a private push
// through one and pull through another, kill -9 of a fetch's leader mid-stream, Redis lost
// (stopped, then replaced by an empty one, then flushed with every replica restarted on an
// empty scratch directory and the upstream down), tag freshness shared, a replica with a full
// scratch directory, and a chunked upload across replicas.
// The tests run in order on one cluster (starting three replicas on S3 is most of a test's time).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { startCluster, type ClusterHandle } from '../harness/cluster.js';
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.js';
import { sha256Digest } from '../harness/digests.js';
import { makeOciLayout, pushDockerImage } from '../harness/images.js';
import type { LongshoreHandle } from '../harness/longshore.js';
import { startRegistry, type RegistryHandle } from '../harness/registry.js';
import { MANIFEST_ACCEPT, uploadBlob } from '../harness/registry-client.js';
import { V1Client } from '../harness/v1-client.js';
import { v1Chain } from '../support/v1-images.js';
import type { GeneratedImage } from '../harness/images.js';
import { skopeo } from '../harness/skopeo.js';
import { fetchesSettled } from '../harness/fetches.js';
import { disposeSharedSwift, sharedSwift } from '../harness/swift.js';
import { makeTempDir, type TempDir } from '../harness/tmp.js';
import { pollUntil } from '../harness/wait.js';
import { metricValue } from '../support/prometheus-text.js';
import { writeHtpasswd } from '../support/users.js';

const MiB = 1024 * 1024;
// Short, so tags go stale within a test (the upstream-down pulls must be served stale).
const TAG_TTL_MS = 2000;
const ALICE = { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };

interface TimedGet {
  status: number;
  /** From the request to the first body byte. */
  firstByteMs: number;
  bytes: number;
  digest: string;
  /** Set when the body broke off (the response was aborted, not ended). */
  error?: Error;
}

/** GET a blob, hashing it as it streams; a broken-off body is reported, not thrown. */
async function timedGet(url: string, onBytes?: (received: number) => void): Promise<TimedGet> {
  const started = performance.now();
  const response = await request(url);
  const hash = createHash('sha256');
  let bytes = 0;
  let firstByteMs = Number.NaN;
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (bytes === 0) firstByteMs = performance.now() - started;
      bytes += chunk.byteLength;
      hash.update(chunk);
      onBytes?.(bytes);
    }
  } catch (error) {
    return { status: response.statusCode, firstByteMs, bytes, digest: '', error: error as Error };
  }
  return { status: response.statusCode, firstByteMs, bytes, digest: `sha256:${hash.digest('hex')}` };
}

async function metrics(replica: LongshoreHandle): Promise<string> {
  const response = await request(`${replica.url}/metrics`);
  return response.body.text();
}

async function sumOverReplicas(cluster: ClusterHandle, name: string, labels: Record<string, string> = {}): Promise<number> {
  let total = 0;
  for (const replica of cluster.replicas) if (replica.process) total += metricValue(await metrics(replica), name, labels);
  return total;
}

function blobKey(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
}

void describe('three replicas, one cache', () => {
  let work: TempDir;
  let upstream: RegistryHandle;
  let proxy: CountingProxy;
  let cluster: ClusterHandle;

  before(async () => {
    work = await makeTempDir('cluster');
    upstream = await startRegistry();
    proxy = await startCountingProxy(upstream.url);
    const htpasswd = path.join(work.path, 'htpasswd');
    await writeHtpasswd(htpasswd, { alice: 'wonderland' });
    cluster = await startCluster({
      replicas: 3,
      config: { private: { namespaces: ['corp'] }, auth: { htpasswd }, upstreams: [{ name: 'hub', url: proxy.url, default: true, tagTtl: TAG_TTL_MS }] },
    });
  });
  after(async () => {
    await cluster?.dispose();
    await proxy?.close();
    await upstream?.dispose();
    await work?.remove();
    await disposeSharedSwift();
  });

  async function pushRandomBlob(repo: string, size: number): Promise<{ digest: string; bytes: Buffer }> {
    const bytes = randomBytes(size);
    const digest = sha256Digest(bytes);
    await uploadBlob(upstream.url, repo, digest, bytes);
    return { digest, bytes };
  }

  it('16 concurrent cold GETs round-robin over 3 replicas: 1 upstream GET, one peer stream per follower replica that its clients share, live as bytes land, then every replica serves it from the bucket', async (t) => {
    const size = 16 * MiB;
    const { digest } = await pushRandomBlob('lib/cold', size);
    proxy.reset();
    // Slow enough that a first byte that waited for the end would be seen: ~8 s of transfer.
    // Long enough that the fixed cost of a first byte on a loaded 2-core box (Swift, Redis and
    // the peer hop, ~2 s at load 30) stays well under a quarter of it.
    proxy.setThrottle(2 * MiB);
    const followsBefore = await sumOverReplicas(cluster, 'longshore_peer_follows_total', { result: 'completed' });
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 16 }, () => timedGet(`${cluster.next()}/v2/lib/cold/blobs/${digest}`)));
    const transferMs = performance.now() - started;
    proxy.setThrottle(undefined);

    for (const [i, result] of results.entries()) {
      assert.equal(result.error, undefined, `client ${i}: ${result.error?.message}`);
      assert.equal(result.status, 200, `client ${i}`);
      assert.equal(result.bytes, size, `client ${i}`);
      assert.equal(result.digest, digest, `client ${i}`);
    }
    const blobGets = new RegExp(`/blobs/${digest}$`);
    assert.equal(proxy.count('GET', blobGets), 1, 'one upstream GET for the whole cluster');
    const slowestFirstByte = Math.max(...results.map((result) => result.firstByteMs));
    t.diagnostic(`16 cold GETs over 3 replicas: transfer ${transferMs.toFixed(0)} ms, slowest first byte ${slowestFirstByte.toFixed(0)} ms`);
    assert.ok(slowestFirstByte < transferMs / 4, `slowest first byte ${slowestFirstByte.toFixed(0)} ms, transfer ${transferMs.toFixed(0)} ms`);
    // Two of three replicas took their clients' bytes from the leader, one peer stream each that
    // all their clients share (one per client, before: 10 or 11 here).
    const follows = (await sumOverReplicas(cluster, 'longshore_peer_follows_total', { result: 'completed' })) - followsBefore;
    assert.equal(follows, 2, 'one follow of the leader per follower replica');
    assert.equal(await sumOverReplicas(cluster, 'longshore_peer_follows_total', { result: 'failed' }), 0);

    // Clients get their last byte once the digest is verified; the upload to the bucket completes after.
    await Promise.all(cluster.replicas.map((replica) => fetchesSettled(replica.url)));
    for (const replica of cluster.replicas) {
      const hit = await timedGet(`${replica.url}/v2/lib/cold/blobs/${digest}`);
      assert.equal(hit.digest, digest, replica.url);
    }
    assert.equal(proxy.count('GET', blobGets), 1, 'committed: every replica serves it from the bucket');
  });

  it('skopeo pulls an image through each replica with no extra upstream GETs', async () => {
    const image = await pushDockerImage(upstream.url, 'lib/app', 'v1', [700_000, 300_000]);
    proxy.reset();
    for (const [i, replica] of cluster.replicas.entries()) {
      const out = path.join(work.path, `pull-${i}`);
      await skopeo(['copy', '--src-tls-verify=false', `docker://${new URL(replica.url).host}/lib/app:v1`, `dir:${out}`]);
      assert.equal(sha256Digest(await readFile(path.join(out, 'manifest.json'))), image.manifestDigest, replica.url);
      for (const layer of image.layers) assert.equal(sha256Digest(await readFile(path.join(out, layer.digest.slice('sha256:'.length)))), layer.digest);
    }
    for (const digest of [image.configDigest, ...image.layers.map((layer) => layer.digest)]) {
      assert.equal(proxy.count('GET', new RegExp(`/blobs/${digest}$`)), 1, `${digest}: fetched once for the cluster`);
    }
  });

  it('a private image pushed through one replica pulls through the others', async () => {
    const layout = path.join(work.path, 'private-layout');
    const [image] = await makeOciLayout(layout, [{ tag: 'v1', layerSizes: [400_000] }]);
    assert.ok(image);
    const [pushVia, ...pullVia] = cluster.replicas as [LongshoreHandle, ...LongshoreHandle[]];
    await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `oci:${layout}:v1`, `docker://${new URL(pushVia.url).host}/corp/private:v1`]);
    for (const [i, replica] of pullVia.entries()) {
      const out = path.join(work.path, `private-pull-${i}`);
      await skopeo(['copy', '--src-tls-verify=false', '--src-creds', 'alice:wonderland', `docker://${new URL(replica.url).host}/corp/private:v1`, `dir:${out}`]);
      assert.equal(sha256Digest(await readFile(path.join(out, 'manifest.json'))), image.manifestDigest, replica.url);
      assert.equal(sha256Digest(await readFile(path.join(out, image.layers[0]!.digest.slice('sha256:'.length)))), image.layers[0]!.digest);
    }
  });

  it('a range asked of a follower replica while the leader fetches: 206 with the right bytes, from the leader, still one upstream GET', async () => {
    const size = 4 * MiB;
    const { digest, bytes } = await pushRandomBlob('lib/ranged', size);
    proxy.reset();
    proxy.setThrottle(2 * MiB);
    const [leader, follower] = cluster.replicas as [LongshoreHandle, LongshoreHandle];
    const blobGets = new RegExp(`/blobs/${digest}$`);
    const whole = timedGet(`${leader.url}/v2/lib/ranged/blobs/${digest}`);
    await pollUntil(() => Promise.resolve(proxy.requests.some((r) => blobGets.test(r.path) && r.bytesSent > 0)), { timeoutMs: 20_000, what: 'the leader receiving bytes' });
    const start = 1_000_000;
    const end = 1_099_999;
    const ranged = await request(`${follower.url}/v2/lib/ranged/blobs/${digest}`, { headers: { range: `bytes=${start}-${end}` } });
    const part = Buffer.from(await ranged.body.arrayBuffer());
    proxy.setThrottle(undefined);
    assert.equal(ranged.statusCode, 206);
    assert.equal(ranged.headers['content-range'], `bytes ${start}-${end}/${size}`);
    assert.ok(part.equals(bytes.subarray(start, end + 1)), 'the bytes of the range');
    assert.equal((await whole).digest, digest);
    assert.equal(proxy.count('GET', blobGets), 1);
  });

  it('peer requests need the cluster token: 401 in the v2 error envelope without it or with a wrong one', async () => {
    const replica = cluster.replicas[0] as LongshoreHandle;
    for (const headers of [{}, { authorization: 'LongshorePeer not-the-token' }, { authorization: `Bearer ${cluster.secret}` }]) {
      const response = await request(`${replica.url}/_longshore/peer/fetches/${encodeURIComponent(`sha256:${'a'.repeat(64)}`)}`, { headers });
      assert.equal(response.statusCode, 401, JSON.stringify(headers));
      const body = (await response.body.json()) as { errors: Array<{ code: string }> };
      assert.equal(body.errors[0]?.code, 'UNAUTHORIZED');
    }
  });

  it('one upstream request per tag per tagTtl cluster-wide: concurrent refreshes on the three replicas make one HEAD, and a replica refreshed by another does not ask again', async () => {
    const image = await pushDockerImage(upstream.url, 'lib/fresh', 'v1', [10_000]);
    proxy.reset();
    const pull = async (replica: LongshoreHandle) => {
      const response = await request(`${replica.url}/v2/lib/fresh/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
      const body = Buffer.from(await response.body.arrayBuffer());
      assert.equal(response.statusCode, 200, body.toString());
      assert.equal(sha256Digest(body), image.manifestDigest);
    };
    const tagRequests = (method: string) => proxy.count(method, /\/lib\/fresh\/manifests\/v1$/);
    // Every refresh of a round is over by its end: waiting a TTL from then passes every checkedAt.
    const pastTtl = (roundEnded: number) => new Promise((resolve) => setTimeout(resolve, roundEnded + TAG_TTL_MS + 50 - Date.now()));
    const replicas = cluster.replicas;

    for (const replica of replicas) await pull(replica);
    assert.equal(tagRequests('GET'), 1, 'the first pull fetched it; the other replicas read it from the bucket');
    assert.equal(tagRequests('HEAD'), 0);
    await pastTtl(Date.now());
    const started = Date.now();
    await Promise.all(Array.from({ length: 9 }, (_, i) => pull(replicas[i % replicas.length] as LongshoreHandle)));
    assert.ok(Date.now() - started < TAG_TTL_MS, 'the round ended within one TTL');
    assert.equal(tagRequests('HEAD'), 1, 'nine concurrent pulls past the TTL on three replicas: one HEAD');
    await pastTtl(Date.now());
    for (const replica of replicas) await pull(replica);
    assert.equal(tagRequests('HEAD'), 2, 'one after the other: the second and third replica take the refresh of the first');
    assert.equal(tagRequests('GET'), 1);
  });

  it('kill -9 of the leader mid-stream: followers on other replicas complete by taking over once its lease lapsed (seconds), with one fresh upstream GET; the next request gets the blob; nothing partial is stored', async (t) => {
    const size = 8 * MiB;
    const { digest } = await pushRandomBlob('lib/doomed', size);
    proxy.reset();
    proxy.setThrottle(2 * MiB);
    const [leader, ...others] = cluster.replicas as [LongshoreHandle, ...LongshoreHandle[]];
    const url = (replica: LongshoreHandle) => `${replica.url}/v2/lib/doomed/blobs/${digest}`;
    const blobGets = new RegExp(`/blobs/${digest}$`);
    const leading = timedGet(url(leader));
    await pollUntil(() => Promise.resolve(proxy.requests.some((r) => blobGets.test(r.path) && r.bytesSent > 0)), { timeoutMs: 20_000, what: 'the leader receiving bytes' });
    const received = others.map(() => 0);
    const following = others.map((replica, i) =>
      timedGet(url(replica), (bytes) => {
        received[i] = bytes;
      }),
    );
    await pollUntil(() => Promise.resolve(received.every((bytes) => bytes > 0)), { timeoutMs: 20_000, what: 'both followers receiving bytes from the leader' });

    const takeoversBefore = await sumOverReplicas(cluster, 'longshore_fetch_lease_takeovers_total');
    const receivedAtKill = [...received];
    await leader.kill9();
    const killedAt = performance.now();
    const s3 = (await sharedSwift()).client();
    try {
      // Looked at before the lease can lapse (≥ 3 s: renewed every 5/3 s), so before a takeover.
      await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: cluster.bucket, Key: blobKey(digest) })), 'nothing of the broken fetch is stored');
      const [lost, ...followed] = await Promise.all([leading, ...following]);
      const doneMs = performance.now() - killedAt;
      assert.ok(lost?.error, "the killed leader's own client was cut off");
      for (const [i, result] of followed.entries()) {
        // Completed by the takeover: whole and right (a clean short end would be the bug).
        assert.equal(result.error, undefined, `follower ${i}: ${result.error?.message}`);
        assert.equal(result.digest, digest, `follower ${i}`);
        assert.ok((receivedAtKill[i] ?? 0) < size, `follower ${i} was mid-stream at the kill`);
      }
      t.diagnostic(`followers completed ${doneMs.toFixed(0)} ms after the kill`);
      assert.ok(doneMs < 20_000, `followers completed ${doneMs.toFixed(0)} ms after the kill`);
      assert.equal(proxy.count('GET', blobGets), 2, 'fetched afresh from the upstream once, for both followers');
      assert.equal((await sumOverReplicas(cluster, 'longshore_fetch_lease_takeovers_total')) - takeoversBefore, 1, 'one replica took the fetch over');
      proxy.setThrottle(undefined);
      const next = await timedGet(url(others[1] as LongshoreHandle));
      assert.equal(next.digest, digest, 'the next request gets the whole blob');
      assert.equal(proxy.count('GET', blobGets), 2);
      await Promise.all(others.map((replica) => fetchesSettled(replica.url))); // the taker-over's upload
      const stored = await s3.send(new GetObjectCommand({ Bucket: cluster.bucket, Key: blobKey(digest) }));
      assert.equal(sha256Digest(Buffer.from(await stored.Body!.transformToByteArray())), digest, 'what is stored is the verified blob');
    } finally {
      s3.destroy();
    }
  });

  it('a replica whose scratch directory is full, leading or following a fetch: every client of every replica gets the whole blob, never a hang or a short body, and a replica with room stores it', async (t) => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs as a full scratch directory and must run as root (mount -t tmpfs)');
    const [small, ...others] = cluster.replicas as [LongshoreHandle, ...LongshoreHandle[]];
    // Replica 0 (killed by the previous test) comes back on a 2 MiB tmpfs: no room for a 6 MiB blob.
    await small.stop();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small.dataDir]);
    try {
      await small.start();
      const size = 6 * MiB;
      const { digest } = await pushRandomBlob('lib/roomless', size);
      proxy.reset();
      proxy.setThrottle(4 * MiB);
      const url = (replica: LongshoreHandle) => `${replica.url}/v2/lib/roomless/blobs/${digest}`;
      // Two clients per replica, the full one first: whichever leads, the others wait on it.
      const replicas = [small, ...others];
      const started = performance.now();
      const results = await Promise.all([...replicas, ...replicas].map((replica) => timedGet(url(replica))));
      const wallMs = performance.now() - started;
      proxy.setThrottle(undefined);
      for (const [i, result] of results.entries()) {
        assert.equal(result.error, undefined, `client ${i}: ${result.error?.message}`);
        assert.equal(result.status, 200, `client ${i}`);
        assert.equal(result.digest, digest, `client ${i}: whole and right`);
      }
      const upstreamGets = proxy.count('GET', new RegExp(`/blobs/${digest}$`));
      t.diagnostic(`6 clients, one replica with no room: ${wallMs.toFixed(0)} ms, ${upstreamGets} upstream GETs`);
      assert.ok(wallMs < 60_000, `done in ${wallMs.toFixed(0)} ms`);
      await Promise.all(others.map((replica) => fetchesSettled(replica.url)));
      const s3 = (await sharedSwift()).client();
      try {
        const stored = await s3.send(new GetObjectCommand({ Bucket: cluster.bucket, Key: blobKey(digest) }));
        assert.equal(sha256Digest(Buffer.from(await stored.Body!.transformToByteArray())), digest, 'a replica with room stored the verified blob');
      } finally {
        s3.destroy();
      }
    } finally {
      await small.stop();
      execFileSync('umount', ['-l', small.dataDir]);
    }
  });

  /** Pulls `image` by `ref` through `replica` over HTTP: the manifest and every blob, checked by digest. */
  async function pullImage(replicaUrl: string, repository: string, ref: string, image: GeneratedImage, headers: Record<string, string> = {}): Promise<void> {
    const manifest = await request(`${replicaUrl}/v2/${repository}/manifests/${ref}`, { headers: { ...headers, accept: MANIFEST_ACCEPT } });
    const bytes = Buffer.from(await manifest.body.arrayBuffer());
    assert.equal(manifest.statusCode, 200, `${repository}:${ref} through ${replicaUrl}: ${bytes.toString().slice(0, 300)}`);
    assert.equal(sha256Digest(bytes), image.manifestDigest, `${repository}:${ref} through ${replicaUrl}`);
    for (const digest of [image.configDigest, ...image.layers.map((layer) => layer.digest)]) {
      const blob = await request(`${replicaUrl}/v2/${repository}/blobs/${digest}`, { headers });
      const body = Buffer.from(await blob.body.arrayBuffer());
      assert.equal(blob.statusCode, 200, `${repository}@${digest} through ${replicaUrl}: ${body.toString().slice(0, 300)}`);
      assert.equal(sha256Digest(body), digest, `${repository}@${digest} through ${replicaUrl}`);
    }
  }

  async function coordinationConnected(replica: LongshoreHandle): Promise<number> {
    return metricValue(await metrics(replica), 'longshore_coordination_connected', { mode: 'redis' });
  }

  it('lose Redis, lose nothing: with Redis stopped replicas serve from the bucket and fetch misses uncoordinated (counted, logged); an empty Redis back, they coordinate again; Redis flushed and every replica restarted on an empty scratch directory with the upstream down, everything pulled or pushed before (v2, v1, stale tags) still pulls', async (t) => {
    const replicas = cluster.replicas;
    const began = performance.now();
    const phase = (what: string) => t.diagnostic(`${what}: ${((performance.now() - began) / 1000).toFixed(1)} s`);
    // The previous test killed a replica: back at its address, so all three take part.
    for (const [i, replica] of replicas.entries()) if (!replica.process) await cluster.restart(i);

    // Pulled through each replica in turn (round-robin); pushed through another; a v1 push.
    const mirrored = await pushDockerImage(upstream.url, 'lib/kept', 'v1', [300_000]);
    for (let i = 0; i < replicas.length; i += 1) await pullImage(cluster.next(), 'lib/kept', 'v1', mirrored);
    const pushed = await pushDockerImage(cluster.next(), 'corp/own', 'v1', [250_000], { headers: ALICE });
    for (let i = 0; i < replicas.length; i += 1) await pullImage(cluster.next(), 'corp/own', 'v1', pushed, ALICE);
    const v1Images = await v1Chain('lose-redis', ['a', 'b']);
    const v1Tags = { latest: v1Images[1]!.id };
    const v1User = { username: 'alice', password: 'wonderland' };
    await new V1Client(cluster.next(), v1User).push('corp/legacy', v1Images, v1Tags);
    const pullV1 = async (replicaUrl: string) => {
      const pulled = await new V1Client(replicaUrl, v1User).pull('corp/legacy', 'latest');
      assert.deepEqual(pulled.tags, v1Tags);
      for (const image of v1Images) {
        const got = pulled.images.get(image.id);
        assert.ok(got?.json.equals(image.json) && got.layer.equals(image.layer), `v1 image ${image.id} through ${replicaUrl}`);
      }
    };
    await pullV1(cluster.next());

    phase('pulled and pushed');
    // Redis gone: hits come from the bucket, a miss is fetched uncoordinated (counted, logged).
    await cluster.redis.stop();
    for (const replica of replicas) {
      await pollUntil(async () => (await coordinationConnected(replica)) === 0, { timeoutMs: 10_000, what: `${replica.url} seeing Redis gone` });
    }
    for (const replica of replicas) {
      await pullImage(replica.url, 'lib/kept', 'v1', mirrored);
      await pullImage(replica.url, 'corp/own', 'v1', pushed, ALICE);
    }
    const duringOutage = await pushDockerImage(upstream.url, 'lib/kept', 'v2', [200_000]);
    const missedOn = replicas[2] as LongshoreHandle;
    await pullImage(missedOn.url, 'lib/kept', 'v2', duringOutage);
    assert.ok(metricValue(await metrics(missedOn), 'longshore_coordination_uncoordinated_total', { port: 'leases' }) >= 1, 'the uncoordinated fetch is counted');
    assert.ok(
      missedOn.logs.some((line) => line.level === 40 && String(line.msg).startsWith('Redis unreachable')),
      'and logged',
    );

    phase('served during the outage');
    // An empty Redis in its place: the replicas coordinate again.
    await cluster.redis.start();
    for (const replica of replicas) {
      await pollUntil(async () => (await coordinationConnected(replica)) === 1, { timeoutMs: 15_000, what: `${replica.url} seeing Redis back` });
    }

    phase('Redis back');
    // Redis flushed, the upstream down, every replica restarted on an empty scratch directory.
    // Replicas are stopped before the flush: a running one writes to Redis at any moment
    // (counters, leases), which made the emptiness check below race with it.
    await Promise.all(replicas.map((replica) => replica.stop()));
    const redis = createClient({ url: cluster.redis.url });
    await redis.connect();
    await redis.flushAll();
    assert.equal(await redis.dbSize(), 0);
    redis.destroy();
    await upstream.stop();
    await Promise.all(replicas.map((_, i) => cluster.restart(i, { emptyScratch: true })));
    phase('restarted on empty scratch');
    await new Promise((resolve) => setTimeout(resolve, TAG_TTL_MS)); // every tag is stale now
    proxy.reset();
    for (const replica of replicas) {
      await pullImage(replica.url, 'lib/kept', 'v1', mirrored);
      await pullImage(replica.url, 'lib/kept', 'v2', duringOutage);
      await pullImage(replica.url, 'corp/own', 'v1', pushed, ALICE);
      await pullImage(replica.url, 'corp/own', pushed.manifestDigest, pushed, ALICE);
      await pullV1(replica.url);
    }
    phase('everything pulled again');
    assert.ok(
      replicas.some((replica) => replica.logs.some((line) => line.msg === 'upstream failed; serving stale')),
      'the mirrored tags were served stale',
    );
    assert.deepEqual(
      proxy.upstreamFailures.filter((failure) => /\/blobs\//.test(failure.path)),
      [],
      'no blob asked of the (down) upstream: every one came from the bucket',
    );
    assert.ok(proxy.upstreamFailures.length > 0, 'the stale tags did ask the upstream, which was down');
    for (const replica of replicas) assert.equal(await coordinationConnected(replica), 1, replica.url);
    await upstream.start();
  });

  it('a chunked upload opened on one replica continues on the others, chunk by chunk, and the blob is pushed; its holder stopped, another replica reports the session unknown', async () => {
    const [a, b, c] = cluster.replicas as [LongshoreHandle, LongshoreHandle, LongshoreHandle];
    const blob = randomBytes(300 * 1024);
    const chunks = [blob.subarray(0, 100 * 1024), blob.subarray(100 * 1024, 250 * 1024), blob.subarray(250 * 1024)];
    const opened = await request(`${a.url}/v2/corp/chunked/blobs/uploads/`, { method: 'POST', headers: { ...ALICE, 'content-length': '0' } });
    await opened.body.dump();
    assert.equal(opened.statusCode, 202);
    let location = String(opened.headers.location);
    let offset = 0;
    for (const [index, replica] of [b, c, a].entries()) {
      const chunk = chunks[index]!;
      const patched = await request(new URL(location, replica.url), {
        method: 'PATCH',
        headers: { ...ALICE, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}`, 'content-length': String(chunk.length) },
        body: chunk,
      });
      const text = await patched.body.text();
      assert.equal(patched.statusCode, 202, `chunk ${index} through ${replica.url}: ${text}`);
      offset += chunk.length;
      assert.equal(patched.headers.range, `0-${offset - 1}`);
      location = String(patched.headers.location);
    }
    const status = await request(new URL(location, c.url), { headers: ALICE });
    await status.body.dump();
    assert.equal(status.statusCode, 204);
    assert.equal(status.headers.range, `0-${blob.length - 1}`, "the status, asked of another replica, is the holder's");
    const closing = new URL(location, b.url);
    closing.searchParams.set('digest', sha256Digest(blob));
    const closed = await request(closing, { method: 'PUT', headers: { ...ALICE, 'content-length': '0' } });
    assert.equal(closed.statusCode, 201, await closed.body.text());
    for (const replica of cluster.replicas) {
      const pulled = await request(`${replica.url}/v2/corp/chunked/blobs/${sha256Digest(blob)}`, { headers: ALICE });
      assert.equal(pulled.statusCode, 200);
      assert.ok(Buffer.from(await pulled.body.arrayBuffer()).equals(blob), replica.url);
    }

    // A session whose holder stopped: another replica says so in the v2 error format.
    const orphan = await request(`${c.url}/v2/corp/chunked/blobs/uploads/`, { method: 'POST', headers: { ...ALICE, 'content-length': '0' } });
    await orphan.body.dump();
    await c.stop();
    const lost = await request(new URL(String(orphan.headers.location), a.url), { headers: ALICE });
    const body = (await lost.body.json()) as { errors: Array<{ code: string }> };
    assert.equal(lost.statusCode, 404);
    assert.equal(body.errors[0]?.code, 'BLOB_UPLOAD_UNKNOWN');
  });
});
