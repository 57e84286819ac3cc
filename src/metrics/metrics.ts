// Every metric Longshore exports, on its own prom-client Registry (never the global one, so
// tests and embedders can run several servers in one process). Other modules never import
// prom-client: they call the small recording methods here, or are read at scrape time.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CoordinationStatus } from '../coordination/ports.js';

export type Api = 'v1' | 'v2' | 'other';
export type CacheKind = 'blob' | 'manifest' | 'tag' | 'v1_layer' | 'v1_json';
export type CacheResult = 'hit' | 'miss' | 'coalesced' | 'stale';
export type UpstreamRequestKind = 'manifest' | 'blob' | 'tags' | 'token' | 'other';

export interface CacheStatsSource {
  /** Asynchronous: with several replicas the figures come from the shared cache index. */
  stats(): Promise<{ mirrored: { bytes: number; objects: number }; private: { bytes: number; objects: number }; evictions: number }>;
}

export interface MetricSources {
  cache: CacheStatsSource;
  inflightFetches: () => number;
  /** `storage.cache.maxBytes`; unset means no bound and no sample (dashboards draw no line). */
  cacheMaxBytes?: number | undefined;
  /** Each upstream's circuit-breaker state, read at scrape time. */
  circuits?: () => Array<{ upstream: string; state: CircuitState }>;
  /** The coordinator's reachability and its uncoordinated operations, read at scrape time. */
  coordination?: () => CoordinationStatus;
}

export type CircuitState = 'closed' | 'half-open' | 'open';
/** Gauge values: higher is worse, so "max by (upstream)" and alerts on "> 0" read naturally. */
export const CIRCUIT_STATE_VALUES: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 };

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly registry = new Registry();
  private readonly httpRequests: Counter<'api' | 'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'api' | 'method' | 'route'>;
  private readonly cacheRequests: Counter<'kind' | 'result'>;
  private readonly servedBytes: Counter<'source'>;
  private readonly upstreamRequests: Counter<'upstream' | 'kind' | 'status'>;
  private readonly upstreamDuration: Histogram<'upstream' | 'kind'>;
  private readonly upstreamBytes: Counter<'upstream'>;
  private readonly rateLimitRemaining: Gauge<'upstream'>;
  private readonly peerFollows: Counter<'result'>;
  private readonly leaseTakeovers: Counter;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({ name: 'longshore_http_requests_total', help: 'HTTP requests answered, by API, method, route template and status', labelNames: ['api', 'method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({ name: 'longshore_http_request_duration_seconds', help: 'Time from request to the end of the response', labelNames: ['api', 'method', 'route'], buckets: LATENCY_BUCKETS, registers });
    this.cacheRequests = new Counter({ name: 'longshore_cache_requests_total', help: 'Cache lookups by kind and result (hit, miss, coalesced with a fetch in flight, stale)', labelNames: ['kind', 'result'], registers });
    this.servedBytes = new Counter({ name: 'longshore_served_bytes_total', help: 'Body bytes served to clients, by where they came from (cache or upstream)', labelNames: ['source'], registers });
    this.upstreamRequests = new Counter({ name: 'longshore_upstream_requests_total', help: 'Requests sent to upstream registries, by kind and status (error: no response)', labelNames: ['upstream', 'kind', 'status'], registers });
    this.upstreamDuration = new Histogram({ name: 'longshore_upstream_request_duration_seconds', help: 'Upstream time to response headers', labelNames: ['upstream', 'kind'], buckets: LATENCY_BUCKETS, registers });
    this.upstreamBytes = new Counter({ name: 'longshore_upstream_bytes_total', help: 'Blob and manifest bytes received from upstreams', labelNames: ['upstream'], registers });
    this.peerFollows = new Counter({
      name: 'longshore_peer_follows_total',
      help: 'Blob fetches this replica followed from the replica leading them (cluster.redis), by result: completed, failed (leader unreachable or broke off), not_in_flight (it had finished)',
      labelNames: ['result'],
      registers,
    });
    this.leaseTakeovers = new Counter({ name: 'longshore_fetch_lease_takeovers_total', help: 'Blob fetches this replica led after their previous leader could not be reached (its lease lapsed)', registers });
    this.rateLimitRemaining = new Gauge({ name: 'longshore_upstream_rate_limit_remaining', help: "The upstream's last RateLimit-Remaining (Docker Hub pulls left in its window)", labelNames: ['upstream'], registers });

    // One gauge per figure of the cache's stats, by class, read when Prometheus scrapes.
    for (const [name, help, figure] of [
      ['longshore_cache_size_bytes', 'Bytes in the cache by class (mirrored: bounded by storage.cache.maxBytes; private: never evicted)', 'bytes'],
      ['longshore_cache_objects', 'Blobs (layers, configs, manifests) in the cache by class', 'objects'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['class'],
        registers,
        async collect() {
          const stats = await sources.cache.stats();
          this.set({ class: 'mirrored' }, stats.mirrored[figure]);
          this.set({ class: 'private' }, stats.private[figure]);
        },
      });
    }
    // Labelled like longshore_cache_size_bytes (only mirrored content is bounded); with a label,
    // an unbounded cache exports no sample instead of a misleading 0.
    const bound = new Gauge({ name: 'longshore_cache_max_bytes', help: 'The bound on mirrored bytes (storage.cache.maxBytes), when one is set', labelNames: ['class'], registers });
    if (sources.cacheMaxBytes !== undefined) bound.set({ class: 'mirrored' }, sources.cacheMaxBytes);
    new Counter({
      name: 'longshore_cache_evictions_total',
      help: 'Mirrored blobs evicted to keep the cache within its bound',
      registers,
      async collect() {
        const { evictions } = await sources.cache.stats();
        this.reset();
        this.inc(evictions);
      },
    });
    new Gauge({
      name: 'longshore_upstream_circuit_state',
      help: "Each upstream's circuit breaker: 0 closed (asked normally), 1 half-open (one trial request), 2 open (not asked; stale served)",
      labelNames: ['upstream'],
      registers,
      collect() {
        for (const { upstream, state } of sources.circuits?.() ?? []) this.set({ upstream }, CIRCUIT_STATE_VALUES[state]);
      },
    });
    new Gauge({
      name: 'longshore_coordination_connected',
      help: 'Whether the coordinator is reachable (1), by mode: in-process (one replica) or redis (cluster.redis)',
      labelNames: ['mode'],
      registers,
      collect() {
        const status = sources.coordination?.();
        if (status) this.set({ mode: status.mode }, status.connected ? 1 : 0);
      },
    });
    new Counter({
      name: 'longshore_coordination_uncoordinated_total',
      help: 'Operations that went ahead uncoordinated because Redis was unreachable, by port (locks, leases, events, privateContent, cacheIndex, counters, circuits, uploads)',
      labelNames: ['port'],
      registers,
      collect() {
        const status = sources.coordination?.();
        if (!status) return;
        this.reset();
        for (const [port, count] of Object.entries(status.uncoordinated)) this.inc({ port }, count);
      },
    });
    new Gauge({
      name: 'longshore_inflight_fetches',
      help: 'Upstream blob fetches in progress (each shared by every client that asked)',
      registers,
      collect() {
        this.set(sources.inflightFetches());
      },
    });
  }

  httpRequest(api: Api, method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ api, method, route, status: String(status) });
    this.httpDuration.observe({ api, method, route }, seconds);
  }

  cacheRequest(kind: CacheKind, result: CacheResult, servedBytes: number | undefined): void {
    this.cacheRequests.inc({ kind, result });
    if (servedBytes !== undefined && servedBytes > 0) {
      this.servedBytes.inc({ source: result === 'hit' || result === 'stale' ? 'cache' : 'upstream' }, servedBytes);
    }
  }

  upstreamRequest(upstream: string, kind: UpstreamRequestKind, status: number | 'error', seconds: number): void {
    this.upstreamRequests.inc({ upstream, kind, status: String(status) });
    this.upstreamDuration.observe({ upstream, kind }, seconds);
  }

  upstreamReceived(upstream: string, bytes: number): void {
    if (bytes > 0) this.upstreamBytes.inc({ upstream }, bytes);
  }

  peerFollow(result: 'completed' | 'failed' | 'not_in_flight'): void {
    this.peerFollows.inc({ result });
  }

  leaseTakeover(): void {
    this.leaseTakeovers.inc();
  }

  upstreamRateLimit(upstream: string, remaining: number): void {
    this.rateLimitRemaining.set({ upstream }, remaining);
  }
}
