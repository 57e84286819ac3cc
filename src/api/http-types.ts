// Per-request facts the routes learn and the access log reports.
import type { CacheOutcome } from '../mirror/outcome.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by routes that consult the cache; reported in the access log. */
    cacheOutcome: CacheOutcome | undefined;
    /** The upstream a mirrored request was routed to. */
    upstreamName: string | undefined;
  }
}

export {};
