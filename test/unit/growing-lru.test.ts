import { test } from 'node:test';
import assert from 'node:assert/strict';
import { growingLru } from '../../src/util/growing-lru.js';

test('growingLru keeps at most its number of entries, evicting the least recently used', () => {
  const cache = growingLru<string, number>(3);
  cache.set('a', 1);
  cache.set('b', 2);
  cache.set('c', 3);
  assert.equal(cache.get('a'), 1); // a is now the most recent: b is the oldest
  cache.set('d', 4);
  assert.equal(cache.size, 3);
  assert.equal(cache.has('b'), false);
  assert.deepEqual([...cache.keys()].sort(), ['a', 'c', 'd']);
  for (let i = 0; i < 1000; i++) cache.set(`k${i}`, i);
  assert.equal(cache.size, 3, 'the bound holds as it is filled past it');
});
