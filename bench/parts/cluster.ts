// Bench part "cluster" (issue 17): 16 concurrent GETs of one blob nobody has cached, spread
// round-robin over 3 Longshore replicas (one Swift bucket, one redis-server: the e2e tests'
// test/harness/cluster.ts, from dist/ with logLevel warn), next to the same 16 GETs against a
// single Longshore process on the same S3 server. Both reach the upstream through a counting
// proxy. Per run, with a fresh blob for each system:
//   cluster_upstream_gets / single_upstream_gets       upstream GETs of that blob (target: 1)
//   cluster_ttfb_median_ms, cluster_ttfb_max_ms, ...    first-byte times of the 16 clients (curl)
//   cluster_wall_s / single_wall_s                      first start to last finish
//   cluster_peer_streams                                requests followers made to the leader
//                                                       (one per follower replica: its clients share it)
import { startCluster } from '../../test/harness/cluster.js';
import { startCountingProxy } from '../../test/harness/counting-proxy.js';
import { startLongshore } from '../../test/harness/longshore.js';
import { s3StorageConfig, startSwift } from '../../test/harness/swift.js';
import { curlGet, median } from '../lib/measure.js';
import { metricValue } from '../../test/support/prometheus-text.js';
import { performance } from 'node:perf_hooks';
import type { BenchPartContext } from '../lib/part.js';

export interface ClusterPartContext extends BenchPartContext {
  blobBytes: number;
}

/** Rows for the bench table (the shape of bench/run.ts's Row), in the Longshore column. */
export const CLUSTER_ROWS = [
  { label: '16 cold GETs, 3 replicas: upstream GETs', metric: 'cluster_upstream_gets', digits: 0, target: '1' },
  { label: '16 cold GETs, 3 replicas: TTFB median (ms)', metric: 'cluster_ttfb_median_ms', digits: 1, target: '' },
  { label: '16 cold GETs, 3 replicas: TTFB slowest (ms)', metric: 'cluster_ttfb_max_ms', digits: 1, target: '< wall / 4' },
  { label: '16 cold GETs, 3 replicas: wall (s)', metric: 'cluster_wall_s', digits: 3, target: '' },
  { label: '16 cold GETs, 3 replicas: peer streams', metric: 'cluster_peer_streams', digits: 0, target: '2' },
  { label: '16 cold GETs, 1 process on S3: upstream GETs', metric: 'single_upstream_gets', digits: 0, target: '1' },
  { label: '16 cold GETs, 1 process on S3: TTFB median (ms)', metric: 'single_ttfb_median_ms', digits: 1, target: '' },
  { label: '16 cold GETs, 1 process on S3: TTFB slowest (ms)', metric: 'single_ttfb_max_ms', digits: 1, target: '' },
  { label: '16 cold GETs, 1 process on S3: wall (s)', metric: 'single_wall_s', digits: 3, target: '' },
];

const REPOSITORY = 'perf/cluster';

export async function runClusterPart(ctx: ClusterPartContext): Promise<void> {
  ctx.log('cluster: starting Swift, Redis, 3 Longshore replicas and a single Longshore, all on S3');
  const swift = await startSwift();
  ctx.cleanups.push(() => swift.dispose());
  const proxy = await startCountingProxy(ctx.upstreamUrl);
  ctx.cleanups.push(() => proxy.close());
  const config = { logLevel: 'warn', upstreams: [{ name: 'origin', url: proxy.url, default: true }] };
  const launch = { entry: 'dist/main.js', nodeArgs: [] };
  const cluster = await startCluster({ replicas: 3, swift, config, longshore: launch });
  ctx.cleanups.push(() => cluster.dispose());
  const single = await startLongshore({ ...config, storage: await s3StorageConfig(swift) }, launch);
  ctx.cleanups.push(() => single.dispose());

  const systems: Record<'cluster' | 'single', () => string> = { cluster: () => cluster.next(), single: () => single.url };
  const peerStreams = async (): Promise<number> => {
    let total = 0;
    for (const replica of cluster.replicas) {
      const text = await (await fetch(`${replica.url}/metrics`)).text();
      total += metricValue(text, 'longshore_peer_follows_total', { result: 'completed' });
    }
    return total;
  };
  for (let run = 0; run < ctx.runs; run++) {
    for (const [system, nextUrl] of Object.entries(systems)) {
      const digest = await ctx.pushRandomBlob(REPOSITORY, ctx.blobBytes);
      ctx.settle();
      proxy.reset();
      const urls = Array.from({ length: ctx.clients }, () => `${nextUrl()}/v2/${REPOSITORY}/blobs/${digest}`);
      const streamsBefore = system === 'cluster' ? await peerStreams() : 0;
      const started = performance.now();
      const downloads = await Promise.all(urls.map((url) => curlGet(url, ctx.blobBytes)));
      const wall = (performance.now() - started) / 1000;
      const ttfbs = downloads.map((download) => download.ttfb * 1000);
      ctx.record(`${system}_upstream_gets`, 'longshore', proxy.count('GET', new RegExp(`/blobs/${digest}$`)));
      ctx.record(`${system}_ttfb_median_ms`, 'longshore', median(ttfbs));
      ctx.record(`${system}_ttfb_max_ms`, 'longshore', Math.max(...ttfbs));
      ctx.record(`${system}_wall_s`, 'longshore', wall);
      if (system === 'cluster') ctx.record('cluster_peer_streams', 'longshore', (await peerStreams()) - streamsBefore);
      ctx.log(`cluster: ${system} run ${run + 1}: wall ${wall.toFixed(2)} s, TTFB max ${Math.max(...ttfbs).toFixed(0)} ms, upstream GETs ${proxy.count('GET', /\/blobs\//)}`);
    }
  }
}
