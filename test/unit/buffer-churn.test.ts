// util/buffer-churn.ts: scavenges that free the chunks of a transfer while they are young.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { SCAVENGE_EVERY_BYTES, churnScavenges, noteBufferChurn } from '../../src/util/buffer-churn.js';

/** Young-generation collections V8 ran while `work` ran (GC performance entries). */
async function scavengesDuring(work: () => void): Promise<number> {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  work();
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  return entries.filter((entry) => (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR).length;
}

test('a scavenge runs each time SCAVENGE_EVERY_BYTES of chunks were noted, counted across calls, and not before', async () => {
  const before = churnScavenges();
  const chunk = 64 * 1024;
  const perScavenge = SCAVENGE_EVERY_BYTES / chunk;
  // Just short of the threshold: nothing runs.
  for (let i = 0; i < perScavenge - 1; i++) noteBufferChurn(chunk);
  assert.equal(churnScavenges(), before);
  // The next chunk crosses it; three more thresholds' worth run three more.
  const seen = await scavengesDuring(() => {
    for (let i = 0; i < 1 + 3 * perScavenge; i++) noteBufferChurn(chunk);
  });
  assert.equal(churnScavenges(), before + 4);
  assert.ok(seen >= 4, `V8 reported ${seen} young-generation collections for 4 requested`);
});
