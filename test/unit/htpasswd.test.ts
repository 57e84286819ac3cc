// htpasswd users: bcrypt entries from Apache's own tool; remembered checks never outlive the
// entry they were made against.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { HtpasswdUsers } from '../../src/auth/htpasswd.js';
import { makeTempDir } from '../harness/tmp.js';
import { writeHtpasswd } from '../support/users.js';

test('htpasswd: a changed file is read again, and a remembered password stops working once replaced', async (t) => {
  const dir = await makeTempDir('htpasswd');
  t.after(() => dir.remove());
  const file = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(file, { alice: 'first-password', bob: 'builder-pw' });
  let clock = 0;
  const users = new HtpasswdUsers(file, { now: () => clock });
  t.after(() => users.close());
  await users.refresh();
  assert.equal(await users.verify('alice', 'first-password'), true);
  assert.equal(await users.verify('alice', 'first-password'), true, 'remembered');
  assert.equal(await users.verify('alice', 'wrong-password'), false);
  assert.equal(await users.verify('nobody', 'first-password'), false);

  await writeHtpasswd(file, { alice: 'second-password' });
  clock += 1000;
  assert.equal(await users.verify('alice', 'first-password'), false, 'the old password is gone');
  assert.equal(await users.verify('alice', 'second-password'), true);
  assert.equal(await users.verify('bob', 'builder-pw'), false, 'a removed user is gone');
});
