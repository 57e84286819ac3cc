// What bench/run.ts hands a bench part (bench/parts/*.ts): the shared upstream, the run count
// and client count, and where measurements, log lines and clean-ups go.
export interface BenchPartContext {
  /** The bench's upstream registry. */
  upstreamUrl: string;
  /** Pushes a fresh random blob of `size` bytes to the upstream under `repository`; its digest. */
  pushRandomBlob(repository: string, size: number): Promise<string>;
  runs: number;
  clients: number;
  record(metric: string, system: string, value: number): void;
  log(message: string): void;
  /** Where the part registers what to stop at the end (run in reverse). */
  cleanups: Array<() => Promise<void>>;
  /** Flushes dirty pages before a measurement. */
  settle(): void;
}
