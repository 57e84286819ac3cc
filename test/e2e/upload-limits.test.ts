// Upload sessions cannot exhaust the server (issue 14, point 3): sessions are bounded per user
// and in total (429 TOOMANYREQUESTS + Retry-After), an idle session holds no file descriptor,
// a chunk whose sender stalls drops its session, and a single-POST upload with a bad digest
// leaves nothing behind. Pulls of cached content keep working while pushes hold every slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Agent, request, setGlobalDispatcher } from 'undici';
import { sha256Digest } from '../harness/digests.js';
import { uploadBlob } from '../harness/registry-client.js';
import { startRegistry } from '../harness/registry.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess, type InProcessLongshore } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { disposeSharedSwift, s3StorageConfig, sharedSwift } from '../harness/swift.js';

// One test sets http.bodyIdleTimeout to 1 s, which also closes idle keep-alive connections:
// never reuse one that idled longer than that (a race with the server's close, not the point).
setGlobalDispatcher(new Agent({ keepAliveTimeout: 200, keepAliveMaxTimeout: 200 }));

const ALICE = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
const BOB = `Basic ${Buffer.from('bob:builder').toString('base64')}`;

interface Setup {
  mirror: InProcessLongshore;
  /** A mirrored blob already in the cache (pulled once through the mirror). */
  cached: { repository: string; digest: string; bytes: Buffer };
}

/** A mirror of a real registry with users alice and bob and one cached mirrored blob. */
async function setUp(t: test.TestContext, config: Record<string, unknown>): Promise<Setup> {
  const work = await makeTempDir('upload-limits');
  onCleanup(t, () => work.remove());
  const upstream = await startRegistry();
  onCleanup(t, () => upstream.dispose());
  const bytes = randomBytes(300_000);
  const digest = sha256Digest(bytes);
  await uploadBlob(upstream.url, 'library/base', digest, bytes);
  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland', bob: 'builder' });
  const mirror = await startInProcess({
    private: { namespaces: ['corp'] },
    auth: { htpasswd },
    upstreams: [{ name: 'hub', url: upstream.url, default: true }],
    ...config,
  });
  onCleanup(t, () => mirror.stop());
  const cached = { repository: 'library/base', digest, bytes };
  const first = await pull(mirror, cached);
  assert.equal(first.status, 200);
  return { mirror, cached };
}

async function pull(mirror: InProcessLongshore, blob: Setup['cached']): Promise<{ status: number; same: boolean }> {
  const response = await request(`${mirror.url}/v2/${blob.repository}/blobs/${blob.digest}`);
  const body = Buffer.from(await response.body.arrayBuffer());
  return { status: response.statusCode, same: body.equals(blob.bytes) };
}

async function startUpload(mirror: InProcessLongshore, authorization: string, query = '', body?: Buffer) {
  const response = await request(`${mirror.url}/v2/corp/app/blobs/uploads/${query}`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/octet-stream', 'content-length': String(body?.byteLength ?? 0) },
    ...(body ? { body } : {}),
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, json: text ? (JSON.parse(text) as { errors?: Array<{ code: string; message: string }> }) : undefined };
}

async function readyz(mirror: InProcessLongshore): Promise<number> {
  const response = await request(`${mirror.url}/readyz`);
  await response.body.dump();
  return response.statusCode;
}

async function stagedFiles(mirror: InProcessLongshore): Promise<string[]> {
  return readdir(path.join(mirror.dataDir, 'tmp'));
}

async function openDescriptors(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

test('upload sessions are bounded per user and in total: 429 TOOMANYREQUESTS with Retry-After; a finished or cancelled session frees its slot', async (t) => {
  const { mirror, cached } = await setUp(t, { storage: { uploads: { maxSessionsPerUser: 2, maxSessions: 3 } } });
  const aliceSessions = [await startUpload(mirror, ALICE), await startUpload(mirror, ALICE)];
  for (const session of aliceSessions) assert.equal(session.status, 202);

  const overUser = await startUpload(mirror, ALICE);
  assert.equal(overUser.status, 429);
  assert.equal(overUser.headers['retry-after'], '10');
  assert.equal(overUser.json?.errors?.[0]?.code, 'TOOMANYREQUESTS');
  assert.match(overUser.json?.errors?.[0]?.message ?? '', /storage\.uploads\.maxSessionsPerUser/);

  assert.equal((await startUpload(mirror, BOB)).status, 202, 'bob has slots of his own');
  const overTotal = await startUpload(mirror, BOB);
  assert.equal(overTotal.status, 429);
  assert.equal(overTotal.json?.errors?.[0]?.code, 'TOOMANYREQUESTS');
  assert.match(overTotal.json?.errors?.[0]?.message ?? '', /storage\.uploads\.maxSessions\b/);

  // Pulls are not pushes: cached content and readiness are untouched by the bound.
  assert.deepEqual(await pull(mirror, cached), { status: 200, same: true });
  assert.equal(await readyz(mirror), 200);

  // Cancelling one of alice's sessions gives a slot back (to anyone: the total was the bound).
  const cancel = await request(`${mirror.url}${String(aliceSessions[0]?.headers.location)}`, { method: 'DELETE', headers: { authorization: ALICE } });
  assert.equal(cancel.statusCode, 204);
  await cancel.body.dump();
  assert.equal((await startUpload(mirror, BOB)).status, 202);

  // Finishing one does too.
  const blob = randomBytes(1000);
  const location = new URL(String(aliceSessions[1]?.headers.location), mirror.url);
  location.searchParams.set('digest', sha256Digest(blob));
  const put = await request(location, { method: 'PUT', headers: { authorization: ALICE, 'content-type': 'application/octet-stream' }, body: blob });
  assert.equal(put.statusCode, 201);
  await put.body.dump();
  assert.equal((await startUpload(mirror, ALICE)).status, 202);
});

test('idle upload sessions hold no file descriptor: with the bound reached, pulls of cached content and /readyz still work, and chunked uploads still complete', async (t) => {
  const sessions = 300;
  const { mirror, cached } = await setUp(t, { storage: { uploads: { maxSessionsPerUser: sessions, maxSessions: sessions } } });
  const before = await openDescriptors();
  const locations: string[] = [];
  for (let i = 0; i < sessions; i += 1) {
    const started = await startUpload(mirror, i % 2 === 0 ? ALICE : BOB);
    assert.equal(started.status, 202, `session ${i}: ${JSON.stringify(started.json)}`);
    locations.push(String(started.headers.location));
  }
  // One chunk into each of the first 50: a session that has received bytes is idle too.
  for (const location of locations.slice(0, 50)) {
    const patch = await request(`${mirror.url}${location}`, { method: 'PATCH', headers: { authorization: ALICE, 'content-type': 'application/octet-stream' }, body: randomBytes(10_000) });
    // Sessions belong to whoever may push the repository; the chunk goes in whoever sent it.
    assert.equal(patch.statusCode, 202);
    await patch.body.dump();
  }
  const grown = (await openDescriptors()) - before;
  assert.ok(grown < 30, `${sessions} idle upload sessions hold ${grown} more descriptors`);

  const refused = await startUpload(mirror, ALICE);
  assert.equal(refused.status, 429);

  const pulls = await Promise.all(Array.from({ length: 20 }, () => pull(mirror, cached)));
  for (const result of pulls) assert.deepEqual(result, { status: 200, same: true });
  assert.equal(await readyz(mirror), 200);

  // Reopening per chunk keeps the bytes and the hash whole: PATCH, PATCH, PUT.
  const blob = randomBytes(250_000);
  const location = locations[sessions - 1] as string;
  for (const [start, end] of [
    [0, 99_999],
    [100_000, 249_999],
  ] as const) {
    const patch = await request(`${mirror.url}${location}`, {
      method: 'PATCH',
      headers: { authorization: BOB, 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}` },
      body: blob.subarray(start, end + 1),
    });
    assert.equal(patch.statusCode, 202);
    await patch.body.dump();
  }
  const target = new URL(location, mirror.url);
  target.searchParams.set('digest', sha256Digest(blob));
  const put = await request(target, { method: 'PUT', headers: { authorization: BOB } });
  assert.equal(put.statusCode, 201, await put.body.text());
  const back = await request(`${mirror.url}/v2/corp/app/blobs/${sha256Digest(blob)}`, { headers: { authorization: BOB } });
  assert.ok(Buffer.from(await back.body.arrayBuffer()).equals(blob));
});

test('on the S3 driver too, idle upload sessions hold no file descriptor (the scratch file is given back between chunks, after its parts are sent)', async (t) => {
  onCleanup(t, () => disposeSharedSwift());
  const sessions = 120;
  const storage = { ...(await s3StorageConfig(await sharedSwift())), uploads: { maxSessionsPerUser: sessions, maxSessions: sessions } };
  const { mirror } = await setUp(t, { storage });
  const before = await openDescriptors();
  const locations: string[] = [];
  for (let i = 0; i < sessions; i += 1) {
    const started = await startUpload(mirror, ALICE);
    assert.equal(started.status, 202, `session ${i}: ${JSON.stringify(started.json)}`);
    locations.push(String(started.headers.location));
  }
  // Small chunks into some, and a chunk larger than an S3 part into a few: a part being sent
  // reads the scratch file, and the session is idle once the PATCH is answered all the same.
  const big = randomBytes(6 * 1024 * 1024);
  for (const [index, location] of locations.slice(0, 30).entries()) {
    const chunk = index < 3 ? big : randomBytes(10_000);
    const patch = await request(`${mirror.url}${location}`, { method: 'PATCH', headers: { authorization: ALICE, 'content-type': 'application/octet-stream' }, body: chunk });
    assert.equal(patch.statusCode, 202, await patch.body.text());
  }
  const grown = (await openDescriptors()) - before;
  assert.ok(grown < 30, `${sessions} idle upload sessions on S3 hold ${grown} more descriptors`);

  // The session that sent a whole part finishes whole: PATCH (done), PATCH, PUT, read back.
  const tail = randomBytes(100_000);
  const location = locations[0] as string;
  const patch = await request(`${mirror.url}${location}`, {
    method: 'PATCH',
    headers: { authorization: ALICE, 'content-type': 'application/octet-stream', 'content-range': `${big.byteLength}-${big.byteLength + tail.byteLength - 1}` },
    body: tail,
  });
  assert.equal(patch.statusCode, 202, await patch.body.text());
  const whole = Buffer.concat([big, tail]);
  const target = new URL(location, mirror.url);
  target.searchParams.set('digest', sha256Digest(whole));
  const put = await request(target, { method: 'PUT', headers: { authorization: ALICE } });
  assert.equal(put.statusCode, 201, await put.body.text());
  const back = await request(`${mirror.url}/v2/corp/app/blobs/${sha256Digest(whole)}`, { headers: { authorization: ALICE } });
  assert.ok(Buffer.from(await back.body.arrayBuffer()).equals(whole));
});

test('POST ?digest=<invalid> is a 400 DIGEST_INVALID and leaves no session behind', async (t) => {
  const { mirror } = await setUp(t, { storage: { uploads: { maxSessionsPerUser: 1, maxSessions: 1 } } });
  const blob = randomBytes(5000);
  for (const digest of ['sha256:zzz', 'nonsense', `sha256:${'0'.repeat(64)}`]) {
    const answer = await startUpload(mirror, ALICE, `?digest=${encodeURIComponent(digest)}`, blob);
    assert.equal(answer.status, 400, digest);
    assert.equal(answer.json?.errors?.[0]?.code, 'DIGEST_INVALID', digest);
  }
  assert.deepEqual(await stagedFiles(mirror), [], 'no temp file left');
  // The one slot is still free.
  assert.equal((await startUpload(mirror, ALICE)).status, 202);
});

test('a chunked PATCH whose sender stalls is dropped after http.bodyIdleTimeout: its session, temp file and slot are freed', async (t) => {
  const { mirror } = await setUp(t, { http: { bodyIdleTimeout: '1s' }, storage: { uploads: { maxSessionsPerUser: 1, maxSessions: 1 } } });
  const started = await startUpload(mirror, ALICE);
  assert.equal(started.status, 202);
  const location = String(started.headers.location);
  const { port } = new URL(mirror.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  onCleanup(t, () => socket.destroy());
  const closed = new Promise<number>((resolve) => {
    const at = Date.now();
    socket.on('close', () => resolve(Date.now() - at));
    socket.on('error', () => undefined);
  });
  socket.write(
    `PATCH ${location} HTTP/1.1\r\nHost: x\r\nAuthorization: ${ALICE}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `4000\r\n${'a'.repeat(0x4000)}\r\n`,
  );
  const closedAfterMs = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 8000))]);
  assert.ok(closedAfterMs >= 0, 'the stalled PATCH is still open after 8 s');
  assert.ok(closedAfterMs < 5000, `closed after ${closedAfterMs} ms`);
  await new Promise((resolve) => setTimeout(resolve, 200));

  const status = await request(`${mirror.url}${location}`, { headers: { authorization: ALICE } });
  assert.equal(status.statusCode, 404, 'the broken session is gone');
  await status.body.dump();
  assert.deepEqual(await stagedFiles(mirror), [], 'its temp file is gone');
  assert.equal((await startUpload(mirror, ALICE)).status, 202, 'its slot is free');
  const errors = mirror.logs.filter((line) => (line.level as number) >= 50);
  assert.deepEqual(errors, [], 'a stalled pusher is not a server error');
});
