// node --import tsx bench/tags-ab.ts [--rounds N] [--seconds N] NAME=ENTRY[,FLAG...][,idle-timeout-off] ...
//
// Manifest-by-tag requests of several Longshore builds or settings, side by side: every
// variant runs at once against one upstream, and each round gives each of them one wrk run
// (-t2 -c16), in alternating order. On this project's shared 2-CPU machine one process can run
// at half speed for seconds while another beside it does not, so a single `npm run bench` can
// put two builds 30% apart either way; paired rounds and their medians separate a real
// difference of a few percent from that. Per variant: requests/s and the server's CPU per
// request (all threads, /proc), median and every round; with two variants, the median of the
// per-round ratios of the second to the first.
//   ENTRY  a built main.js: dist/main.js, or an older commit's built in a worktree
//   FLAG   node flags after the shipped ones, e.g. --max-semi-space-size=16
//   idle-timeout-off  http.bodyIdleTimeout: 0 (no socket idle timer, as before issue 14)
// Example: bench/tags-ab.ts old=/tmp/wt-old/dist/main.js,--max-semi-space-size=16 new=dist/main.js
import { pushDockerImage } from '../test/harness/images.js';
import { startLongshore, type LongshoreHandle } from '../test/harness/longshore.js';
import { startRegistry } from '../test/harness/registry.js';
import { manifestRequests, median, numberFlag } from './lib/measure.js';

const IDLE_TIMEOUT_OFF = 'idle-timeout-off';
const MANIFEST_PATH = '/v2/perf/small/manifests/v1';

interface Variant {
  name: string;
  entry: string;
  nodeArgs: string[];
  idleTimeoutOff: boolean;
}

function parseVariant(spec: string): Variant {
  const at = spec.indexOf('=');
  if (at <= 0) throw new Error(`variant "${spec}": expected NAME=ENTRY[,FLAG...][,${IDLE_TIMEOUT_OFF}]`);
  const [entry, ...rest] = spec.slice(at + 1).split(',');
  if (!entry) throw new Error(`variant "${spec}": no entry`);
  return { name: spec.slice(0, at), entry, nodeArgs: rest.filter((arg) => arg !== IDLE_TIMEOUT_OFF), idleTimeoutOff: rest.includes(IDLE_TIMEOUT_OFF) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rounds = numberFlag(argv, '--rounds', 20);
  const seconds = numberFlag(argv, '--seconds', 3);
  const variants = argv.filter((arg, index) => !arg.startsWith('--') && !argv[index - 1]?.startsWith('--')).map(parseVariant);
  if (variants.length === 0) throw new Error('name at least one variant: NAME=ENTRY[,FLAG...]');

  const upstream = await startRegistry();
  const servers: Array<Variant & { handle: LongshoreHandle; rps: number[]; cpuUs: number[] }> = [];
  try {
    await pushDockerImage(upstream.url, 'perf/small', 'v1', [1024 * 1024]);
    for (const variant of variants) {
      const config = { logLevel: 'warn', upstreams: [{ name: 'origin', url: upstream.url, default: true }], ...(variant.idleTimeoutOff ? { http: { bodyIdleTimeout: 0 } } : {}) };
      servers.push({ ...variant, handle: await startLongshore(config, { entry: variant.entry, nodeArgs: variant.nodeArgs }), rps: [], cpuUs: [] });
    }
    const measure = (server: (typeof servers)[number], runSeconds: number) => manifestRequests(`${server.handle.url}${MANIFEST_PATH}`, server.handle.process?.child.pid, runSeconds);
    for (const server of servers) await measure(server, 2); // tag cached, code optimized
    for (let round = 0; round < rounds; round++) {
      for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
        const result = await measure(server, seconds);
        server.rps.push(result.requestsPerSecond);
        server.cpuUs.push(result.cpuUsPerRequest);
      }
    }
  } finally {
    for (const server of servers) await server.handle.dispose();
    await upstream.dispose();
  }
  console.log(`manifest by tag, wrk -t2 -c16, ${rounds} rounds of ${seconds} s per variant`);
  for (const server of servers) {
    console.log(`${server.name}: ${Math.round(median(server.rps))} req/s, ${median(server.cpuUs).toFixed(1)} µs CPU per request (medians)`);
    console.log(`  req/s by round: ${server.rps.map((value) => Math.round(value)).join(' ')}`);
    console.log(`  µs by round:    ${server.cpuUs.map((value) => value.toFixed(0)).join(' ')}`);
  }
  const [first, second] = servers;
  if (servers.length === 2 && first && second) {
    console.log(`${second.name} / ${first.name}, median of per-round ratios: req/s ${median(second.rps.map((value, index) => value / (first.rps[index] ?? NaN))).toFixed(3)}, µs ${median(second.cpuUs.map((value, index) => value / (first.cpuUs[index] ?? NaN))).toFixed(3)}`);
  }
}

await main();
