// Per-request facts the routes learn and the access log reports.
import type { CacheKind } from '../metrics/metrics.js';
import type { CacheOutcome } from '../mirror/outcome.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by routes that consult the cache; reported in the access log. */
    cacheOutcome: CacheOutcome | undefined;
    /** The upstream a mirrored request was routed to. */
    upstreamName: string | undefined;
    /** What the cache was asked for, for metrics ('tag' is a manifest by tag). */
    cacheKind: CacheKind | undefined;
    /** A route template for metrics labels (never a raw path: names are unbounded). */
    routeTemplate: string | undefined;
  }
}

export {};
