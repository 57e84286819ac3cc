// TarSum v0 against vectors computed by moby's own pkg/tarsum (test/fixtures/tarsum/README.md):
// the layers are the gzip streams the Docker client uploads, the sums what it sends in
// X-Docker-Checksum. Both moby readings (uname/gname hashed or blanked) must be accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { computeTarSum, TarSumCalculator, tarSums } from '../../src/protocol/tarsum.js';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/tarsum');

interface Vector {
  case: string;
  layer: string;
  json: string;
  tarsum: string;
  tarsumLegacy: string;
  payload: string;
  description: string;
}

const vectors = JSON.parse(await readFile(path.join(FIXTURES, 'vectors.json'), 'utf8')) as Vector[];

for (const vector of vectors) {
  test(`vector ${vector.case} (${vector.description.slice(0, 60)}): current and Docker 1.x TarSum both accepted`, async () => {
    const json = await readFile(path.join(FIXTURES, vector.json));
    const result = await computeTarSum(createReadStream(path.join(FIXTURES, vector.layer), { highWaterMark: 1000 }));
    const sums = tarSums(result, json);
    assert.ok(sums.includes(vector.tarsum), `${vector.tarsum} not in ${sums.join(', ')}`);
    assert.ok(sums.includes(vector.tarsumLegacy), `${vector.tarsumLegacy} not in ${sums.join(', ')}`);
  });
}

test('the same layer with another image JSON gives other sums (the JSON is part of the checksum)', async () => {
  const vector = vectors.find((v) => v.case === 'a') as Vector;
  const result = await computeTarSum(createReadStream(path.join(FIXTURES, vector.layer)));
  assert.ok(!tarSums(result, Buffer.from('{"id":"other"}')).includes(vector.tarsum));
});

test('a plain (uncompressed) tar gives the same TarSum as its gzip form', async () => {
  const vector = vectors.find((v) => v.case === 'b') as Vector;
  const json = await readFile(path.join(FIXTURES, vector.json));
  const plain = gunzipSync(await readFile(path.join(FIXTURES, vector.layer)));
  assert.ok(tarSums(await computeTarSum(Readable.from([plain])), json).includes(vector.tarsum));
});

test('bytes that are not a tar archive are reported, not summed', async () => {
  const calculator = new TarSumCalculator();
  const noise = createHash('sha512').update('x').digest();
  for (let i = 0; i < 64; i++) await calculator.write(noise);
  const result = await calculator.end();
  assert.ok(result instanceof Error, 'expected an error for random bytes');
});

test('the calculator fed in small pieces matches the vector', async () => {
  const vector = vectors.find((v) => v.case === 'f') as Vector;
  const bytes = await readFile(path.join(FIXTURES, vector.layer));
  const calculator = new TarSumCalculator();
  for (let offset = 0; offset < bytes.length; offset += 4093) await calculator.write(bytes.subarray(offset, offset + 4093));
  const result = await calculator.end();
  assert.ok(!(result instanceof Error));
  assert.ok(tarSums(result, await readFile(path.join(FIXTURES, vector.json))).includes(vector.tarsum));
});
