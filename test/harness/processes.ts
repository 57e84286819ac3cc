// Child processes for tests: output captured as lines (to assert on, and to put in error
// messages), readiness by waiting for a line, and shutdown through the process's own handle.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';

export type StreamName = 'stdout' | 'stderr';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: Error;
}

export interface SpawnOptions {
  cwd?: string;
  /** The complete environment of the child (not merged with process.env). */
  env?: NodeJS.ProcessEnv;
  /** Also append every output line to this file (stderr lines prefixed with "[stderr] "). */
  logFile?: string;
  /** Called for every complete line, in arrival order, before waiters are checked. */
  onLine?: (line: string, stream: StreamName) => void;
}

export interface ProcessHandle {
  readonly child: ChildProcess;
  /** "command arg1 arg2", for messages. */
  readonly commandLine: string;
  readonly stdoutLines: string[];
  readonly stderrLines: string[];
  /** Resolves once the process has exited and its output streams are drained. */
  readonly exited: Promise<ExitStatus>;
  /** The exit status once exited, otherwise undefined. */
  exitStatus(): ExitStatus | undefined;
  /**
   * Resolves with the first line (already captured or yet to come) matching `predicate`.
   * Rejects on timeout, or when the process exits first, with the stderr tail in the message.
   */
  waitForLine(predicate: (line: string, stream: StreamName) => boolean, timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. Idempotent. */
  stop(graceMs?: number): Promise<ExitStatus>;
  /** SIGKILL at once (a crash, for recovery tests); resolves when the process has exited. */
  kill9(): Promise<ExitStatus>;
  /** Command line, pid, exit status and the last stderr lines: for error messages. */
  describe(tailLines?: number): string;
}

const DEFAULT_STOP_GRACE_MS = 5_000;

// Children still running when the test process exits (a crash, a forgotten after()) are
// SIGKILLed through their own handles so no registry or server outlives the test run.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackUntilExit(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const running of liveChildren) running.kill('SIGKILL');
    });
  }
}

export function formatExitStatus(status: ExitStatus | undefined): string {
  if (status === undefined) return 'still running';
  if (status.spawnError !== undefined) return `failed to start: ${status.spawnError.message}`;
  if (status.signal !== null) return `killed by ${status.signal}`;
  return `exited with code ${status.code}`;
}

/** Splits a text stream into lines, calling `emit` for each complete one and the tail at end. */
function captureLines(stream: NodeJS.ReadableStream | null, emit: (line: string) => void): void {
  if (stream === null) return;
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    let newline = pending.indexOf('\n');
    while (newline !== -1) {
      emit(pending.slice(0, newline).replace(/\r$/, ''));
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
  });
  stream.on('end', () => {
    if (pending !== '') emit(pending);
    pending = '';
  });
}

export function spawnProcess(command: string, args: readonly string[], options: SpawnOptions = {}): ProcessHandle {
  const commandLine = [command, ...args].join(' ');
  const stdoutLines: string[] = [];
  const stderrLines: string[] = [];
  const lineListeners = new Set<(line: string, stream: StreamName) => void>();
  const exitListeners = new Set<() => void>();
  let status: ExitStatus | undefined;
  let logStream: WriteStream | undefined;
  if (options.logFile !== undefined) logStream = createWriteStream(options.logFile, { flags: 'a' });

  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackUntilExit(child);

  const onLine = (stream: StreamName) => (line: string) => {
    (stream === 'stdout' ? stdoutLines : stderrLines).push(line);
    logStream?.write(stream === 'stderr' ? `[stderr] ${line}\n` : `${line}\n`);
    options.onLine?.(line, stream);
    for (const listener of [...lineListeners]) listener(line, stream);
  };
  captureLines(child.stdout, onLine('stdout'));
  captureLines(child.stderr, onLine('stderr'));

  const exited = new Promise<ExitStatus>((resolve) => {
    const finish = (result: ExitStatus) => {
      if (status !== undefined) return;
      status = result;
      liveChildren.delete(child);
      logStream?.end();
      resolve(result);
      for (const listener of [...exitListeners]) listener();
    };
    // 'close' fires after 'exit' and after stdout/stderr ended, so every line is captured.
    child.once('close', (code, signal) => finish({ code, signal }));
    child.once('error', (error) => {
      // A failed spawn has no pid and may never emit 'close'; a kill() error on a live child
      // is not an exit.
      if (child.pid === undefined) finish({ code: null, signal: null, spawnError: error });
    });
  });

  const describe = (tailLines = 20): string => {
    const tail = stderrLines.slice(-tailLines);
    const pid = child.pid === undefined ? '' : ` (pid ${child.pid})`;
    return (
      `${commandLine}${pid}: ${formatExitStatus(status)}` +
      (tail.length > 0 ? `\n--- last ${tail.length} stderr lines ---\n${tail.join('\n')}` : '\n(no stderr output)')
    );
  };

  const waitForLine = (predicate: (line: string, stream: StreamName) => boolean, timeoutMs: number): Promise<string> => {
    const already = stdoutLines.find((line) => predicate(line, 'stdout')) ?? stderrLines.find((line) => predicate(line, 'stderr'));
    if (already !== undefined) return Promise.resolve(already);
    return new Promise<string>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        lineListeners.delete(onNewLine);
        exitListeners.delete(onExit);
      };
      const onNewLine = (line: string, stream: StreamName) => {
        if (!predicate(line, stream)) return;
        cleanup();
        resolve(line);
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`process ended before the awaited output line appeared: ${describe()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for an output line from ${describe()}`));
      }, timeoutMs);
      lineListeners.add(onNewLine);
      if (status !== undefined) onExit();
      else exitListeners.add(onExit);
    });
  };

  const stop = async (graceMs = DEFAULT_STOP_GRACE_MS): Promise<ExitStatus> => {
    if (status !== undefined) return status;
    child.kill('SIGTERM');
    const escalation = setTimeout(() => child.kill('SIGKILL'), graceMs);
    try {
      return await exited;
    } finally {
      clearTimeout(escalation);
    }
  };

  const kill9 = async (): Promise<ExitStatus> => {
    if (status !== undefined) return status;
    child.kill('SIGKILL');
    return exited;
  };

  return {
    child,
    commandLine,
    stdoutLines,
    stderrLines,
    exited,
    exitStatus: () => status,
    waitForLine,
    stop,
    kill9,
    describe,
  };
}
