// storage.driver and storage.s3 (issue 16): the names are a contract, so they are tested as
// an operator writes them, in YAML and as LONGSHORE_STORAGE__S3__* variables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';

test('storage.driver defaults to fs with no s3 section', () => {
  const config = parseConfig({});
  assert.equal(config.storage.driver, 'fs');
  assert.equal(config.storage.s3, undefined);
});

test('storage.s3 keys with their defaults; forcePathStyle follows the endpoint unless set', () => {
  const config = parseConfig({ storage: { driver: 's3', s3: { endpoint: 'http://127.0.0.1:8080/', bucket: 'longshore' } } });
  assert.deepEqual(config.storage.s3, {
    endpoint: 'http://127.0.0.1:8080',
    region: 'us-east-1',
    bucket: 'longshore',
    prefix: '',
    forcePathStyle: true,
    redirect: false,
    spareScratchBytes: 1024 * 1024 * 1024,
  });
  const aws = parseConfig({ storage: { driver: 's3', s3: { bucket: 'longshore', region: 'eu-west-1', prefix: 'mirrors/one' } } });
  assert.equal(aws.storage.s3?.forcePathStyle, false);
  assert.equal(aws.storage.s3?.prefix, 'mirrors/one/', 'a "/" ends the prefix');
  const explicit = parseConfig({ storage: { s3: { endpoint: 'http://minio:9000', bucket: 'b-1', forcePathStyle: false } } });
  assert.equal(explicit.storage.s3?.forcePathStyle, false);
});

test('every storage.s3 key can be set from the environment', () => {
  const config = parseConfig({}, {
    LONGSHORE_STORAGE__DRIVER: 's3',
    LONGSHORE_STORAGE__S3__ENDPOINT: 'http://127.0.0.1:9000',
    LONGSHORE_STORAGE__S3__REGION: 'us-west-2',
    LONGSHORE_STORAGE__S3__BUCKET: 'from-env',
    LONGSHORE_STORAGE__S3__PREFIX: 'p/',
    LONGSHORE_STORAGE__S3__ACCESS_KEY_ID: 'AKIA',
    LONGSHORE_STORAGE__S3__SECRET_ACCESS_KEY: 'secret',
    LONGSHORE_STORAGE__S3__FORCE_PATH_STYLE: 'false',
    LONGSHORE_STORAGE__S3__SPARE_SCRATCH_BYTES: '256MiB',
  });
  assert.equal(config.storage.driver, 's3');
  assert.deepEqual(config.storage.s3, {
    endpoint: 'http://127.0.0.1:9000',
    region: 'us-west-2',
    bucket: 'from-env',
    prefix: 'p/',
    accessKeyId: 'AKIA',
    secretAccessKey: 'secret',
    forcePathStyle: false,
    redirect: false,
    spareScratchBytes: 256 * 1024 * 1024,
  });
});

test('bad storage.s3 settings are refused naming the key', () => {
  assert.throws(() => parseConfig({ storage: { driver: 's3' } }), /storage\.s3: storage\.driver is "s3", but storage\.s3 .* is not set/);
  assert.throws(() => parseConfig({ storage: { driver: 'gcs' } }), /storage\.driver:/);
  assert.throws(() => parseConfig({ storage: { driver: 's3', s3: { bucket: 'Bad_Bucket' } } }), /storage\.s3\.bucket: an S3 bucket name/);
  assert.throws(() => parseConfig({ storage: { driver: 's3', s3: {} } }), /storage\.s3\.bucket:/);
  assert.throws(() => parseConfig({ storage: { driver: 's3', s3: { bucket: 'b-1', accessKeyId: 'AKIA' } } }), /storage\.s3\.secretAccessKey: accessKeyId and secretAccessKey go together/);
  assert.throws(() => parseConfig({ storage: { driver: 's3', s3: { bucket: 'b-1', prefix: '../x' } } }), /storage\.s3\.prefix:/);
  assert.throws(() => parseConfig({ storage: { driver: 's3', s3: { bucket: 'b-1', endpoint: 'ftp://x' } } }), /storage\.s3\.endpoint:/);
  assert.throws(() => parseConfig({ storage: { s3: { bucket: 'b-1', tls: true } } }), /storage\.s3\.tls: unknown key/);
  assert.throws(() => parseConfig({ storage: { s3: { bucket: 'b-1', spareScratchBytes: 'lots' } } }), /storage\.s3\.spareScratchBytes: not a size/);
});

test('the shipped default.yaml documents the s3 keys without enabling them', async () => {
  const config = await loadConfig(path.join(import.meta.dirname, '../../config/default.yaml'), {});
  assert.equal(config.storage.driver, 'fs');
  assert.equal(config.storage.s3, undefined);
});
