// LRU caches bounded by a number of entries that take memory as they fill. lru-cache's `max`
// allocates its arrays for every entry at construction (16+ bytes each, resident at once): the
// empty tag, provenance and blob-size caches of a fresh server held ~4 MB of RSS (measured,
// issue 19's memory goal). Bounded by `maxSize` with every entry counting 1, the same library
// grows its arrays with use and evicts at the same count.
import { LRUCache } from 'lru-cache';

const ONE_EACH = (): number => 1;

export function growingLru<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(entries: number): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: entries, sizeCalculation: ONE_EACH });
}
