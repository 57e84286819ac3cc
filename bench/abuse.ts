// npm run bench:abuse [-- --seconds N] [-- --login-rate N] [-- --only logins,headers,bodies] [-- --baseline DIR]
//
// Issue 14's load scenario for points 1-2: the p95 latency of a cached pull (manifest by tag,
// config and a 1 MiB layer, from a warm cache) while anonymous clients abuse the server,
// against the same figure on a quiet server. The goal: within 2x of the quiet figure.
//
// Abuse, all at once, from 127.0.0.1:
//   logins   GET /v2/ with Basic credentials at --login-rate per second (default 100): wrong
//            passwords for a cost-10 account (what sign-up creates: ~50 ms of bcrypt each)
//            and unknown names
//   headers  200 connections sending their request headers one byte every 2 s (slowloris)
//   bodies   50 connections sending 64 KiB of a 1 MiB sign-up body, then nothing
// Two server settings: the defaults, and with the failed-login limits off (every guess then
// reaches bcrypt; only the worker pool and its bounded queue stand between it and the pulls).
//
// With --baseline DIR, the same scenario also runs against DIR/src/main.ts (a checkout of the
// code before the fix), with the keys that code knows.
// Longshore runs as a child process (src/main.ts under tsx), the upstream is the real Go
// registry; numbers go to stdout and bench/results/abuse-<time>.json.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import bcrypt from 'bcryptjs';
import { Agent, request } from 'undici';
import { pushDockerImage } from '../test/harness/images.js';
import { REPO_ROOT, startLongshore, type LongshoreHandle } from '../test/harness/longshore.js';
import { startRegistry } from '../test/harness/registry.js';
import { MANIFEST_ACCEPT } from '../test/harness/registry-client.js';
import { makeTempDir } from '../test/harness/tmp.js';

function option(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
}
const seconds = Number(option('--seconds') ?? 20);
// The issue saw ~20 guesses/s stall every pull for seconds; five times that by default.
const loginRate = Number(option('--login-rate') ?? 100);
// A checkout of the code before the fix (e.g. the main branch) to measure the same way.
const baseline = option('--baseline');
// Which abuse runs (all by default), to see what each one costs.
const kinds = new Set((option('--only') ?? 'logins,headers,bodies').split(','));
const PULLERS = 4;
const MAX_GUESSES_IN_FLIGHT = 512;

interface Image {
  repository: string;
  tag: string;
  configDigest: string;
  layerDigest: string;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

// A pull that takes longer counts as failed, at this latency (an old server under abuse can
// take minutes per request).
const PULL_TIMEOUT_MS = 30_000;

/** Cached pulls by PULLERS loops for `ms`; each pull's latency in milliseconds. */
async function measurePulls(url: string, image: Image, ms: number): Promise<number[]> {
  const agent = new Agent({ connections: PULLERS, headersTimeout: PULL_TIMEOUT_MS, bodyTimeout: PULL_TIMEOUT_MS });
  const latencies: number[] = [];
  const until = performance.now() + ms;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const response = await request(`${url}${path}`, { dispatcher: agent, headers });
    await response.body.dump({ limit: 64 * 1024 * 1024 });
    if (response.statusCode !== 200) throw new Error(`GET ${path}: ${response.statusCode}`);
  };
  await Promise.all(
    Array.from({ length: PULLERS }, async () => {
      while (performance.now() < until) {
        const began = performance.now();
        try {
          await get(`/v2/${image.repository}/manifests/${image.tag}`, { accept: MANIFEST_ACCEPT });
          await get(`/v2/${image.repository}/blobs/${image.configDigest}`);
          await get(`/v2/${image.repository}/blobs/${image.layerDigest}`);
          latencies.push(performance.now() - began);
        } catch {
          latencies.push(Math.max(PULL_TIMEOUT_MS, performance.now() - began));
        }
      }
    }),
  );
  await agent.close();
  return latencies;
}

interface Abuse {
  stop(): Promise<void>;
  statuses: Record<string, number>;
}

function startAbuse(url: string): Abuse {
  const { hostname, port } = new URL(url);
  let running = true;
  const statuses: Record<string, number> = {};
  const count = (key: string) => (statuses[key] = (statuses[key] ?? 0) + 1);
  // Login guesses at a fixed rate, whatever the answers take (an attacker does not wait):
  // half wrong passwords for the real (cost-10) account, half unknown names.
  const agent = new Agent({ connections: 128, headersTimeout: PULL_TIMEOUT_MS, bodyTimeout: PULL_TIMEOUT_MS });
  let inFlight = 0;
  const guess = async (n: number) => {
    const user = n % 2 ? 'alice' : `ghost${randomBytes(4).toString('hex')}`;
    const authorization = `Basic ${Buffer.from(`${user}:${randomBytes(6).toString('hex')}`).toString('base64')}`;
    inFlight++;
    try {
      const response = await request(`${url}/v2/`, { dispatcher: agent, headers: { authorization } });
      await response.body.dump();
      count(`login ${response.statusCode}`);
    } catch {
      count('login error');
    } finally {
      inFlight--;
    }
  };
  let sent = 0;
  const started = performance.now();
  const loginTimer = setInterval(() => {
    if (!kinds.has('logins')) return;
    const due = Math.floor(((performance.now() - started) / 1000) * loginRate) - sent;
    for (let i = 0; i < due; i++) {
      sent++;
      if (inFlight >= MAX_GUESSES_IN_FLIGHT) count('login skipped (too many in flight)');
      else void guess(sent);
    }
  }, 10);
  const sockets = new Set<net.Socket>();
  const open = (kind: 'headers' | 'bodies') => {
    if (!running) return;
    const socket = net.connect(Number(port), hostname);
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      if (!running) return; // closed by stop(), not by the server
      count(`${kind} closed by server`);
      setTimeout(() => open(kind), 100);
    });
    if (kind === 'headers') {
      socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => socket.writable && socket.write('X'), 2000);
      socket.on('close', () => clearInterval(drip));
    } else {
      socket.write(`POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${1024 * 1024}\r\n\r\n`);
      socket.write(Buffer.alloc(64 * 1024, 0x20));
    }
  };
  if (kinds.has('headers')) for (let i = 0; i < 200; i++) open('headers');
  if (kinds.has('bodies')) for (let i = 0; i < 50; i++) open('bodies');
  return {
    statuses,
    stop: async () => {
      running = false;
      clearInterval(loginTimer);
      while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      for (const socket of sockets) socket.destroy();
      await agent.close();
    },
  };
}

async function scenario(name: string, config: Record<string, unknown>, image: Image, entry?: string) {
  const server: LongshoreHandle = await startLongshore({ ...config, logLevel: 'warn' }, entry ? { entry } : {});
  try {
    await measurePulls(server.url, image, 2000); // warm: everything cached, connections open
    const quiet = await measurePulls(server.url, image, seconds * 1000);
    const abuse = startAbuse(server.url);
    await new Promise((resolve) => setTimeout(resolve, 2000)); // let the abuse ramp up
    const underAbuse = await measurePulls(server.url, image, seconds * 1000);
    await abuse.stop();
    const summary = {
      name,
      quiet: { pulls: quiet.length, p50: percentile(quiet, 50), p95: percentile(quiet, 95) },
      abuse: { pulls: underAbuse.length, p50: percentile(underAbuse, 50), p95: percentile(underAbuse, 95) },
      ratioP95: percentile(underAbuse, 95) / percentile(quiet, 95),
      attackerOutcomes: abuse.statuses,
      serverErrorLines: server.logs.filter((line) => (line.level as number) >= 50).length,
    };
    return summary;
  } finally {
    await server.dispose();
  }
}

async function main(): Promise<void> {
  const work = await makeTempDir('bench-abuse');
  const upstream = await startRegistry();
  try {
    const pushed = await pushDockerImage(upstream.url, 'bench/app', 'v1', [1024 * 1024]);
    const image: Image = { repository: 'bench/app', tag: 'v1', configDigest: pushed.configDigest, layerDigest: pushed.layers[0]?.digest ?? '' };
    const htpasswd = join(work.path, 'htpasswd');
    // Cost 10, as v1 sign-up writes accounts: the dearest check an attacker can ask for.
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('wonderland', 10).replace(/^\$2b\$/, '$2y$')}\n`);
    const base = {
      auth: { htpasswd, allowSignup: true },
      upstreams: [{ name: 'up', url: upstream.url, default: true, tagTtl: '1h' }],
    };
    const results = [
      ...(baseline ? [await scenario('before the fix', base, image, join(baseline, 'src', 'main.ts'))] : []),
      await scenario('defaults', base, image),
      await scenario('login limits off', { ...base, auth: { ...base.auth, loginFailures: { perAddress: 0, perUser: 0 } } }, image),
    ];
    const fmt = (n: number) => n.toFixed(1).padStart(8);
    console.log(`\ncached pull (manifest + config + 1 MiB layer), ${PULLERS} clients, ${seconds} s per phase, ${loginRate} login guesses/s; milliseconds`);
    console.log(`${'settings'.padEnd(18)}${'quiet p50'.padStart(10)}${'quiet p95'.padStart(10)}${'abuse p50'.padStart(10)}${'abuse p95'.padStart(10)}  p95 ratio`);
    for (const r of results) {
      console.log(`${r.name.padEnd(18)}${fmt(r.quiet.p50)}  ${fmt(r.quiet.p95)}  ${fmt(r.abuse.p50)}  ${fmt(r.abuse.p95)}    ${r.ratioP95.toFixed(2)}x`);
      console.log(`  attackers: ${JSON.stringify(r.attackerOutcomes)}; error-level log lines: ${r.serverErrorLines}`);
    }
    const dir = join(REPO_ROOT, 'bench', 'results');
    await mkdir(dir, { recursive: true });
    const file = join(dir, `abuse-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, `${JSON.stringify({ seconds, pullers: PULLERS, loginRate, abuse: [...kinds], results }, null, 2)}\n`);
    console.log(`raw: ${file}`);
  } finally {
    await upstream.dispose();
    await work.remove();
  }
}

await main();
