// Logins as an attacker would use them (issue 14, points 1 and 9): bcrypt never blocks the
// event loop, the queue of verifications is bounded, failed logins are limited per address
// and per name, unknown names cost what real ones cost, and a users file that goes bad at run
// time keeps the last good users.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import bcrypt from 'bcryptjs';
import { BcryptPool } from '../../src/auth/bcrypt-pool.js';
import { HtpasswdUsers } from '../../src/auth/htpasswd.js';
import { LoginLimiter } from '../../src/auth/login-limiter.js';
import { RegistryError } from '../../src/protocol/errors.js';
import { makeTempDir } from '../harness/tmp.js';
import { writeHtpasswd } from '../support/users.js';

async function usersFile(t: { after(fn: () => Promise<void>): void }, users: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('htpasswd');
  t.after(() => dir.remove());
  const file = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(file, users);
  return file;
}

test('bcrypt runs off the event loop: 12 cost-10 checks leave it idle most of the time', async (t) => {
  // A cost-10 entry (~50 ms of CPU each) as the v1 sign-up writes them.
  const file = await usersFile(t, {});
  await writeFile(file, `alice:${bcrypt.hashSync('right-password', 10).replace(/^\$2b\$/, '$2y$')}\n`);
  const users = new HtpasswdUsers(file, { pool: new BcryptPool({ workers: 1, queue: 64 }) });
  t.after(() => users.close());
  await users.refresh();
  assert.equal(await users.verify('alice', 'warm-up-wrong'), false); // thread started
  // Event-loop utilisation: the share of time the loop was busy rather than waiting for
  // events. Unlike a delay measure it does not count time the machine gave to other work.
  const before = performance.eventLoopUtilization();
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => users.verify(i % 2 ? 'alice' : `ghost${i}`, `guess-${i}`)));
  const busy = performance.eventLoopUtilization(before);
  assert.deepEqual(results, Array<boolean>(12).fill(false));
  // On the event loop, 12 x ~50 ms of bcrypt keep it busy nearly all the time (~1.0).
  assert.ok(busy.utilization < 0.3, `event loop busy ${(busy.utilization * 100).toFixed(0)}% of ${busy.idle + busy.active} ms while verifying`);
});

test('the verification queue is bounded: past it, logins are refused with 429 at once', async (t) => {
  const file = await usersFile(t, { alice: 'right-password' });
  const users = new HtpasswdUsers(file, { pool: new BcryptPool({ workers: 1, queue: 2 }) });
  t.after(() => users.close());
  await users.refresh();
  const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => users.verify('alice', `wrong-${i}`)));
  const refused = outcomes.filter((o) => o.status === 'rejected');
  assert.ok(refused.length >= 4, `expected most of 8 concurrent checks refused, got ${refused.length}`);
  for (const outcome of refused) {
    const error = (outcome).reason as RegistryError;
    assert.ok(error instanceof RegistryError);
    assert.equal(error.status, 429);
    assert.equal(error.headers['retry-after'], '1');
  }
  assert.equal(await users.verify('alice', 'right-password'), true, 'the queue drains and logins work again');
});

test('failed logins are limited per user name, with Retry-After until the window ends', async (t) => {
  const file = await usersFile(t, { alice: 'right-password' });
  let clock = 1_000_000;
  const users = new HtpasswdUsers(file, { now: () => clock, limiter: new LoginLimiter({ perAddress: 0, perUser: 3, windowMs: 60_000 }, () => clock) });
  t.after(() => users.close());
  await users.refresh();
  for (let i = 0; i < 3; i++) assert.equal(await users.verify('alice', `wrong-${i}`), false);
  await assert.rejects(users.verify('alice', 'right-password'), (error: RegistryError) => {
    assert.equal(error.status, 429);
    assert.equal(error.code, 'TOOMANYREQUESTS');
    assert.equal(error.headers['retry-after'], '60');
    return true;
  });
  clock += 45_000;
  await assert.rejects(users.verify('alice', 'right-password'), (error: RegistryError) => error.headers['retry-after'] === '15');
  clock += 15_000;
  assert.equal(await users.verify('alice', 'right-password'), true, 'the window is over');
});

test('failed logins are limited per client address, whatever names it tries', async (t) => {
  const file = await usersFile(t, { alice: 'right-password' });
  const users = new HtpasswdUsers(file, { limiter: new LoginLimiter({ perAddress: 4, perUser: 0, windowMs: 60_000 }) });
  t.after(() => users.close());
  await users.refresh();
  for (let i = 0; i < 4; i++) assert.equal(await users.verify(`name${i}`, 'guess', '10.0.0.1'), false);
  await assert.rejects(
    users.verify('alice', 'right-password', '10.0.0.1'),
    (error: RegistryError) => error.status === 429,
  );
  assert.equal(await users.verify('alice', 'right-password', '10.0.0.2'), true, 'another address is not affected');
});

test('an unknown user costs the same bcrypt work as a real entry: the dummy hash has the entries\' cost', async (t) => {
  // htpasswd -B writes cost 5; the dummy used to be cost 10 (2 ms vs 52 ms: names could be enumerated).
  const file = await usersFile(t, { alice: 'right-password', bob: 'builder-pw' });
  const compared: string[] = [];
  const pool = new BcryptPool({ workers: 1, queue: 8 });
  const recording = Object.assign(Object.create(pool) as BcryptPool, {
    compare: (password: string, hash: string) => {
      compared.push(hash);
      return pool.compare(password, hash);
    },
  });
  const users = new HtpasswdUsers(file, { pool: recording });
  t.after(() => users.close());
  await users.refresh();
  assert.equal(await users.verify('alice', 'wrong'), false);
  assert.equal(await users.verify('nobody', 'wrong'), false);
  const [real, dummy] = compared;
  assert.ok(real && dummy);
  assert.equal(real.slice(0, 7), '$2b$05$', 'htpasswd -B entries are cost 5');
  assert.equal(dummy.slice(4, 7), real.slice(4, 7), 'the dummy hash has the same cost');
  assert.notEqual(dummy, real);
});

test('a users file that gains a bad entry at run time: last good users kept, one warning naming the line, 401 for that user', async (t) => {
  const file = await usersFile(t, { alice: 'right-password', bob: 'builder-pw' });
  let clock = 0;
  const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const log = { warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }) };
  const users = new HtpasswdUsers(file, { now: () => clock, log: log as never });
  t.after(() => users.close());
  await users.refresh();
  assert.equal(await users.verify('bob', 'builder-pw'), true);

  // A line added by hand with another tool's hash (SHA1): not something bcrypt can check.
  await appendFile(file, 'carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:plain-text-password\n');
  clock += 1000;
  assert.equal(await users.verify('alice', 'right-password'), true, 'good entries keep working');
  clock += 1000;
  assert.equal(await users.verify('bob', 'builder-pw'), false, 'the user of a bad line is refused (401), not a 500');
  assert.equal(await users.verify('carol', 'anything'), false);
  assert.equal(warnings.length, 2, 'one warning per bad line');
  assert.match(warnings[0]?.message ?? '', /htpasswd:3 is not a bcrypt entry/);
  assert.equal(warnings[1]?.fields.line, 4);
  clock += 5000;
  await users.verify('alice', 'right-password');
  assert.equal(warnings.length, 2, 'no repeated warnings while the file stays as it is');
  await assert.rejects(new HtpasswdUsers(file).refresh(), /htpasswd:3: not a bcrypt htpasswd entry/, 'at start-up the same file is refused');
});

test('a users file that becomes unreadable at run time: the last good users keep working, one warning', async (t) => {
  const file = await usersFile(t, { alice: 'right-password' });
  let clock = 0;
  const warnings: string[] = [];
  const users = new HtpasswdUsers(file, { now: () => clock, log: { warn: (_f: unknown, message: string) => warnings.push(message) } as never });
  t.after(() => users.close());
  await users.refresh();
  await rm(file);
  for (let i = 0; i < 3; i++) {
    clock += 1000;
    assert.equal(await users.verify('alice', 'right-password'), true);
    assert.equal(await users.verify('alice', 'wrong-password'), false);
  }
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /cannot be read; keeping the users of its last good version/);
});

test('a burst of concurrent guesses cannot slip past the limit while their checks wait in the queue', async (t) => {
  const file = await usersFile(t, { alice: 'right-password' });
  let compared = 0;
  const pool = new BcryptPool({ workers: 1, queue: 100 });
  const counting = Object.assign(Object.create(pool) as BcryptPool, {
    compare: (password: string, hash: string) => {
      compared++;
      return pool.compare(password, hash);
    },
  });
  const users = new HtpasswdUsers(file, { pool: counting, limiter: new LoginLimiter({ perAddress: 5, perUser: 0, windowMs: 60_000 }) });
  t.after(() => users.close());
  await users.refresh();
  const outcomes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => users.verify(`name${i}`, 'guess', '10.0.0.9')));
  assert.equal(outcomes.filter((o) => o.status === 'rejected').length, 45);
  assert.equal(compared, 5, 'only the guesses under the limit cost a bcrypt check');
  // A right password does not count as a failure.
  const other = '10.0.0.10';
  for (let i = 0; i < 8; i++) assert.equal(await users.verify('alice', 'right-password', other), true);
});
