// Bench part "s3" (issue 16): both mirrors on the same S3 server, in one run. Longshore on its
// S3 driver and the reference registry in proxy mode on its own `s3` storage driver, each in a
// bucket of its own on one OpenStack Swift (s3api, test/harness/swift.ts), both streaming
// (no redirects: the reference's `redirect.disable`, Longshore's `redirect: false`), both
// reaching the upstream through a counting proxy. Measured per run, systems alternating:
//   s3_hit16_MBps         16 concurrent GETs of a 200 MiB blob both have stored in S3
//   s3_cold_total_s/ttfb  one GET of a 200 MiB blob neither has seen (a fresh one per run)
//   s3_cold_stored_s      from that GET's start until the blob is in the mirror's bucket
//                         (the reference stores in the background, after it served the GET)
//   s3_cold_upstream_MB   what the upstream sent for that cold blob (one copy: 209.7 MB),
//                         counted after the reference's background store finished too
//   s3_hit_cpu_s          CPU seconds (user + system, all threads, /proc/PID/stat) the mirror
//                         process spent per 200 MiB hit, over the 16 hits: on 2 cores shared with
//                         Swift and curl, CPU per byte is what decides the throughput
//   s3_cold_cpu_s         the same for the cold miss, until it is stored
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { startCountingProxy } from '../../test/harness/counting-proxy.js';
import { REPO_ROOT, startLongshore } from '../../test/harness/longshore.js';
import { startRegistry } from '../../test/harness/registry.js';
import { s3StorageConfig, startSwift } from '../../test/harness/swift.js';
import { pollUntil } from '../../test/harness/wait.js';
import { cpuSeconds, curlGet, parallelGets } from '../lib/measure.js';
import type { BenchPartContext } from '../lib/part.js';

export interface S3PartContext extends BenchPartContext {
  /** A 200 MiB blob already in the upstream, for the hits: its repository path and digest. */
  bigBlob: { repository: string; digest: string; size: number };
  /** Orders systems differently per run. */
  rotate<T>(items: readonly T[], run: number): T[];
}

/** Rows for the bench table (the shape of bench/run.ts's Row). */
export const S3_ROWS = [
  { label: 'S3: hit throughput, 16 clients (MB/s)', metric: 's3_hit16_MBps', digits: 0, target: '>= 1.0x reference' },
  { label: 'S3: cold miss total (s)', metric: 's3_cold_total_s', digits: 3, target: '<= 1.0x reference' },
  { label: 'S3: cold miss TTFB (ms)', metric: 's3_cold_ttfb_ms', digits: 1, target: '' },
  { label: 'S3: cold miss until stored in S3 (s)', metric: 's3_cold_stored_s', digits: 3, target: '' },
  { label: 'S3: cold miss, upstream MB', metric: 's3_cold_upstream_MB', digits: 1, target: 'one copy' },
  { label: 'S3: CPU per 200 MiB hit (s)', metric: 's3_hit_cpu_s', digits: 3, target: '' },
  { label: 'S3: CPU of the cold miss (s)', metric: 's3_cold_cpu_s', digits: 3, target: '' },
];

/** CPU spent between two samples, as "thread=seconds" by name, the busiest first. */
function describeCpu(before: ReturnType<typeof cpuSeconds>, after: ReturnType<typeof cpuSeconds>): string {
  return [...after.threads]
    .map(([name, seconds]) => [name, seconds - (before.threads.get(name) ?? 0)] as const)
    .filter(([, seconds]) => seconds > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([name, seconds]) => `${name}=${seconds.toFixed(2)}`)
    .join(' ');
}

const SYSTEMS = ['longshore', 'reference'] as const;

/**
 * `npm run bench -- --profile`: Longshore on S3 writes a CPU profile (on its graceful stop) to a
 * directory of its own, named in the log.
 */
function profileArgs(ctx: S3PartContext): string[] {
  if (!process.argv.includes('--profile')) return [];
  const directory = mkdtempSync(join(REPO_ROOT, 'bench', 'results', 'profiles-s3-'));
  ctx.log(`s3: CPU profile of Longshore on S3 in ${directory}`);
  return ['--cpu-prof', '--cpu-prof-dir', directory];
}
const STORE_TIMEOUT_MS = 300_000;

export async function runS3Part(ctx: S3PartContext): Promise<void> {
  ctx.log('s3: starting Swift, the reference registry on its s3 driver and Longshore on S3');
  const swift = await startSwift();
  ctx.cleanups.push(() => swift.dispose());
  const client = swift.client();
  ctx.cleanups.push(() => Promise.resolve(client.destroy()));
  const proxy = await startCountingProxy(ctx.upstreamUrl);
  ctx.cleanups.push(() => proxy.close());

  const referenceBucket = await swift.createBucket();
  const longshoreBucket = await swift.createBucket();
  const reference = await startRegistry({
    proxyRemoteUrl: proxy.url,
    storageDriver: {
      s3: {
        accesskey: swift.accessKeyId,
        secretkey: swift.secretAccessKey,
        region: swift.region,
        // With an endpoint, distribution 2.8 addresses buckets path-style.
        regionendpoint: swift.endpoint,
        bucket: referenceBucket,
        secure: false,
      },
      redirect: { disable: true },
    },
  });
  ctx.cleanups.push(() => reference.dispose());
  const longshore = await startLongshore(
    { logLevel: 'warn', upstreams: [{ name: 'origin', url: proxy.url, default: true }], storage: await s3StorageConfig(swift, longshoreBucket) },
    { entry: 'dist/main.js', nodeArgs: profileArgs(ctx) },
  );
  ctx.cleanups.push(() => longshore.dispose());
  const urls: Record<(typeof SYSTEMS)[number], string> = { longshore: longshore.url, reference: reference.url };
  const pidOf = (system: (typeof SYSTEMS)[number]) => (system === 'longshore' ? longshore.process : reference.process)?.child.pid;

  /** Until the system has the blob in its bucket (the reference stores in the background, after serving). */
  const stored = (system: (typeof SYSTEMS)[number], digest: string) => {
    const hex = digest.slice('sha256:'.length);
    const [bucket, key] =
      system === 'reference' ? [referenceBucket, `docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`] : [longshoreBucket, `blobs/sha256/${hex.slice(0, 2)}/${hex}`];
    return pollUntil(
      () =>
        client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
          () => true,
          () => false,
        ),
      { timeoutMs: STORE_TIMEOUT_MS, intervalMs: 100, what: `${system} to store ${digest} in S3` },
    );
  };

  const { bigBlob } = ctx;
  const hitPath = `/v2/${bigBlob.repository}/blobs/${bigBlob.digest}`;
  ctx.log('s3: storing the hit blob in both buckets');
  for (const system of SYSTEMS) await curlGet(`${urls[system]}${hitPath}`, bigBlob.size);
  for (const system of SYSTEMS) await stored(system, bigBlob.digest);

  for (let run = 0; run < ctx.runs; run++) {
    ctx.log(`s3: run ${run + 1}/${ctx.runs}`);
    for (const system of ctx.rotate(SYSTEMS, run)) {
      ctx.settle();
      const cpuBefore = cpuSeconds(pidOf(system));
      const hits = await parallelGets(`${urls[system]}${hitPath}`, ctx.clients, bigBlob.size);
      const cpuAfter = cpuSeconds(pidOf(system));
      ctx.record('s3_hit16_MBps', system, hits.mbps);
      ctx.record('s3_hit_cpu_s', system, (cpuAfter.total - cpuBefore.total) / ctx.clients);
      ctx.log(`s3: ${system} 16 hits, CPU s by thread: ${describeCpu(cpuBefore, cpuAfter)}`);
    }
    const digest = await ctx.pushRandomBlob('perf/s3-cold', bigBlob.size);
    const blobPattern = new RegExp(`/blobs/${digest}$`);
    for (const system of ctx.rotate(SYSTEMS, run)) {
      ctx.settle();
      proxy.reset();
      const cpuBefore = cpuSeconds(pidOf(system));
      const started = performance.now();
      const download = await curlGet(`${urls[system]}/v2/perf/s3-cold/blobs/${digest}`, bigBlob.size);
      ctx.record('s3_cold_total_s', system, download.total);
      ctx.record('s3_cold_ttfb_ms', system, download.ttfb * 1000);
      await stored(system, digest); // the reference's background store GETs the blob upstream again
      ctx.record('s3_cold_stored_s', system, (performance.now() - started) / 1000);
      const cpuAfter = cpuSeconds(pidOf(system));
      ctx.record('s3_cold_cpu_s', system, cpuAfter.total - cpuBefore.total);
      ctx.log(`s3: ${system} cold miss, CPU s by thread: ${describeCpu(cpuBefore, cpuAfter)}`);
      const upstreamBytes = proxy.requests.filter((r) => r.method === 'GET' && blobPattern.test(r.path.split('?')[0] ?? '')).reduce((sum, r) => sum + r.bytesSent, 0);
      ctx.record('s3_cold_upstream_MB', system, upstreamBytes / 1e6);
    }
  }
}
