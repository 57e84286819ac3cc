// One in-flight promise per key: concurrent callers for the same key share the first
// caller's work. Used by the engine's one cached lookup (mirror/cached-lookup.ts).
export class SingleFlight<T> {
  private readonly pending = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): { promise: Promise<T>; shared: boolean } {
    const existing = this.pending.get(key);
    if (existing) return { promise: existing, shared: true };
    const promise = work().finally(() => this.pending.delete(key));
    this.pending.set(key, promise);
    return { promise, shared: false };
  }
}
