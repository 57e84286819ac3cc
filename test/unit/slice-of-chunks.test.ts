// sliceOfChunks: how a writer's staged (not yet stored) bytes are read by followers, for the fs
// and in-memory drivers alike.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sliceOfChunks, type PositionedChunk } from '../../src/storage/blob-store.js';

function chunksOf(...parts: string[]): PositionedChunk[] {
  let start = 0;
  return parts.map((part) => {
    const chunk = Buffer.from(part);
    const entry = { start, chunk };
    start += chunk.byteLength;
    return entry;
  });
}

void describe('sliceOfChunks', () => {
  const chunks = chunksOf('abc', 'defg', 'h', 'ijklm');

  void it('answers from the chunk that holds the position, never past its end, without a copy', () => {
    assert.equal(sliceOfChunks(chunks, 0, 100).toString(), 'abc');
    assert.equal(sliceOfChunks(chunks, 4, 100).toString(), 'efg');
    assert.equal(sliceOfChunks(chunks, 4, 2).toString(), 'ef');
    assert.equal(sliceOfChunks(chunks, 7, 5).toString(), 'h');
    assert.equal(sliceOfChunks(chunks, 12, 5).toString(), 'm');
    const own = chunksOf('abc', 'defg');
    sliceOfChunks(own, 4, 2)[0] = 'X'.charCodeAt(0);
    assert.equal((own[1] as PositionedChunk).chunk.toString(), 'dXfg', 'a view of the held chunk, not a copy');
  });

  void it('is empty for a position no chunk holds: past the end, before the first held chunk, or with none', () => {
    assert.equal(sliceOfChunks(chunks, 13, 4).byteLength, 0);
    assert.equal(sliceOfChunks([], 0, 4).byteLength, 0);
    // A writer that flushed its first bytes holds only the later ones.
    assert.equal(sliceOfChunks(chunks.slice(2), 3, 4).byteLength, 0);
    assert.equal(sliceOfChunks(chunks.slice(2), 8, 4).toString(), 'ijkl');
  });
});
