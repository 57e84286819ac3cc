/** How a request was answered, for logs and metrics. */
export type CacheOutcome = 'hit' | 'miss' | 'coalesced' | 'stale';
