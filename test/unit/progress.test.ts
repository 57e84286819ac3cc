import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress, formatBytes, formatDuration } from '../../src/cli/progress.js';
import { formatCacheStatus, servedFromCache } from '../../src/protocol/cache-status.js';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const stream = { isTTY, text: '', write(chunk: string) { stream.text += chunk; return true; } };
  return stream as unknown as NodeJS.WriteStream & { text: string };
}

test('a terminal gets redrawn bars per image and a total line', () => {
  const out = fakeStream(true);
  const progress = createProgress(out);
  progress.begin('alpine:3.20', 2048, 2);
  progress.advance('alpine:3.20', 1024);
  progress.blobDone('alpine:3.20');
  progress.begin('app:1', 100, 1);
  progress.end('app:1', new Error('manifest not found'));
  progress.finish();
  const frames = out.text.split('\x1b[2K');
  assert.ok(out.text.includes('\x1b[2A'), 'moves the cursor up to redraw');
  assert.match(frames.at(-3) ?? '', /\[#{15}-{15}\] {2}50% 1.0 KiB\/2.0 KiB 1\/2 blobs {2}alpine:3\.20/);
  assert.match(frames.at(-2) ?? '', /FAILED/);
  assert.match(out.text, /error: app:1: manifest not found/);
});

test('a pipe gets plain lines', () => {
  const out = fakeStream(false);
  const progress = createProgress(out);
  progress.begin('alpine:3.20', 2048, 2);
  progress.advance('alpine:3.20', 2048);
  progress.blobDone('alpine:3.20');
  progress.blobDone('alpine:3.20');
  progress.end('alpine:3.20');
  progress.finish();
  assert.equal(out.text, ['alpine:3.20: 2 blobs, 2.0 KiB', 'alpine:3.20: 1/2 blobs, 2.0 KiB', 'alpine:3.20: 2/2 blobs, 2.0 KiB', 'alpine:3.20: done', 'total: 1/1 images, 2 blobs, 2.0 KiB', ''].join('\n'));
  assert.ok(!out.text.includes('\x1b'), 'no escape codes in logs');
});

test('byte sizes read naturally', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(200 * 1024 * 1024), '200.0 MiB');
});

test('a pipe also gets a line with bytes, rate and ETA at every heartbeat while work runs, none after finish', async () => {
  const out = fakeStream(false);
  let clock = 0;
  const progress = createProgress(out, { heartbeatMs: 20, now: () => clock });
  progress.begin('big:1', 40 * 1024 * 1024, 1);
  clock = 5000;
  progress.advance('big:1', 10 * 1024 * 1024); // 10 MiB in 5 s: 2 MiB/s, 30 MiB left
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.match(out.text, /^progress: 10\.0 MiB of 40\.0 MiB \(25%\), 2\.0 MiB\/s, ETA 15s$/m);
  progress.end('big:1');
  progress.finish();
  const lines = out.text.split('\n').length;
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(out.text.split('\n').length, lines, 'no heartbeat after finish');
});

test('durations read naturally', () => {
  assert.equal(formatDuration(15), '15s');
  assert.equal(formatDuration(125), '2m05s');
  assert.equal(formatDuration(3 * 3600 + 61), '3h01m');
  assert.equal(formatDuration(Infinity), '?');
});

test('import in a pipe: blobs counted as they come (never "1/0"), totals per bundle, nothing counted from a failed one', () => {
  const out = fakeStream(false);
  const progress = createProgress(out, { unit: 'bundles' });
  progress.begin('site.tar', 4096, 0);
  progress.advance('site.tar', 4096);
  progress.blobDone('site.tar');
  progress.blobDone('site.tar');
  progress.end('site.tar');
  progress.begin('broken.tar', 1000, 0);
  progress.advance('broken.tar', 500);
  progress.blobDone('broken.tar');
  progress.end('broken.tar', new Error('manifest missing'));
  progress.finish();
  assert.equal(
    out.text,
    [
      'site.tar: 4.0 KiB',
      'site.tar: 1 blobs, 4.0 KiB',
      'site.tar: 2 blobs, 4.0 KiB',
      'site.tar: done',
      'broken.tar: 1000 B',
      'broken.tar: 1 blobs, 500 B',
      'broken.tar: FAILED: manifest missing',
      'total: 1/2 bundles, 2 blobs, 4.0 KiB',
      '',
    ].join('\n'),
  );
});

test('warm tells cached blobs apart from fetched ones: per blob and in the total on a pipe, on the bars and a summary line on a terminal', () => {
  const pipe = fakeStream(false);
  const lines = createProgress(pipe);
  lines.begin('app:1', 3072, 2);
  lines.advance('app:1', 1024);
  lines.blobDone('app:1', { cached: true, bytes: 1024 });
  lines.advance('app:1', 2048);
  lines.blobDone('app:1', { cached: false, bytes: 2048 });
  lines.end('app:1');
  lines.finish();
  assert.match(pipe.text, /^app:1: 1\/2 blobs, 1\.0 KiB: 1 cached \(1\.0 KiB\), 0 fetched \(0 B\)$/m);
  assert.match(pipe.text, /^app:1: 2\/2 blobs, 3\.0 KiB: 1 cached \(1\.0 KiB\), 1 fetched \(2\.0 KiB\)$/m);
  assert.match(pipe.text, /^total: 1\/1 images, 2 blobs, 3\.0 KiB: 1 cached \(1\.0 KiB\), 1 fetched \(2\.0 KiB\)$/m);

  const terminal = fakeStream(true);
  const bars = createProgress(terminal);
  bars.begin('app:1', 3072, 2);
  bars.advance('app:1', 3072);
  bars.blobDone('app:1', { cached: true, bytes: 1024 });
  bars.blobDone('app:1', { cached: true, bytes: 2048 });
  bars.end('app:1');
  bars.finish();
  assert.match(terminal.text, /2\/2 blobs \(2 cached\) {2}app:1 done/);
  assert.match(terminal.text, /^blobs: 2 cached \(3\.0 KiB\), 0 fetched \(0 B\)$/m);
});

test('without a source per blob (import) no cached/fetched split is shown', () => {
  const out = fakeStream(false);
  const progress = createProgress(out, { unit: 'bundles' });
  progress.begin('b.tar', 10, 0);
  progress.blobDone('b.tar');
  progress.end('b.tar');
  progress.finish();
  assert.doesNotMatch(out.text, /cached|fetched/);
});

test('Cache-Status: our entry says hit or not; another cache\'s entry or none says nothing', () => {
  assert.equal(servedFromCache(formatCacheStatus('hit')), true);
  assert.equal(servedFromCache(formatCacheStatus('stale')), true);
  assert.equal(servedFromCache(formatCacheStatus('miss')), false);
  assert.equal(servedFromCache(formatCacheStatus('coalesced')), false);
  assert.equal(servedFromCache(`ExampleCDN; hit, ${formatCacheStatus('miss')}`), false);
  assert.equal(servedFromCache('ExampleCDN; hit'), undefined);
  assert.equal(servedFromCache(undefined), undefined);
});
