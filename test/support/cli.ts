// Runs the `longshore` command as a child process, the way an operator would.
import { spawnProcess } from '../harness/processes.js';
import { REPO_ROOT } from '../harness/longshore.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], timeoutMs = 120_000, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawnProcess(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
  const timer = setTimeout(() => void child.kill9(), timeoutMs);
  try {
    const status = await child.exited;
    return { code: status.code, stdout: child.stdoutLines.join('\n'), stderr: child.stderrLines.join('\n') };
  } finally {
    clearTimeout(timer);
  }
}
