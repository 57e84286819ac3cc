// How a server learns of gc and import beside it: the notice they leave in the metadata store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { announceCacheChange, CacheChangeWatcher } from '../../src/lifecycle/cache-changes.js';
import { pollUntil } from '../harness/wait.js';
import { memoryStorage } from '../support/stores.js';

test('a server rescans once per new notice, not for the one it started with, and tries again after a failed rescan', async (t) => {
  const { metadata } = await memoryStorage();
  await announceCacheChange(metadata, 'gc'); // before the server started: its first build has it
  const calls: string[] = [];
  let failNext = false;
  const watcher = await CacheChangeWatcher.start({
    metadata,
    cacheIndex: {
      rescan: () => {
        calls.push('rescan');
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error('storage unreachable'));
        }
        return Promise.resolve();
      },
    },
    privateContent: { reload: () => Promise.resolve(void calls.push('reload')) },
    log: pino({ level: 'silent' }),
    intervalMs: 10,
  });
  t.after(() => watcher.close());
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(calls, [], 'the notice from before the start is not rescanned');

  await announceCacheChange(metadata, 'import');
  await pollUntil(() => Promise.resolve(calls.length === 2), { timeoutMs: 2000, what: 'a rescan' });
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(calls, ['reload', 'rescan'], 'private marks first, then the cache index, once');

  failNext = true;
  await announceCacheChange(metadata, 'gc');
  await pollUntil(() => Promise.resolve(calls.length === 6), { timeoutMs: 2000, what: 'a failed rescan and its retry' });
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(calls.length, 6, 'done once it succeeded');
});
