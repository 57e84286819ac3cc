// The web page's pull counts through the whole request path, over a real socket (inject's
// responses never report themselves finished, and only finished responses count): the app's
// per-request listener tells the UI of each finished response, pulls are tallied by path and
// reach the catalog when it is read; pushes are noted at once. Only successful manifest GETs
// count; HEAD, 404s and other routes do not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { MediaType } from '../../src/protocol/media-types.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess } from '../support/in-process.js';
import { writeHtpasswd } from '../support/users.js';

const BASIC = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

test('ui pull counts: pulls by tag count, by digest move only "last pulled", HEAD and failures do not; a push lists the repository', async (t) => {
  const dir = await makeTempDir('users');
  onCleanup(t, () => dir.remove());
  const users = path.join(dir.path, 'htpasswd');
  await writeHtpasswd(users, { alice: 'wonderland' });
  const longshore = await startInProcess({ logLevel: 'warn', auth: { htpasswd: users }, private: { namespaces: ['corp'], anonymousPull: true } });
  t.after(() => longshore.stop());
  const request = async (url: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}) => {
    const response = await fetch(`${longshore.url}${url}`, init);
    return { statusCode: response.status, body: await response.text() };
  };

  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const upload = await request(`/v2/corp/app/blobs/uploads/?digest=${sha256(config)}`, { method: 'POST', headers: { authorization: BASIC, 'content-type': 'application/octet-stream' }, body: config });
  assert.equal(upload.statusCode, 201, upload.body);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [] }));
  const push = await request('/v2/corp/app/manifests/v1', { method: 'PUT', headers: { authorization: BASIC, 'content-type': MediaType.ociManifest }, body: manifest });
  assert.equal(push.statusCode, 201, push.body);

  const repository = async () => {
    const answer = await request('/ui/api/repository?name=corp%2Fapp');
    assert.equal(answer.statusCode, 200, answer.body);
    return JSON.parse(answer.body) as { pulls: number; lastPulledAt?: number; tags: { items: Array<{ tag: string; pulls: number }> } };
  };
  const pushed = await repository();
  assert.equal(pushed.pulls, 0, 'listed after the push, with no pulls');
  assert.equal(pushed.lastPulledAt, undefined);

  const accept = { accept: MediaType.ociManifest };
  for (let i = 0; i < 3; i += 1) assert.equal((await request('/v2/corp/app/manifests/v1', { headers: accept })).statusCode, 200);
  assert.equal((await request(`/v2/corp/app/manifests/${sha256(manifest)}`, { headers: accept })).statusCode, 200);
  assert.equal((await request('/v2/corp/app/manifests/v1', { method: 'HEAD', headers: accept })).statusCode, 200);
  assert.equal((await request('/v2/corp/app/manifests/v2', { headers: accept })).statusCode, 404);
  assert.equal((await request(`/v2/corp/app/blobs/${sha256(config)}`)).statusCode, 200);

  const pulled = await repository();
  assert.equal(pulled.pulls, 3, 'three pulls by tag; by digest, HEAD, the 404 and the blob do not count');
  assert.ok((pulled.lastPulledAt ?? 0) > 0, 'last pulled is set');
  assert.equal(pulled.tags.items.find((tag) => tag.tag === 'v1')?.pulls, 3);
  assert.equal((await repository()).pulls, 3, 'a second read counts nothing twice');
});
