// `longshore ls --url` reads the web page's API, which now lists v1 tags (an image id, no
// manifest digest) beside v2 ones: ls keeps listing what ls --config lists, images a
// manifest digest names, and leaves v1 tags out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { RemoteInventory } from '../../src/lifecycle/remote-inventory.js';
import { makeTempDir } from '../harness/tmp.js';
import { V1Client, type V1Image } from '../harness/v1-client.js';
import { startInProcess } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

test('ls --url: a v1-pushed repository is listed, its v1 tags (no manifest digest) are not', async (t) => {
  const dir = await makeTempDir('remote-inventory-v1');
  t.after(() => dir.remove());
  const htpasswd = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const server = await startInProcess({ logLevel: 'silent', private: { namespaces: ['corp'] }, auth: { htpasswd } });
  t.after(() => server.stop());
  const chain = await v1Chain('remote-inventory', ['a']);
  await new V1Client(server.url, { username: 'alice', password: 'wonderland' }).push('corp/legacy', chain, { '0.9': (chain[0] as V1Image).id });

  const api = await server.server.app.inject({
    url: '/ui/api/repository?name=corp%2Flegacy',
    headers: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` },
  });
  assert.deepEqual(api.json<{ tags: { items: Array<{ tag: string; api: string }> } }>().tags.items.map((tag) => [tag.tag, tag.api]), [['0.9', 'v1']], 'the page lists it');

  const inventory = await RemoteInventory.open(server.url, { username: 'alice', password: 'wonderland' });
  assert.deepEqual(await inventory.repositories(), [{ kind: 'private', name: 'corp/legacy', tags: [] }]);
});
