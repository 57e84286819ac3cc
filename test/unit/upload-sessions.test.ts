// Upload session bounds (issue 14, point 3): counted per owner and in total, before any await,
// so concurrent starts never overshoot; every way a session ends gives its slot back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestOf } from '../../src/protocol/digest.js';
import { RegistryError } from '../../src/protocol/errors.js';
import { UploadSessions } from '../../src/registry/uploads.js';
import { fsStorage } from '../support/stores.js';

async function sessions(limits: { maxSessions: number; maxSessionsPerUser: number }) {
  const { blobs } = await fsStorage();
  let clock = 0;
  const uploads = new UploadSessions(blobs, 1000, { limits, now: () => clock });
  return { uploads, advance: (ms: number) => (clock += ms) };
}

function isTooMany(error: unknown): boolean {
  return error instanceof RegistryError && error.code === 'TOOMANYREQUESTS' && error.status === 429 && error.headers['retry-after'] === '10';
}

test('concurrent starts never overshoot the bounds', async () => {
  const { uploads } = await sessions({ maxSessions: 3, maxSessionsPerUser: 2 });
  const results = await Promise.allSettled([...Array.from({ length: 4 }, () => uploads.start('corp/a', 'alice')), ...Array.from({ length: 4 }, () => uploads.start('corp/a', 'bob'))]);
  const started = results.filter((r) => r.status === 'fulfilled');
  assert.equal(started.length, 3);
  for (const r of results) if (r.status === 'rejected') assert.ok(isTooMany(r.reason), String(r.reason));
  assert.equal(uploads.count, 3);
  await uploads.close();
});

test('every way a session ends gives its slot back: finish, a bad digest, cancel, a size mismatch, the idle sweep', async () => {
  const { uploads, advance } = await sessions({ maxSessions: 10, maxSessionsPerUser: 1 });
  const bytes = randomBytes(1000);
  const endings: Array<(id: string) => Promise<unknown>> = [
    (id) => uploads.append('corp/a', id, Readable.from([bytes])).then(() => uploads.finish('corp/a', id, digestOf(bytes))),
    (id) => uploads.append('corp/a', id, Readable.from([bytes])).then(() => uploads.finish('corp/a', id, `sha256:${'0'.repeat(64)}`)).catch(() => undefined),
    (id) => uploads.cancel('corp/a', id),
    (id) => uploads.append('corp/a', id, Readable.from([bytes]), undefined, 5).catch(() => undefined),
    async () => {
      advance(2000);
      assert.equal(await uploads.sweep(), 1);
    },
  ];
  for (const end of endings) {
    const { id } = await uploads.start('corp/a', 'alice');
    await assert.rejects(uploads.start('corp/a', 'alice'), isTooMany);
    await end(id);
    assert.equal(uploads.count, 0);
  }
  await uploads.start('corp/a', 'alice');
  await uploads.close();
});

test('a store that refuses writes (ENOSPC) makes a push a 507 in the OCI envelope, and frees the session', async () => {
  const { blobs } = await fsStorage();
  const full = Object.assign(Object.create(blobs) as typeof blobs, {
    createWriter: async (...args: Parameters<typeof blobs.createWriter>) => {
      const writer = await blobs.createWriter(...args);
      return Object.assign(Object.create(writer) as typeof writer, {
        write: () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })),
        abort: () => writer.abort(),
        close: () => writer.close(),
        suspend: () => writer.suspend?.() ?? Promise.resolve(),
      });
    },
  });
  const uploads = new UploadSessions(full, 1000, { limits: { maxSessions: 1, maxSessionsPerUser: 1 } });
  const { id } = await uploads.start('corp/a', 'alice');
  const error = await uploads.append('corp/a', id, Readable.from([randomBytes(100)])).catch((e: unknown) => e);
  assert.ok(error instanceof RegistryError, String(error));
  assert.equal(error.status, 507);
  assert.match(error.message, /ENOSPC/);
  assert.equal(uploads.count, 0);
  await uploads.start('corp/a', 'alice');
  await uploads.close();
});
