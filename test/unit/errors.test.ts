// The one coded error hierarchy: upstream failures are coded once (registryErrorOf), v1
// errors are RegistryErrors with the OCI code of their status, and each API's edge renders
// any of them in its own format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { handleError } from '../../src/api/errors.js';
import { handleV1Error } from '../../src/api/v1/http.js';
import { RegistryError } from '../../src/protocol/errors.js';
import { V1Error } from '../../src/protocol/v1.js';
import { isNotFound, registryErrorOf, UpstreamError } from '../../src/upstream/errors.js';

test('upstream failures are coded once: 429 keeps Retry-After, denied is a 404, down or invalid is a 502', () => {
  const limited = registryErrorOf(new UpstreamError('hub', 'rate-limited', 'slow down', { retryAfterSeconds: 7 })) as RegistryError;
  assert.equal(limited.code, 'TOOMANYREQUESTS');
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['retry-after'], '7');
  assert.equal((registryErrorOf(new UpstreamError('hub', 'denied', 'no')) as RegistryError).status, 404);
  assert.equal((registryErrorOf(new UpstreamError('hub', 'unavailable', 'down')) as RegistryError).status, 502);
  assert.equal((registryErrorOf(new UpstreamError('hub', 'invalid', 'junk')) as RegistryError).status, 502);
  const other = new Error('not an upstream error');
  assert.equal(registryErrorOf(other), other);
  assert.ok(isNotFound(new UpstreamError('hub', 'denied', 'no')));
  assert.ok(isNotFound(new RegistryError('MANIFEST_UNKNOWN', 'gone')));
  assert.ok(!isNotFound(new UpstreamError('hub', 'unavailable', 'down')));
});

test('v1 errors belong to the hierarchy: a status keeps its meaning as an OCI code', () => {
  const denied = new V1Error(403, 'read-only');
  assert.ok(denied instanceof RegistryError);
  assert.equal(denied.code, 'DENIED');
  assert.equal(denied.status, 403);
  assert.equal(new V1Error(404, 'x').code, 'NAME_UNKNOWN');
  const odd = new V1Error(400, 'bad json');
  assert.equal(odd.code, 'UNKNOWN');
  assert.equal(odd.status, 400);
});

test('each edge renders any coded error in its own format', async (t) => {
  const raise = (error: Error) => () => {
    throw error;
  };
  const v2 = Fastify();
  t.after(() => v2.close());
  v2.setErrorHandler(handleError);
  v2.get('/upstream', raise(new UpstreamError('hub', 'unavailable', 'connection refused')));
  v2.get('/v1', raise(new V1Error(403, 'read-only')));
  const v1 = Fastify();
  t.after(() => v1.close());
  v1.setErrorHandler(handleV1Error);
  v1.get('/upstream', raise(new UpstreamError('hub', 'rate-limited', 'slow down', { retryAfterSeconds: 3 })));
  v1.get('/oci', raise(new RegistryError('BLOB_UNKNOWN', 'no such layer')));

  const upstream = await v2.inject('/upstream');
  assert.equal(upstream.statusCode, 502);
  assert.equal(upstream.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'UNAVAILABLE');
  const fromV1 = await v2.inject('/v1');
  assert.equal(fromV1.statusCode, 403);
  assert.equal(fromV1.json<{ errors: Array<{ code: string }> }>().errors[0]?.code, 'DENIED');

  const limited = await v1.inject('/upstream');
  assert.equal(limited.statusCode, 429);
  assert.equal(limited.headers['retry-after'], '3');
  assert.match(limited.json<{ error: string }>().error, /slow down/);
  const oci = await v1.inject('/oci');
  assert.equal(oci.statusCode, 404);
  assert.deepEqual(oci.json(), { error: 'no such layer' });
});
