// Small JSON records (tags, manifest media types, upload state), keyed by slash-separated
// keys. Drivers implement this interface; values must be JSON-serialisable.

export interface MetadataStore {
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<boolean>;
  /** Keys directly below `prefix` (one level), without the prefix. */
  list(prefix: string): Promise<string[]>;
}

// Key segments are names, tags and digests, which the protocol layer has validated already;
// this is the last line of defence before a key becomes a path.
const SAFE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._:-]*$/;

export function assertSafeKey(key: string): void {
  const segments = key.split('/');
  if (segments.length === 0 || segments.some((s) => !SAFE_SEGMENT.test(s) || s === '..')) {
    throw new Error(`unsafe metadata key "${key}"`);
  }
}
