// node --import tsx bench/page-cache-writes.ts [--files N] [--mib N] [--unlink | --rewrite]
//
// What writing a blob's bytes into the page cache costs this machine, outside Longshore: N files
// of 200 MiB, each written as a cold miss writes its temp file (1 MiB pwritev batches of 64 KiB
// buffers, here the same buffers every time, so no page faults of our own), with the CPU this
// process spent per file (all threads: the writes run on libuv's pool) and the wall time.
// By default the files are kept, as a cache keeps its blobs, and the page cache grows into memory
// it has not used yet; with --unlink each file is deleted after it is written, and the next one
// reuses its pages. On this project's 2-CPU VM the two differ about tenfold once the page cache
// grows (issue 19: what a cold miss cannot go below here). With --rewrite each kept file is
// then written over once more from byte 0, as the S3 driver's kept scratch files are
// (spare-files.ts), and that second write is timed too.
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../test/harness/tmp.js';
import { cpuSeconds, numberFlag } from './lib/measure.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => numberFlag(argv, name, fallback);
const files = flag('--files', 6);
const bytes = flag('--mib', 200) * 1024 * 1024;
const unlinkEach = argv.includes('--unlink');
const rewrite = argv.includes('--rewrite');
const CHUNK = 64 * 1024;
const BATCH = 16;

async function main(): Promise<void> {
  const dir = await makeTempDir('page-cache');
  const buffers = Array.from({ length: BATCH }, (_, i) => Buffer.alloc(CHUNK, i));
  try {
    for (let i = 0; i < files; i++) {
      const file = join(dir.path, `blob-${i}`);
      const handle = await open(file, 'wx+');
      const timed = async (what: string) => {
        const cpuBefore = cpuSeconds(process.pid).total;
        const started = performance.now();
        for (let position = 0; position < bytes; ) position += (await handle.writev(buffers, position)).bytesWritten;
        const wall = (performance.now() - started) / 1000;
        const cpu = cpuSeconds(process.pid).total - cpuBefore;
        console.log(`file ${i + 1}: ${wall.toFixed(3)} s wall, ${cpu.toFixed(2)} s CPU for ${bytes / 1024 / 1024} MiB (${what})`);
      };
      await timed(unlinkEach ? 'deleted after' : 'kept');
      if (rewrite) await timed('written over');
      await handle.close();
      if (unlinkEach) await unlink(file);
    }
  } finally {
    await dir.remove();
  }
}

await main();
