// node --import tsx bench/cold-cpu.ts [--misses N] [--mib N] [--strace] [--no-build]
//
// CPU per cold miss, per thread of the Longshore process: each miss of a fresh random blob is
// taken between two reads of /proc/PID/task/*/stat, so the figures are that miss's own cost
// (the bench's wall times are noisy on a shared machine; CPU seconds per miss much less so).
// Threads are named by their comm (the hash worker names itself "hash-worker"). With --strace
// the system calls of one extra miss are counted (strace -c -f), for syscalls per miss. With
// --trace-gc, plus --node-arg=--trace-incremental-marking, why each major GC started.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLongshore } from '../test/harness/longshore.js';
import { startRegistry } from '../test/harness/registry.js';
import { makeTempDir } from '../test/harness/tmp.js';
import { cpuSeconds, curlGet, numberFlag, pushRandomBlob, runInherited } from './lib/measure.js';
import { REPO_ROOT } from '../test/harness/longshore.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => numberFlag(argv, name, fallback);
const misses = flag('--misses', 3);
const bytes = flag('--mib', 200) * 1024 * 1024;
const TICKS_PER_SECOND = 100;

/** CPU seconds (user, system) of every thread of `pid`, keyed by "tid comm". */
function threadCpu(pid: number): Map<string, { user: number; system: number }> {
  const result = new Map<string, { user: number; system: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      result.set(`${tid} ${comm}`, { user: Number(fields[11]) / TICKS_PER_SECOND, system: Number(fields[12]) / TICKS_PER_SECOND });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return result;
}

async function main(): Promise<void> {
  if (!argv.includes('--no-build')) await runInherited('npm', ['run', 'build', '--silent'], REPO_ROOT);
  const work = await makeTempDir('cold-cpu');
  const upstream = await startRegistry();
  const longshore = await startLongshore({ logLevel: 'warn', upstreams: [{ name: 'origin', url: upstream.url, default: true }] }, {
    entry: argv.includes('--entry') ? String(argv[argv.indexOf('--entry') + 1]) : 'dist/main.js',
    nodeArgs: [
      ...(argv.includes('--perf') ? ['--perf-basic-prof'] : []),
      ...(argv.includes('--trace-gc') ? ['--trace-gc'] : []),
      ...argv.filter((arg) => arg.startsWith('--node-arg=')).map((arg) => arg.slice('--node-arg='.length)),
    ],
  });
  try {
    const pid = longshore.process?.child.pid;
    if (pid === undefined) throw new Error('Longshore is not running');
    const digests: string[] = [];
    for (let i = 0; i < 2 * misses + 2 + (argv.includes('--perf-stat') ? misses : 0); i++) digests.push(await pushRandomBlob(work.path, upstream.url, 'perf/cold', bytes));
    const reference = await startRegistry({ proxyRemoteUrl: upstream.url });
    const referencePid = reference.process?.child.pid ?? 0;
    const upstreamPid = upstream.process?.child.pid ?? 0;
    await curlGet(`${longshore.url}/v2/perf/cold/blobs/${digests[0]}`, bytes); // warm-up (JIT)
    const totals = new Map<string, number>();
    for (let i = 1; i <= misses; i++) {
      // --gap-ms: idle time before each miss (the bench's misses are seconds apart: threads that
      // end when idle start again inside the miss).
      await new Promise((resolve) => setTimeout(resolve, flag('--gap-ms', 0)));
      const before = threadCpu(pid);
      const upstreamBefore = cpuSeconds(upstreamPid).total;
      const download = await curlGet(`${longshore.url}/v2/perf/cold/blobs/${digests[i]}`, bytes);
      const after = threadCpu(pid);
      const upstreamUsed = cpuSeconds(upstreamPid).total - upstreamBefore;
      const rows: string[] = [];
      for (const [thread, cpu] of after) {
        const was = before.get(thread) ?? { user: 0, system: 0 };
        const user = cpu.user - was.user;
        const system = cpu.system - was.system;
        if (user + system === 0) continue;
        const name = thread.split(' ').slice(1).join(' ');
        const key = thread.split(' ')[0] === String(pid) ? 'main' : name;
        totals.set(key, (totals.get(key) ?? 0) + user + system);
        rows.push(`${thread === `${pid} ${name}` ? 'main' : thread}: ${user.toFixed(2)}u+${system.toFixed(2)}s`);
      }
      console.log(`miss ${i}: ${download.total.toFixed(3)} s, ttfb ${(download.ttfb * 1000).toFixed(1)} ms | upstream ${upstreamUsed.toFixed(2)} | ${rows.join(' | ')}`);
      // The Go reference in proxy mode, same size, its own fresh blob: wall and whole-process CPU.
      const refBefore = [cpuSeconds(referencePid).total, cpuSeconds(upstreamPid).total];
      const refDownload = await curlGet(`${reference.url}/v2/perf/cold/blobs/${digests[misses + i]}`, bytes);
      const refAfter = [cpuSeconds(referencePid).total, cpuSeconds(upstreamPid).total];
      console.log(
        `  reference: ${refDownload.total.toFixed(3)} s, CPU ${((refAfter[0] ?? 0) - (refBefore[0] ?? 0)).toFixed(2)} s; upstream CPU ${((refAfter[1] ?? 0) - (refBefore[1] ?? 0)).toFixed(2)} s`,
      );
    }
    await reference.dispose();
    if (argv.includes('--trace-gc')) {
      for (const line of (longshore.process?.stdoutLines ?? []).filter((l) => /\[IncrementalMarking\] Start/.test(l))) console.log(`  ${line}`);
      // V8's one line per collection: how many scavenges and mark-compacts a miss costs.
      const lines = (longshore.process?.stdoutLines ?? []).filter((line) => /Scavenge|Mark-Compact/.test(line));
      const count = (kind: string) => lines.filter((line) => line.includes(kind)).length;
      console.log(`GC over the warm-up and ${misses} misses: ${count('Scavenge')} scavenges, ${count('Mark-Compact')} mark-compacts`);
      // "Scavenge 4.1 (6.0) -> 3.2 (6.0) MB, 0.35 / 0.00 ms": the pause on the main thread.
      const pauses = lines.flatMap((line) => (line.includes('Scavenge') ? [Number(/MB, ([\d.]+) \//.exec(line)?.[1] ?? Number.NaN)] : [])).filter((ms) => !Number.isNaN(ms));
      if (pauses.length > 0) {
        const sorted = [...pauses].sort((a, b) => a - b);
        const at = (q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(2);
        console.log(`scavenge pauses: median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms, ${sorted.reduce((a, b) => a + b, 0).toFixed(1)} ms in all`);
      }
      for (const line of lines.filter((l) => l.includes('Mark-Compact')).slice(-6)) console.log(`  ${line}`);
    }
    console.log(`mean CPU s per miss: ${[...totals].map(([k, v]) => `${k} ${(v / misses).toFixed(3)}`).join(', ')}`);
    if (argv.includes('--perf')) {
      const perf = spawn('perf', ['record', '-F', '4999', '-g', '-p', String(pid), '-o', '/tmp/cold-perf.data'], { stdio: 'inherit' });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await curlGet(`${longshore.url}/v2/perf/cold/blobs/${digests[2 * misses + 1]}`, bytes);
      perf.kill('SIGINT');
      await new Promise((resolve) => perf.on('exit', resolve));
    }
    if (argv.includes('--perf-stat')) {
      // Instructions and task-clock per thread: instructions hardly move with the machine's load.
      const out = join(work.path, 'perf-stat.txt');
      const perf = spawn('perf', ['stat', '-e', 'instructions,task-clock', '--per-thread', '-p', String(pid), '-o', out], { stdio: 'inherit' });
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (let i = 0; i < misses; i++) await curlGet(`${longshore.url}/v2/perf/cold/blobs/${digests[misses + 1 + i]}`, bytes);
      perf.kill('SIGINT');
      await new Promise((resolve) => perf.on('exit', resolve));
      console.log(`perf stat over ${misses} misses:`);
      console.log(readFileSync(out, 'utf8'));
    }
    if (argv.includes('--strace')) {
      const strace = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', join(work.path, 'strace.txt')], { stdio: 'inherit' });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await curlGet(`${longshore.url}/v2/perf/cold/blobs/${digests[2 * misses + 1]}`, bytes);
      strace.kill('SIGINT');
      await new Promise((resolve) => strace.on('exit', resolve));
      console.log(readFileSync(join(work.path, 'strace.txt'), 'utf8'));
    }
  } finally {
    await longshore.dispose();
    await upstream.dispose();
    await work.remove();
  }
}

await main();
