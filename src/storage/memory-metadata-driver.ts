// In-memory metadata driver: for fast unit tests of the engine, and the model a new driver is
// checked against (the same contract suite runs on both). Values are kept as JSON text, so a
// caller mutating an object after put() or get() changes nothing stored, as with real storage.
import { assertSafeKey, type MetadataDriver } from './metadata-store.js';

export class MemoryMetadataDriver implements MetadataDriver {
  private readonly records = new Map<string, string>();

  // Errors reject rather than throw, as with any driver doing I/O: callers chain on promises.
  get<T>(key: string): Promise<T | undefined> {
    return settle(() => {
      assertSafeKey(key);
      const text = this.records.get(key);
      return text === undefined ? undefined : (JSON.parse(text) as T);
    });
  }

  put(key: string, value: unknown): Promise<void> {
    return settle(() => {
      assertSafeKey(key);
      this.records.set(key, JSON.stringify(value));
    });
  }

  delete(key: string): Promise<boolean> {
    return settle(() => {
      assertSafeKey(key);
      return this.records.delete(key);
    });
  }

  list(prefix: string): Promise<string[]> {
    return settle(() => this.names(prefix));
  }

  private names(prefix: string): string[] {
    if (prefix) assertSafeKey(prefix);
    const start = prefix ? `${prefix}/` : '';
    const names = new Set<string>();
    for (const key of this.records.keys()) {
      if (key.startsWith(start)) names.add(key.slice(start.length).split('/')[0] as string);
    }
    return [...names].sort();
  }
}

function settle<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
