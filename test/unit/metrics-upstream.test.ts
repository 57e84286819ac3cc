// The upstream client's observer: kind, status and Docker Hub's RateLimit-Remaining.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import type { V2UpstreamConfig } from '../../src/config/schema.js';
import { V2RegistryClient, type UpstreamObserver } from '../../src/upstream/v2-client.js';
import { startTestServer } from '../support/http-server.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function recorder() {
  const events = { requests: [] as Array<{ kind: string; status: number | 'error' }>, rateLimits: [] as number[], received: 0 };
  const observer: UpstreamObserver = {
    request: (kind, status) => events.requests.push({ kind, status }),
    rateLimit: (remaining) => events.rateLimits.push(remaining),
    received: (bytes) => (events.received += bytes),
  };
  return { events, observer };
}

test('a manifest request is reported with its kind, status, bytes and the RateLimit-Remaining window count', async (t) => {
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] });
  const server = await startTestServer((req, res) => {
    if (req.url?.includes('/blobs/')) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('ratelimit-remaining', '100;w=21600');
    res.setHeader('content-type', OCI_MANIFEST);
    res.end(manifest);
  });
  t.after(() => server.close());
  const { events, observer } = recorder();
  const upstream = new V2RegistryClient(parseConfig({ upstreams: [{ name: 'hub', url: server.url }] }).upstreams[0] as V2UpstreamConfig, observer);
  t.after(() => upstream.close());

  await upstream.getManifest('library/app', 'v1', [OCI_MANIFEST]);
  assert.equal(await upstream.fetchBlob('library/app', `sha256:${'0'.repeat(64)}`), undefined);
  assert.deepEqual(events.requests, [
    { kind: 'manifest', status: 200 },
    { kind: 'blob', status: 404 },
  ]);
  assert.deepEqual(events.rateLimits, [100], 'only responses carrying the header report a rate limit');
  assert.equal(events.received, Buffer.byteLength(manifest));
});

test('an upstream that does not answer is reported as status "error"', async (t) => {
  const server = await startTestServer(() => undefined);
  const url = server.url;
  await server.close();
  const { events, observer } = recorder();
  const upstream = new V2RegistryClient(parseConfig({ upstreams: [{ name: 'gone', url, timeout: '2s' }] }).upstreams[0] as V2UpstreamConfig, observer);
  t.after(() => upstream.close());
  await assert.rejects(upstream.getManifest('app', 'v1', [OCI_MANIFEST]));
  assert.deepEqual(events.requests, [{ kind: 'manifest', status: 'error' }]);
});
