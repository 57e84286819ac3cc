import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NamespacePolicy } from '../../src/auth/policy.js';
import { CachedRepositories } from '../../src/mirror/cached-repositories.js';
import type { Digest } from '../../src/protocol/digest.js';
import { metadataKeys } from '../../src/storage/keys.js';
import { MemoryMetadataDriver } from '../../src/storage/memory-metadata-driver.js';
import { sha256Digest } from '../harness/digests.js';

const upstream = (name: string, isDefault: boolean) => ({ name, hosts: [], isDefault, libraryPrefix: true });

test('cached repositories: tag records whose manifest is in the store, by client-facing name; evicted and private-shadowed ones drop out', async () => {
  const metadata = new MemoryMetadataDriver();
  const tags = { put: (upstream: string, repository: string, tag: string, record: unknown) => metadata.put(metadataKeys.mirrorTag(upstream, repository, tag), record) };
  const onDisk = new Set<string>();
  const blobs = { stat: (digest: Digest) => Promise.resolve(onDisk.has(digest.text) ? { size: 1 } : undefined) };
  const hub = upstream('hub', true);
  const quay = upstream('quay', false);
  const cached = new CachedRepositories(metadata, blobs, { upstreams: [hub, quay], defaultUpstream: hub }, new NamespacePolicy(['corp']));

  const record = (text: string) => ({ digest: sha256Digest(text), mediaType: 'application/vnd.oci.image.manifest.v1+json', checkedAt: 0 });
  await tags.put('hub', 'library/alpine', 'latest', record('alpine'));
  await tags.put('hub', 'team/deep/nested/app', 'v1', record('nested'));
  await tags.put('hub', 'corp/shadowed', 'v1', record('shadowed'));
  await tags.put('quay', 'org/tool', 'v2', record('tool-v2'));
  await tags.put('quay', 'org/tool', 'v1', record('tool-v1'));
  await tags.put('quay', 'org/evicted', 'v1', record('evicted'));
  for (const text of ['alpine', 'nested', 'shadowed', 'tool-v1']) onDisk.add(sha256Digest(text));

  // org/tool: one of its two tags is still cached; org/evicted: its manifest is gone.
  assert.deepEqual(await cached.list(), ['library/alpine', 'quay/org/tool', 'team/deep/nested/app']);
  onDisk.delete(sha256Digest('alpine'));
  assert.deepEqual(await cached.list(), ['quay/org/tool', 'team/deep/nested/app']);
});
