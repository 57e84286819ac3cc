import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessPrivateContent } from '../../src/coordination/private-content.js';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { fsStorage } from '../support/stores.js';

test('private blob marks persist across restarts, count bytes once, and can be removed', async () => {
  const { metadata } = await fsStorage();
  const a = parseDigest(digestOf(Buffer.from('a')));
  const b = parseDigest(digestOf(Buffer.from('b')));
  const first = new InProcessPrivateContent(metadata);
  await first.load();
  await first.add(a, 100);
  await first.add(a, 100);
  await first.add(b, 50);
  assert.ok(await first.has(a));
  assert.ok(await first.has(b.text));
  assert.deepEqual(await first.stats(), { objects: 2, bytes: 150 });

  const restarted = new InProcessPrivateContent(metadata);
  await restarted.load();
  assert.ok(await restarted.has(a));
  assert.ok(!(await restarted.has(parseDigest(digestOf(Buffer.from('c'))))));
  assert.deepEqual(await restarted.stats(), { objects: 2, bytes: 150 });

  await restarted.remove(a);
  assert.ok(!(await restarted.has(a)));
  const listed = [];
  for await (const entry of restarted.list()) listed.push(entry);
  assert.deepEqual(listed, [{ digest: b.text, size: 50 }]);
  const again = new InProcessPrivateContent(metadata);
  await again.load();
  assert.ok(!(await again.has(a)), 'the removal is stored too');
});
