import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamRouter } from '../../src/mirror/router.js';
import type { UpstreamRegistry } from '../../src/upstream/upstream.js';

function upstream(name: string, hosts: string[], options: { isDefault?: boolean; libraryPrefix?: boolean } = {}): UpstreamRegistry {
  return { name, hosts, isDefault: options.isDefault ?? false, libraryPrefix: options.libraryPrefix ?? false } as unknown as UpstreamRegistry;
}

const hub = upstream('hub', ['docker.io'], { isDefault: true, libraryPrefix: true });
const ghcr = upstream('ghcr', ['ghcr.io']);
const router = new UpstreamRouter([hub, ghcr]);

test('unprefixed names go to the default upstream, with library/ for Docker Hub-style upstreams', () => {
  assert.deepEqual(router.resolve('alpine', undefined), { upstream: hub, repository: 'library/alpine' });
  assert.deepEqual(router.resolve('bitnami/redis', undefined), { upstream: hub, repository: 'bitnami/redis' });
});

test('containerd ?ns= picks the upstream by host and never falls back to the default', () => {
  assert.deepEqual(router.resolve('org/app', 'ghcr.io'), { upstream: ghcr, repository: 'org/app' });
  assert.deepEqual(router.resolve('alpine', 'docker.io'), { upstream: hub, repository: 'library/alpine' });
  assert.equal(router.resolve('org/app', 'quay.io'), undefined);
});

test('a first component equal to an upstream host or name routes there', () => {
  assert.deepEqual(router.resolve('ghcr.io/org/app', undefined), { upstream: ghcr, repository: 'org/app' });
  assert.deepEqual(router.resolve('ghcr/org/app', undefined), { upstream: ghcr, repository: 'org/app' });
  assert.deepEqual(router.resolve('docker.io/alpine', undefined), { upstream: hub, repository: 'library/alpine' });
});

test('no default and several upstreams: unprefixed names have no upstream', () => {
  const noDefault = new UpstreamRouter([upstream('a', ['a.example']), upstream('b', ['b.example'])]);
  assert.equal(noDefault.resolve('x/y', undefined), undefined);
  const single = new UpstreamRouter([upstream('only', [])]);
  assert.equal(single.resolve('x/y', undefined)?.upstream.name, 'only');
});
