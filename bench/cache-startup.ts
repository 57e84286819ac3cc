// Start-up time with a large cache: writes N small blobs straight into a data directory's
// layout, then times what `longshore serve` does before it listens (store init, private
// blob load, LRU index rebuild from the stored access times). Target (issue: cache lifecycle): 100,000
// blobs in under 5 s. Usage: node --import tsx bench/cache-startup.ts [count] [runs]
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { parseConfig } from '../src/config/load.js';
import { createServices } from '../src/services.js';

const count = Number(process.argv[2] ?? 100_000);
const runs = Number(process.argv[3] ?? 3);

async function seed(root: string): Promise<void> {
  const base = path.join(root, 'blobs', 'sha256');
  const dirs = new Set<string>();
  const batch: Array<Promise<void>> = [];
  for (let i = 0; i < count; i++) {
    const bytes = randomBytes(64);
    const hex = createHash('sha256').update(bytes).digest('hex');
    const dir = path.join(base, hex.slice(0, 2));
    if (!dirs.has(dir)) {
      dirs.add(dir);
      await mkdir(dir, { recursive: true });
    }
    batch.push(writeFile(path.join(dir, hex), bytes));
    if (batch.length >= 512) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

const root = await mkdtemp(path.join(os.tmpdir(), 'ls-startup-'));
try {
  const seeding = performance.now();
  await seed(root);
  console.log(`seeded ${count} blobs in ${((performance.now() - seeding) / 1000).toFixed(1)} s`);
  const config = parseConfig({ storage: { path: root, cache: { maxBytes: '10GiB' } } });
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    const services = await createServices(config, pino({ level: 'silent' }));
    times.push((performance.now() - started) / 1000);
    const indexed = (await services.cacheIndex.stats()).mirrored.objects;
    await services.close();
    if (indexed !== count) throw new Error(`index holds ${indexed} blobs, expected ${count}`);
  }
  times.sort((a, b) => a - b);
  console.log(`start-up with ${count} cached blobs: median ${times[Math.floor(times.length / 2)]!.toFixed(2)} s (runs: ${times.map((t) => t.toFixed(2)).join(', ')}; target < 5 s)`);
} finally {
  await rm(root, { recursive: true, force: true });
}
