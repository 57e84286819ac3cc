// ls --url's reading of the web page's API, on edge cases a real server makes slow to reach:
// more repositories and tags than one page holds, a tag whose manifest is gone, a server that
// answers something else than JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RemoteInventory, RemoteInventoryError } from '../../src/lifecycle/remote-inventory.js';
import { startTestServer } from '../support/http-server.js';

const PER_PAGE = 200;

function page<T>(all: T[], query: URLSearchParams) {
  const number = Number(query.get('page'));
  const perPage = Number(query.get('perPage'));
  return { items: all.slice((number - 1) * perPage, number * perPage), total: all.length, page: number, perPage };
}

test('every page of repositories and of tags is read; names lose the prefix of non-default upstreams only; tags not cached are left out', async (t) => {
  const repositories = [
    ...Array.from({ length: PER_PAGE + 5 }, (_, i) => ({ name: `hub/app${String(i).padStart(3, '0')}`, kind: 'mirrored', upstream: 'hub', tagCount: 0, pulls: 0 })),
    { name: 'library/alpine', kind: 'mirrored', upstream: 'docker', tagCount: 0, pulls: 0 },
    { name: 'corp/app', kind: 'private', tagCount: 0, pulls: 0 },
  ];
  const tags = Array.from({ length: PER_PAGE + 1 }, (_, i) => ({ tag: `t${i}`, digest: `sha256:${'a'.repeat(64)}`, size: 10, cached: i !== 0, pulls: 1, lastPulledAt: 0 }));
  const server = await startTestServer((req, res) => {
    const url = new URL(req.url ?? '', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (url.pathname === '/ui/api/upstreams') return res.end(JSON.stringify({ upstreams: [{ name: 'docker', isDefault: true }, { name: 'hub', isDefault: false }] }));
    if (url.pathname === '/ui/api/repositories') return res.end(JSON.stringify(page(repositories, url.searchParams)));
    const name = url.searchParams.get('name') ?? '';
    const repository = repositories.find((r) => r.name === name);
    const own = name === 'hub/app204' || name === 'library/alpine' ? tags : [];
    res.end(JSON.stringify({ ...repository, tags: page(own, url.searchParams) }));
  });
  t.after(() => server.close());

  const inventory = await RemoteInventory.open(server.url, undefined);
  const listed = await inventory.repositories();
  assert.equal(listed.length, 2 + 1, 'mirrored ones without cached tags are left out; the private one stays');
  assert.deepEqual(
    listed.map((r) => [r.kind, r.upstream, r.name, r.tags.length]),
    [
      ['mirrored', 'docker', 'library/alpine', PER_PAGE],
      ['mirrored', 'hub', 'app204', PER_PAGE],
      ['private', undefined, 'corp/app', 0],
    ],
  );
  assert.equal(listed[0]!.tags[0]!.tag, 't1', 'the tag whose manifest is gone is not listed');
  assert.deepEqual((await inventory.repositories('hub/app204')).map((r) => r.name), ['app204']);
});

test('a server that does not answer JSON is named as such', async (t) => {
  const server = await startTestServer((_req, res) => res.end('<html>not a Longshore</html>'));
  t.after(() => server.close());
  const inventory = await RemoteInventory.open(server.url, undefined);
  await assert.rejects(inventory.repositories(), (error: unknown) => error instanceof RemoteInventoryError && error.code === 'BAD_RESPONSE' && /is .* a Longshore\?/.test(error.message));
});
