// Measuring tools for bench/run.ts. Downloads go through curl processes rather than this
// Node process: 16 parallel 200 MiB streams would otherwise be bound by one JavaScript thread
// here, and the client would be what gets measured.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from 'undici';
import { MANIFEST_ACCEPT, uploadBlob } from '../../test/harness/registry-client.js';

export interface Download {
  status: number;
  bytes: number;
  /** Seconds from start until the first body byte (curl's time_starttransfer). */
  ttfb: number;
  /** Seconds for the whole transfer. */
  total: number;
}

/** One GET with curl, body to /dev/null. Rejects unless 200 with `expectBytes` bytes. */
export function curlGet(url: string, expectBytes: number): Promise<Download> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-s', '-o', '/dev/null', '--noproxy', '*', '-w', '%{http_code} %{size_download} %{time_starttransfer} %{time_total}', url],
      { timeout: 300_000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`curl ${url}: ${error.message} ${stderr}`));
          return;
        }
        const [status, bytes, ttfb, total] = stdout.trim().split(' ').map(Number);
        const result = { status: status ?? 0, bytes: bytes ?? 0, ttfb: ttfb ?? NaN, total: total ?? NaN };
        if (result.status !== 200 || result.bytes !== expectBytes) {
          reject(new Error(`curl ${url}: status ${result.status}, ${result.bytes} bytes (expected 200 with ${expectBytes})`));
          return;
        }
        resolve(result);
      },
    );
  });
}

export interface Parallel {
  /** Wall time from the first start to the last finish, seconds. */
  wall: number;
  downloads: Download[];
  /** Aggregate MB/s (10^6 bytes). */
  mbps: number;
}

export async function parallelGets(url: string, clients: number, size: number): Promise<Parallel> {
  const started = performance.now();
  const downloads = await Promise.all(Array.from({ length: clients }, () => curlGet(url, size)));
  const wall = (performance.now() - started) / 1000;
  return { wall, downloads, mbps: (clients * size) / wall / 1e6 };
}

/**
 * Time to first body byte of `count` sequential GETs on one keep-alive connection, in ms.
 * Each body is read to the end so the connection stays reusable.
 */
export async function ttfbSeries(origin: string, path: string, count: number, headers: Record<string, string> = {}): Promise<number[]> {
  const client = new Client(origin, { pipelining: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const response = await client.request({ path, method: 'GET', headers });
      let first: number | undefined;
      for await (const _chunk of response.body) first ??= performance.now();
      if (response.statusCode !== 200) throw new Error(`GET ${origin}${path}: ${response.statusCode}`);
      times.push((first ?? performance.now()) - started);
    }
  } finally {
    await client.close();
  }
  return times;
}

export interface WrkResult {
  requestsPerSecond: number;
  non2xx: number;
  latencyAvg: string;
}

export function runWrk(url: string, opts: { threads: number; connections: number; seconds: number; headers: Record<string, string> }): Promise<WrkResult> {
  const args = [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`];
  for (const [name, value] of Object.entries(opts.headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: (opts.seconds + 30) * 1000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`wrk ${args.join(' ')}: ${error.message} ${stderr}`));
        return;
      }
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
      if (!rps?.[1]) {
        reject(new Error(`wrk output without Requests/sec:\n${stdout}`));
        return;
      }
      const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
      const latency = /Latency\s+(\S+)/.exec(stdout);
      resolve({ requestsPerSecond: Number(rps[1]), non2xx: Number(non2xx?.[1] ?? 0), latencyAvg: latency?.[1] ?? '?' });
    });
  });
}

/** Polls VmRSS of a process; `stop()` returns the highest value seen, in MB (10^6 bytes). */
export function sampleRss(pid: number, intervalMs = 20): { stop(): number } {
  let peakKb = 0;
  const read = () => {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match?.[1]) peakKb = Math.max(peakKb, Number(match[1]));
    } catch {
      // the process went away; keep what we saw
    }
  };
  read();
  const timer = setInterval(read, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      read();
      return (peakKb * 1024) / 1e6;
    },
  };
}

/** VmHWM (peak resident set since start) of a process, in MB. */
export function highWaterMb(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return (Number(match?.[1] ?? 0) * 1024) / 1e6;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Runs a command to completion with inherited output; rejects on a non-zero exit. */
export function runInherited(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'inherit' });
    child.once('error', reject);
    child.once('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}`))));
  });
}

/** Uploads `size` random bytes to `repo` on the upstream registry (staged in `dir`); returns the digest. */
export async function pushRandomBlob(dir: string, upstreamUrl: string, repo: string, size: number): Promise<string> {
  const MiB = 1024 * 1024;
  const path = join(dir, `blob-${randomBytes(4).toString('hex')}`);
  const hash = createHash('sha256');
  const file = await open(path, 'w');
  try {
    for (let written = 0; written < size; written += MiB) {
      const chunk = randomBytes(Math.min(MiB, size - written));
      hash.update(chunk);
      await file.write(chunk);
    }
  } finally {
    await file.close();
  }
  const digest = `sha256:${hash.digest('hex')}`;
  await uploadBlob(upstreamUrl, repo, digest, { path, size });
  return digest;
}

// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux everywhere).
const CLOCK_TICKS = 100;

/** utime + stime of one /proc stat line, in seconds, and the name in it ("pid (comm) state ..."). */
function statCpu(stat: string): { name: string; seconds: number } {
  // comm may hold spaces, the fields after it do not.
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { name: stat.slice(stat.indexOf('(') + 1, close), seconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS };
}

/**
 * CPU seconds (user + system) a process spent so far: in all (/proc/PID/stat, which keeps the
 * time of threads that have ended) and per live thread ("comm/tid").
 */
export function cpuSeconds(pid: number | undefined): { total: number; threads: Map<string, number> } {
  const threads = new Map<string, number>();
  if (pid === undefined) return { total: 0, threads };
  const taskDir = `/proc/${pid}/task`;
  for (const task of readdirSync(taskDir)) {
    let stat: string;
    try {
      stat = readFileSync(`${taskDir}/${task}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const { name, seconds } = statCpu(stat);
    // Node names only some of its threads: the thread id tells the others apart.
    threads.set(`${name}/${task}`, seconds);
  }
  return { total: statCpu(readFileSync(`/proc/${pid}/stat`, 'utf8')).seconds, threads };
}

/** The number after `name` on a command line (`--misses 3`), or `fallback` when it is absent. */
export function numberFlag(argv: readonly string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
}

/**
 * Manifest-by-tag requests as every bench measures them (`npm run bench`'s tags part,
 * bench/tags-ab.ts): wrk -t2 -c16 for `seconds`, and the CPU each request cost the server (all
 * threads of `pid`): wrk keeps both cores busy, so throughput alone hides what a request costs.
 */
export async function manifestRequests(url: string, pid: number | undefined, seconds: number): Promise<{ requestsPerSecond: number; cpuUsPerRequest: number }> {
  const cpuBefore = cpuSeconds(pid).total;
  const result = await runWrk(url, { threads: 2, connections: 16, seconds, headers: { accept: MANIFEST_ACCEPT } });
  const cpu = cpuSeconds(pid).total - cpuBefore;
  if (result.non2xx > 0) throw new Error(`wrk against ${url}: ${result.non2xx} non-2xx answers`);
  return { requestsPerSecond: result.requestsPerSecond, cpuUsPerRequest: (cpu * 1e6) / (result.requestsPerSecond * seconds) };
}
