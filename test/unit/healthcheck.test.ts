// The container HEALTHCHECK follows the configured listen address and scheme.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkHealth, healthUrl } from '../../src/cli/healthcheck.js';
import { makeTempDir } from '../harness/tmp.js';
import { onCleanup } from '../support/cleanup.js';
import { startInProcess } from '../support/in-process.js';

test('healthUrl: wildcard addresses are asked over loopback, TLS over https', () => {
  assert.equal(healthUrl({ listen: '0.0.0.0:8080', tls: undefined }), 'http://127.0.0.1:8080/healthz');
  assert.equal(healthUrl({ listen: '[::]:5000', tls: undefined }), 'http://[::1]:5000/healthz');
  assert.equal(healthUrl({ listen: '10.1.2.3:443', tls: { cert: 'c', key: 'k' } }), 'https://10.1.2.3:443/healthz');
});

test('checkHealth: true for a running server on the configured port, false when nothing listens there', async (t) => {
  const server = await startInProcess({});
  onCleanup(t, () => server.stop());
  const dir = await makeTempDir('healthcheck');
  onCleanup(t, () => dir.remove());
  const file = path.join(dir.path, 'config.yaml');
  await writeFile(file, `listen: "${new URL(server.url).host}"\n`);
  assert.equal(await checkHealth(file), true);
  await server.stop();
  assert.equal(await checkHealth(file), false);
});
