// node --import tsx bench/rss-breakdown.ts [--no-build] [--clients N] [--cold-clients N] [--mib N] [--smaps] [--node-arg=...]
//
// Where the resident memory of the hit and cold-GET rows goes: samples /proc/PID/status
// (anonymous vs file-backed pages) and the server's own /metrics (V8 heap, external memory)
// while N clients pull one 200 MiB blob, first cold (all N at once), then as hits.
import { readFileSync } from 'node:fs';
import { startLongshore, REPO_ROOT } from '../test/harness/longshore.js';
import { startRegistry } from '../test/harness/registry.js';
import { makeTempDir } from '../test/harness/tmp.js';
import { numberFlag, parallelGets, pushRandomBlob, runInherited } from './lib/measure.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => numberFlag(argv, name, fallback);
const clients = flag('--clients', 16);
const coldClients = flag('--cold-clients', clients);
const bytes = flag('--mib', 200) * 1024 * 1024;
const MB = 1e6;

function status(pid: number): { rss: number; anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** The mappings holding the most resident memory (from /proc/PID/smaps), one per line. */
function largestMappings(pid: number, count: number): string {
  const mappings: { name: string; size: number; rss: number }[] = [];
  let current: { name: string; size: number; rss: number } | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      current = { name: header[3] || '[anon]', size: (parseInt(header[2] ?? '0', 16) - parseInt(header[1] ?? '0', 16)) / 1024, rss: 0 };
      mappings.push(current);
    } else if (current && line.startsWith('Rss:')) current.rss = Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  return mappings
    .sort((a, b) => b.rss - a.rss)
    .slice(0, count)
    .map((m) => `  ${(m.rss / 1024).toFixed(1).padStart(6)} MB resident of ${(m.size / 1024).toFixed(1).padStart(7)} MB  ${m.name}`)
    .join('\n');
}

async function metrics(url: string): Promise<{ heapTotal: number; heapUsed: number; external: number; spaces: string }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const spaces = [...text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)]
    .filter((match) => Number(match[2]) > 1e6)
    .map((match) => `${match[1]} ${(Number(match[2]) / 1e6).toFixed(1)}`)
    .join(', ');
  return { heapTotal: value('nodejs_heap_size_total_bytes'), heapUsed: value('nodejs_heap_size_used_bytes'), external: value('nodejs_external_memory_bytes'), spaces };
}

async function sampled(label: string, pid: number, url: string, work: () => Promise<unknown>): Promise<void> {
  let peak = status(pid);
  let peakMetrics = await metrics(url);
  let peakMappings = '';
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const now = status(pid);
      if (now.rss > peak.rss) {
        peak = now;
        peakMetrics = await metrics(url).catch(() => peakMetrics);
        if (argv.includes('--smaps')) peakMappings = largestMappings(pid, 8);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  await work();
  stop = true;
  await loop;
  const after = status(pid);
  const fmt = (n: number | undefined) => ((n ?? NaN) / MB).toFixed(1);
  console.log(
    `${label}: peak RSS ${fmt(peak.rss)} MB (anon ${fmt(peak.anon)}, file ${fmt(peak.file)}); near the peak heap ${fmt(peakMetrics.heapUsed)}/${fmt(peakMetrics.heapTotal)}, external ${fmt(peakMetrics.external)} (spaces: ${peakMetrics.spaces}); after ${fmt(after.rss)}`,
  );
  if (peakMappings) console.log(peakMappings);
}

async function main(): Promise<void> {
  if (!argv.includes('--no-build')) await runInherited('npm', ['run', 'build', '--silent'], REPO_ROOT);
  const work = await makeTempDir('rss-breakdown');
  const upstream = await startRegistry();
  const longshore = await startLongshore({ logLevel: 'warn', upstreams: [{ name: 'origin', url: upstream.url, default: true }] }, {
    entry: 'dist/main.js',
    nodeArgs: argv.filter((arg) => arg.startsWith('--node-arg=')).map((arg) => arg.slice('--node-arg='.length)),
  });
  try {
    const pid = longshore.process?.child.pid;
    if (pid === undefined) throw new Error('Longshore is not running');
    const digest = await pushRandomBlob(work.path, upstream.url, 'perf/cold', bytes);
    const path = `${longshore.url}/v2/perf/cold/blobs/${digest}`;
    const idle = status(pid);
    console.log(`idle: RSS ${(idle.rss / MB).toFixed(1)} MB (anon ${(idle.anon / MB).toFixed(1)}, file ${(idle.file / MB).toFixed(1)})`);
    await sampled(`${coldClients} cold GETs`, pid, longshore.url, () => parallelGets(path, coldClients, bytes));
    for (let round = 1; round <= 3; round++) await sampled(`${clients} hits, round ${round}`, pid, longshore.url, () => parallelGets(path, clients, bytes));
  } finally {
    await longshore.dispose();
    await upstream.dispose();
    await work.remove();
  }
}

await main();
