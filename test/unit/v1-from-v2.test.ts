// The v2 → v1 translation against vectors produced by Docker's Go schema1 builder (copied
// from our protocol notes into test/fixtures/v1-vectors; see its README).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { goCompact, goString } from '../../src/protocol/go-json.js';
import { goTime, v1ChainFromSchema1, v1ChainFromV2 } from '../../src/protocol/v1-from-v2.js';

const VECTORS = path.join(import.meta.dirname, '../fixtures/v1-vectors');

for (const name of ['v1', 'v2', 'v3']) {
  test(`vector ${name}: ids, parents, blobs and json bytes equal the Go builder's`, async () => {
    const input = JSON.parse(await readFile(path.join(VECTORS, `${name}.in.json`), 'utf8')) as { config: string; layers: Array<{ digest: string }> };
    const expected = JSON.parse(await readFile(path.join(VECTORS, `${name}.go.json`), 'utf8')) as unknown;
    assert.deepEqual(v1ChainFromV2(input.config, input.layers.map((l) => l.digest)), expected);
  });
}

test('Go time formatting: RFC3339Nano with trimmed fractions and Z for zero offsets', () => {
  assert.equal(goTime('2017-01-13T22:50:56.500Z'), '2017-01-13T22:50:56.5Z');
  assert.equal(goTime('2017-01-13T22:50:56.0000Z'), '2017-01-13T22:50:56Z');
  assert.equal(goTime('2018-05-01T10:00:00+00:00'), '2018-05-01T10:00:00Z');
  assert.equal(goTime('2017-01-13T23:50:56.5+01:00'), '2017-01-13T23:50:56.5+01:00');
  assert.equal(goTime(undefined), '0001-01-01T00:00:00Z');
  assert.throws(() => goTime('yesterday'), /not RFC 3339/);
});

test('Go JSON: HTML characters escaped, raw values compacted with escapes and numbers kept', () => {
  assert.equal(goString('a<b>&c\u2028'), '"a\\u003cb\\u003e\\u0026c\\u2028"');
  assert.equal(goCompact('{ "a" : [ 1.50, "x y\\n<" ] ,\n "b":{}}'), '{"a":[1.50,"x y\\n\\u003c"],"b":{}}');
});

test('inconsistent inputs are refused with a reason', () => {
  assert.throws(() => v1ChainFromV2('{"history":[]}', []), /no history/);
  assert.throws(() => v1ChainFromV2('{"history":[{"created_by":"a"}]}', []), /1 non-empty entries but the manifest has 0 layers/);
});

test('schema1 (§11.2): v1Compatibility verbatim, adjacent duplicates collapsed, broken chains refused', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const compat = (id: string, parent?: string) => JSON.stringify(parent ? { id, parent, created: '2015-01-01T00:00:00Z' } : { id });
  const manifest = (entries: Array<[string, string | undefined]>) =>
    JSON.stringify({
      schemaVersion: 1,
      fsLayers: entries.map((_, i) => ({ blobSum: `sha256:${String(i).repeat(64)}` })),
      history: entries.map(([id, parent]) => ({ v1Compatibility: compat(id, parent) })),
    });
  const chain = v1ChainFromSchema1(manifest([[b, a], [b, a], [a, undefined]]));
  assert.deepEqual(
    chain.map((e) => [e.id, e.parent, e.blobSum, e.v1Compatibility]),
    [
      [b, a, `sha256:${'1'.repeat(64)}`, compat(b, a)],
      [a, '', `sha256:${'2'.repeat(64)}`, compat(a)],
    ],
  );
  assert.throws(() => v1ChainFromSchema1(manifest([[b, a], [a, undefined], [b, a]])), /twice, not adjacent/);
  assert.throws(() => v1ChainFromSchema1(manifest([[b, 'c'.repeat(64)], [a, undefined]])), /not the next image/);
  assert.throws(() => v1ChainFromSchema1(manifest([[a, b]])), /base image has a parent/);
  assert.throws(() => v1ChainFromSchema1(manifest([['../x', undefined]])), /invalid image id/);
});
