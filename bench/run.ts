// npm run bench [-- --quick] [-- --runs N] [-- --only hit,ttfb,cold,coalesce,tags,s3,cluster] [-- --profile] [-- --no-build] [-- --node-arg=FLAG] [-- --entry FILE]
//
// Longshore (built dist/, logLevel warn) against the Go reference registry in proxy mode and
// nginx serving the same blob file with sendfile, all on 127.0.0.1 with free ports:
//   hit      cache-hit throughput of the big blob, 1 and 16 concurrent clients (curl)
//   ttfb     time to first byte of a hit, sequential GETs on one keep-alive connection (undici)
//   cold     a blob not yet cached: total time, TTFB and the mirrors' CPU, vs straight from upstream;
//            then the first hit of it
//   coalesce 16 concurrent GETs of one uncached blob: wall time, first-byte times, upstream GETs
//   tags     manifest-by-tag requests per second on a warm cache (wrk -t2 -c16), CPU per request
//   s3       16 hits and a cold miss with both mirrors on one S3 server (bench/parts/s3.ts)
//   cluster  16 cold GETs round-robin over 3 replicas on S3 + Redis, vs one process (bench/parts/cluster.ts)
// plus Longshore's peak RSS during hit and coalesce. Longshore runs with the node flags it ships
// with (the shebang of src/main.ts); --node-arg=FLAG adds one after them, for A/B runs of V8
// settings. Systems alternate within each run;
// medians over the runs are printed as a table, raw numbers go to bench/results/<time>.json.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startCountingProxy, type CountingProxy } from '../test/harness/counting-proxy.js';
import { pushDockerImage } from '../test/harness/images.js';
import { REPO_ROOT, startLongshore, type LongshoreHandle } from '../test/harness/longshore.js';
import { startRegistry, type RegistryHandle } from '../test/harness/registry.js';
import { MANIFEST_ACCEPT } from '../test/harness/registry-client.js';
import { makeTempDir } from '../test/harness/tmp.js';
import { pollUntil } from '../test/harness/wait.js';
import { startNginx } from './lib/nginx.js';
import { CLUSTER_ROWS, runClusterPart } from './parts/cluster.js';
import { runS3Part, S3_ROWS } from './parts/s3.js';
import { cpuSeconds, curlGet, highWaterMb, manifestRequests, pushRandomBlob, median, parallelGets, runInherited, runWrk, sampleRss, ttfbSeries } from './lib/measure.js';

const MiB = 1024 * 1024;
const ALL_PARTS = ['hit', 'ttfb', 'cold', 'coalesce', 'tags', 's3', 'cluster'] as const;
type Part = (typeof ALL_PARTS)[number];

function parseArgs(argv: string[]) {
  const quick = argv.includes('--quick');
  const value = (name: string): string | undefined => {
    const index = argv.indexOf(name);
    return index === -1 ? undefined : argv[index + 1];
  };
  const only = value('--only');
  const parts = new Set<Part>(only === undefined ? ALL_PARTS : (only.split(',') as Part[]));
  for (const part of parts) if (!ALL_PARTS.includes(part)) throw new Error(`--only: unknown part "${part}" (parts: ${ALL_PARTS.join(', ')})`);
  return {
    quick,
    parts,
    runs: Number(value('--runs') ?? (quick ? 1 : 3)),
    bigBytes: (quick ? 32 : 200) * MiB,
    smallBytes: 1 * MiB,
    ttfbRequests: quick ? 50 : 200,
    wrkSeconds: quick ? 2 : 5,
    clients: 16,
    profile: argv.includes('--profile'),
    /** Extra flags for Longshore's node (--node-arg=FLAG, repeatable): for A/B runs of V8 settings. */
    nodeArgs: argv.filter((arg) => arg.startsWith('--node-arg=')).map((arg) => arg.slice('--node-arg='.length)),
    build: !argv.includes('--no-build'),
    /** Another build's main.js (--entry /elsewhere/dist/main.js) for the fs parts: the same measurements of older code. */
    entry: value('--entry') ?? 'dist/main.js',
  };
}
const opts = parseArgs(process.argv.slice(2));

// Raw numbers: metric -> system -> one value per run.
const raw: Record<string, Record<string, number[]>> = {};
function record(metric: string, system: string, value: number): void {
  ((raw[metric] ??= {})[system] ??= []).push(value);
}

/** The systems in a different order each run, so none always goes first (cold page cache, warm CPU). */
function rotate<T>(items: readonly T[], run: number): T[] {
  const shift = run % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * Writes dirty pages out before a measurement: the 200 MiB pushes and cold fetches before it
 * would otherwise be flushed in the background, on the same two cores, in the middle of it.
 */
function settle(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

function log(message: string): void {
  console.error(`[bench] ${message}`);
}

/** A blob of random bytes pushed straight to the upstream (no manifest needed to pull by digest). */
function registryBlobFile(registry: RegistryHandle, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(registry.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

/** The reference mirror stores a blob in the background after serving it; wait until it has. */
async function waitUntilStored(registry: RegistryHandle, digest: string): Promise<void> {
  await pollUntil(() => Promise.resolve(existsSync(registryBlobFile(registry, digest))), {
    timeoutMs: 60_000,
    what: `the reference mirror to store ${digest}`,
  });
}

function pidOf(handle: LongshoreHandle): number {
  const pid = handle.process?.child.pid;
  if (pid === undefined) throw new Error('Longshore is not running');
  return pid;
}

const cleanups: Array<() => Promise<void>> = [];
async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.error(`[bench] clean-up failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

async function main(): Promise<void> {
  const ensure = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/ensure-test-tools.mjs'), '--bench'], { stdio: 'inherit' });
  if (ensure.status !== 0) throw new Error('bench tools missing (see above)');
  if (opts.build) await runInherited('npm', ['run', 'build', '--silent'], REPO_ROOT);
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(REPO_ROOT, 'bench/results');
  await mkdir(resultsDir, { recursive: true });
  const profileDir = join(resultsDir, `profiles-${stamp}`);

  const work = await makeTempDir('bench');
  cleanups.push(() => work.remove());

  log('starting the upstream registry and pushing images');
  const upstream = await startRegistry();
  cleanups.push(() => upstream.dispose());
  const big = await pushDockerImage(upstream.url, 'perf/big', 'v1', [opts.bigBytes]);
  const small = await pushDockerImage(upstream.url, 'perf/small', 'v1', [opts.smallBytes]);
  const bigLayer = big.layers[0];
  const smallLayer = small.layers[0];
  if (!bigLayer || !smallLayer) throw new Error('pushed images have no layers');
  const bigPath = `/v2/perf/big/blobs/${bigLayer.digest}`;
  const smallPath = `/v2/perf/small/blobs/${smallLayer.digest}`;
  const manifestPath = '/v2/perf/small/manifests/v1';

  log('starting the reference mirror, Longshore and nginx');
  const reference = await startRegistry({ proxyRemoteUrl: upstream.url });
  cleanups.push(() => reference.dispose());
  const longshoreConfig = (url: string) => ({ logLevel: 'warn', upstreams: [{ name: 'origin', url, default: true }] });
  if (opts.profile) await mkdir(profileDir, { recursive: true });
  const nodeArgs = [...opts.nodeArgs, ...(opts.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [])];
  const longshore = await startLongshore(longshoreConfig(upstream.url), { entry: opts.entry, nodeArgs });
  cleanups.push(() => longshore.dispose());
  const nginx = await startNginx({ [bigPath]: registryBlobFile(upstream, bigLayer.digest), [smallPath]: registryBlobFile(upstream, smallLayer.digest) });
  cleanups.push(() => nginx.dispose());

  // The coalescing test counts upstream GETs, so its mirrors reach the upstream through a proxy.
  let proxy: CountingProxy | undefined;
  let referenceCounted: RegistryHandle | undefined;
  let longshoreCounted: LongshoreHandle | undefined;
  if (opts.parts.has('coalesce')) {
    const counting = await startCountingProxy(upstream.url);
    proxy = counting;
    cleanups.push(() => counting.close());
    const ref = await startRegistry({ proxyRemoteUrl: counting.url });
    referenceCounted = ref;
    cleanups.push(() => ref.dispose());
    const ls = await startLongshore(longshoreConfig(counting.url), { entry: opts.entry, nodeArgs });
    longshoreCounted = ls;
    cleanups.push(() => ls.dispose());
  }

  log('warming the caches');
  for (const system of [longshore.url, reference.url]) {
    await curlGet(`${system}${bigPath}`, bigLayer.size);
    await curlGet(`${system}${smallPath}`, smallLayer.size);
    const manifest = await runWrk(`${system}${manifestPath}`, { threads: 1, connections: 1, seconds: 1, headers: { accept: MANIFEST_ACCEPT } });
    if (manifest.non2xx > 0) throw new Error(`manifest by tag from ${system}: non-2xx answers`);
  }
  await waitUntilStored(reference, bigLayer.digest);
  await waitUntilStored(reference, smallLayer.digest);

  const hitUrls: Record<string, string> = { longshore: longshore.url, reference: reference.url, nginx: nginx.url };
  const mirrorPids: Record<string, number | undefined> = { longshore: pidOf(longshore), reference: reference.process?.child.pid };
  const benchStarted = performance.now();
  for (let run = 0; run < opts.runs; run++) {
    log(`run ${run + 1}/${opts.runs}`);
    if (opts.parts.has('hit')) {
      settle();
      for (const system of rotate(Object.keys(hitUrls), run)) {
        const one = await parallelGets(`${hitUrls[system]}${bigPath}`, 1, bigLayer.size);
        record('hit1_MBps', system, one.mbps);
      }
      for (const system of rotate(Object.keys(hitUrls), run)) {
        const rss = system === 'longshore' ? sampleRss(pidOf(longshore)) : undefined;
        const many = await parallelGets(`${hitUrls[system]}${bigPath}`, opts.clients, bigLayer.size);
        record('hit16_MBps', system, many.mbps);
        if (rss) record('rss_hit16_MB', system, rss.stop());
      }
    }
    if (opts.parts.has('ttfb')) {
      for (const system of rotate(Object.keys(hitUrls), run)) {
        record('hit_ttfb_ms', system, median(await ttfbSeries(hitUrls[system] as string, smallPath, opts.ttfbRequests)));
      }
    }
    if (opts.parts.has('cold')) {
      const digest = await pushRandomBlob(work.path, upstream.url, 'perf/cold', opts.bigBytes);
      const coldUrls: Record<string, string> = { longshore: longshore.url, reference: reference.url, direct: upstream.url };
      for (const system of rotate(Object.keys(coldUrls), run)) {
        settle();
        const pid = mirrorPids[system];
        const cpuBefore = cpuSeconds(pid).total;
        const download = await curlGet(`${coldUrls[system]}/v2/perf/cold/blobs/${digest}`, opts.bigBytes);
        record('cold_total_s', system, download.total);
        record('cold_ttfb_ms', system, download.ttfb * 1000);
        // All threads of the mirror (Longshore: event loop, hash and file-write threads, GC).
        if (pid !== undefined) record('cold_cpu_s', system, cpuSeconds(pid).total - cpuBefore);
        // Its second GET and its file must not run into the next system's measurement.
        if (system === 'reference') await waitUntilStored(reference, digest);
      }
      // The first hit after the miss, of the blob as the miss left it: Longshore wrote it with
      // O_DIRECT, so it is read from the disk into the page cache now; the reference wrote it
      // through the page cache.
      for (const system of rotate(['longshore', 'reference'], run)) {
        settle();
        const hit = await curlGet(`${coldUrls[system]}/v2/perf/cold/blobs/${digest}`, opts.bigBytes);
        record('cold_first_hit_s', system, hit.total);
      }
    }
    if (proxy && longshoreCounted && referenceCounted) {
      const digest = await pushRandomBlob(work.path, upstream.url, 'perf/cold', opts.bigBytes);
      const counted: Record<string, string> = { longshore: longshoreCounted.url, reference: referenceCounted.url };
      const blobPattern = new RegExp(`/blobs/${digest}$`);
      for (const system of rotate(Object.keys(counted), run)) {
        settle();
        proxy.reset();
        const rss = system === 'longshore' ? sampleRss(pidOf(longshoreCounted)) : undefined;
        const result = await parallelGets(`${counted[system]}/v2/perf/cold/blobs/${digest}`, opts.clients, opts.bigBytes);
        if (rss) record('rss_coalesce_MB', system, rss.stop());
        if (system === 'reference') await waitUntilStored(referenceCounted, digest); // its background store GETs too
        const ttfbs = result.downloads.map((download) => download.ttfb * 1000);
        record('coalesce_wall_s', system, result.wall);
        record('coalesce_ttfb_median_ms', system, median(ttfbs));
        record('coalesce_ttfb_max_ms', system, Math.max(...ttfbs));
        record('coalesce_upstream_gets', system, proxy.count('GET', blobPattern));
      }
    }
    if (opts.parts.has('tags')) {
      for (const system of rotate(['longshore', 'reference'], run)) {
        const result = await manifestRequests(`${hitUrls[system]}${manifestPath}`, mirrorPids[system], opts.wrkSeconds);
        record('tags_rps', system, result.requestsPerSecond);
        record('tags_cpu_us', system, result.cpuUsPerRequest);
      }
    }
  }
  if (opts.parts.has('s3')) await runS3Part({ upstreamUrl: upstream.url, bigBlob: { repository: 'perf/big', digest: bigLayer.digest, size: bigLayer.size }, pushRandomBlob: (repo, size) => pushRandomBlob(work.path, upstream.url, repo, size), runs: opts.runs, clients: opts.clients, record, log, cleanups, rotate, settle });
  if (opts.parts.has('cluster')) await runClusterPart({ upstreamUrl: upstream.url, pushRandomBlob: (repo, size) => pushRandomBlob(work.path, upstream.url, repo, size), blobBytes: opts.bigBytes, runs: opts.runs, clients: opts.clients, record, log, cleanups, settle });
  const benchSeconds = (performance.now() - benchStarted) / 1000;
  const hwm = { longshore: highWaterMb(pidOf(longshore)), longshoreCoalesce: longshoreCounted ? highWaterMb(pidOf(longshoreCounted)) : undefined };

  // Stop before reporting, so --profile's .cpuprofile files are written (on graceful exit).
  await cleanUp();
  cleanups.length = 0;

  const medians: Record<string, Record<string, number>> = {};
  for (const [metric, systems] of Object.entries(raw)) {
    medians[metric] = Object.fromEntries(Object.entries(systems).map(([system, values]) => [system, median(values)]));
  }
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  printTable(medians, command, benchSeconds);
  console.log(`Longshore VmHWM (peak RSS since start): main ${hwm.longshore.toFixed(0)} MB${hwm.longshoreCoalesce === undefined ? '' : `, coalesce instance ${hwm.longshoreCoalesce.toFixed(0)} MB`}`);

  const resultFile = join(resultsDir, `${stamp}.json`);
  await writeFile(
    resultFile,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        command,
        environment: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, platform: process.platform },
        settings: { ...opts, parts: [...opts.parts], bigBlobBytes: bigLayer.size, smallBlobBytes: smallLayer.size, longshoreLogLevel: 'warn' },
        medians,
        raw,
        longshoreHighWaterMb: hwm,
        benchSeconds,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`raw numbers: ${resultFile}`);
  if (opts.profile) console.log(`CPU profiles of Longshore: ${profileDir}`);
}

interface Row {
  label: string;
  metric: string;
  /** The third column: nginx for hits, the upstream itself for cold pulls. */
  baseline?: 'nginx' | 'direct';
  digits: number;
  target: string;
}

const ROWS: Row[] = [
  { label: 'hit throughput, 1 client (MB/s)', metric: 'hit1_MBps', baseline: 'nginx', digits: 0, target: '' },
  { label: 'hit throughput, 16 clients (MB/s)', metric: 'hit16_MBps', baseline: 'nginx', digits: 0, target: '>= 0.9x nginx' },
  { label: 'hit TTFB, 1 MiB blob (ms, median)', metric: 'hit_ttfb_ms', baseline: 'nginx', digits: 2, target: '<= 2 ms' },
  { label: 'cold miss total (s)', metric: 'cold_total_s', baseline: 'direct', digits: 3, target: '<= 1.0x ref (stretch 1.5x direct)' },
  { label: 'cold miss TTFB (ms)', metric: 'cold_ttfb_ms', baseline: 'direct', digits: 1, target: '' },
  { label: 'cold miss CPU, all threads (s)', metric: 'cold_cpu_s', digits: 2, target: '' },
  { label: 'first hit after the cold miss (s)', metric: 'cold_first_hit_s', digits: 3, target: '' },
  { label: '16 cold GETs: wall (s)', metric: 'coalesce_wall_s', digits: 3, target: '' },
  { label: '16 cold GETs: TTFB median (ms)', metric: 'coalesce_ttfb_median_ms', digits: 1, target: '' },
  { label: '16 cold GETs: TTFB slowest (ms)', metric: 'coalesce_ttfb_max_ms', digits: 1, target: '' },
  { label: '16 cold GETs: upstream GETs', metric: 'coalesce_upstream_gets', digits: 0, target: '1' },
  { label: 'manifest by tag (req/s, wrk -t2 -c16)', metric: 'tags_rps', digits: 0, target: '>= 30x reference' },
  { label: 'manifest by tag: CPU per request (us)', metric: 'tags_cpu_us', digits: 1, target: '' },
  { label: 'Longshore peak RSS, 16 hits (MB)', metric: 'rss_hit16_MB', digits: 0, target: '<= 150 MB' },
  { label: 'Longshore peak RSS, 16 cold GETs (MB)', metric: 'rss_coalesce_MB', digits: 0, target: '<= 150 MB' },
  ...S3_ROWS,
  ...CLUSTER_ROWS,
];

function printTable(medians: Record<string, Record<string, number>>, command: string, seconds: number): void {
  const fmt = (value: number | undefined, digits: number) => (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`);
  const header = ['metric', 'Longshore', 'reference', 'nginx/direct', 'L/ref', 'L/nginx|direct', 'target'];
  const lines: string[][] = [header];
  for (const row of ROWS) {
    const values = medians[row.metric];
    if (!values) continue;
    const base = row.baseline ? values[row.baseline] : undefined;
    lines.push([
      row.label,
      fmt(values.longshore, row.digits),
      fmt(values.reference, row.digits),
      row.baseline ? `${fmt(base, row.digits)} (${row.baseline})` : '',
      ratio(values.longshore, values.reference),
      row.baseline ? ratio(values.longshore, base) : '',
      row.target,
    ]);
  }
  const widths = header.map((_, column) => Math.max(...lines.map((line) => (line[column] ?? '').length)));
  console.log('');
  console.log(`${command}: medians of ${opts.runs} run(s), big blob ${opts.bigBytes / MiB} MiB, ${cpus().length} CPUs, ${seconds.toFixed(0)} s of measuring`);
  console.log('Longshore runs from dist/ with logLevel: warn (request logging out of the measurement); MB = 10^6 bytes.');
  console.log('Downloads by curl to /dev/null; "16 cold GETs" go through a counting proxy to the upstream for both mirrors.');
  for (const [index, line] of lines.entries()) {
    console.log(line.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  '));
    if (index === 0) console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  }
  console.log('');
}

try {
  await main();
} catch (error) {
  console.error(`[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
