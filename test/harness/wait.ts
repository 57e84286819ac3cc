// Polling for readiness with a deadline (not a retry of a test's own actions).

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what: string;
  /** Checked before each attempt: a reason to give up at once (e.g. "process exited ..."). */
  abortReason?: () => string | undefined;
}

/** Calls `attempt` until it returns true; rejects with the last error/falsy result at the deadline. */
export async function pollUntil(attempt: () => Promise<boolean>, options: PollOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const intervalMs = options.intervalMs ?? 100;
  let lastProblem = 'condition never held';
  for (;;) {
    const abort = options.abortReason?.();
    if (abort !== undefined) throw new Error(`gave up waiting for ${options.what}: ${abort}`);
    try {
      if (await attempt()) return;
      lastProblem = 'condition not yet true';
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what} (last: ${lastProblem})`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
