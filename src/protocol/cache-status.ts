// The Cache-Status response header (RFC 9211) on mirrored blobs: whether the bytes came out of
// this cache or were fetched from the upstream for this request. `longshore warm` reads it to
// tell blobs already cached apart from those it brought in.
import type { CacheOutcome } from '../mirror/outcome.js';

export const CACHE_STATUS_HEADER = 'cache-status';
const CACHE_NAME = 'Longshore';

/** "Longshore; hit", "Longshore; fwd=uri-miss" (fetched), "…; collapsed" (joined a fetch in flight). */
export function formatCacheStatus(outcome: CacheOutcome): string {
  switch (outcome) {
    case 'hit':
      return `${CACHE_NAME}; hit`;
    case 'stale':
      return `${CACHE_NAME}; hit; detail=stale`;
    case 'miss':
      return `${CACHE_NAME}; fwd=uri-miss`;
    case 'coalesced':
      return `${CACHE_NAME}; fwd=uri-miss; collapsed`;
  }
}

/**
 * Whether a Longshore answered from its cache. Only our own entry counts (a CDN in front adds
 * its own, listed first); undefined when there is none (not a Longshore, or not a mirrored blob).
 */
export function servedFromCache(header: string | undefined): boolean | undefined {
  if (header === undefined) return undefined;
  const ours = header
    .split(',')
    .map((entry) => entry.split(';').map((part) => part.trim()))
    .findLast(([name]) => name === CACHE_NAME);
  return ours ? ours.slice(1).includes('hit') : undefined;
}
