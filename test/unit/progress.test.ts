import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress, formatBytes } from '../../src/cli/progress.js';

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
