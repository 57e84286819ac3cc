import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetadataProvenance } from '../../src/mirror/provenance.js';
import { sha256Digest } from '../harness/digests.js';
import { memoryStorage } from '../support/stores.js';

test('provenance: concurrent records from several upstreams all land; another instance (replica) sees them', async () => {
  const { metadata } = await memoryStorage();
  const digest = sha256Digest('layer');
  const first = new MetadataProvenance(metadata);
  assert.equal(await first.fetchedFrom(digest, 'hub'), false);
  await Promise.all(['hub', 'quay', 'ghcr', 'hub'].map((upstream) => first.record(digest, { upstream, repository: `${upstream}/app` })));
  for (const upstream of ['hub', 'quay', 'ghcr']) assert.ok(await first.fetchedFrom(digest, upstream), upstream);
  assert.equal(await first.fetchedFrom(digest, 'other'), false);

  // A second instance over the same store, after the first cached a "no" for 'late'.
  const second = new MetadataProvenance(metadata);
  assert.equal(await first.fetchedFrom(digest, 'late'), false);
  await second.record(digest, { upstream: 'late', repository: 'x/y' });
  assert.ok(await first.fetchedFrom(digest, 'late'), 'a cached "no" is re-read, never trusted');
  assert.ok(await second.fetchedFrom(digest, 'hub'));
});
