import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { digestOf, parseDigest } from '../../src/protocol/digest.js';
import { FsMetadataStore } from '../../src/storage/fs-metadata-store.js';
import { PrivateBlobs } from '../../src/storage/private-blobs.js';

test('private blob marks persist across restarts and count bytes once', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'ls-private-'));
  const metadata = new FsMetadataStore(path.join(root, 'meta'), path.join(root, 'tmp'));
  const a = parseDigest(digestOf(Buffer.from('a')));
  const b = parseDigest(digestOf(Buffer.from('b')));
  const first = new PrivateBlobs(metadata);
  await first.load();
  await first.add(a, 100);
  await first.add(a, 100);
  await first.add(b, 50);
  assert.ok(first.has(a));
  assert.ok(first.has(b.text));
  assert.deepEqual(first.stats(), { objects: 2, bytes: 150 });

  const restarted = new PrivateBlobs(metadata);
  await restarted.load();
  assert.ok(restarted.has(a));
  assert.ok(!restarted.has(parseDigest(digestOf(Buffer.from('c')))));
  assert.deepEqual(restarted.stats(), { objects: 2, bytes: 150 });
});
