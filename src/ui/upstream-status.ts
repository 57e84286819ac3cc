// The Upstreams view: each configured upstream with its URL, circuit state, recent latency,
// last failure and Docker Hub's RateLimit-Remaining (from the metric the client keeps).
import type { Registry } from 'prom-client';
import type { UpstreamConfig } from '../config/schema.js';
import type { UpstreamActivity, UpstreamFailure } from './upstream-activity.js';

export interface UpstreamStatus {
  name: string;
  url: string | undefined;
  v1Index: string | undefined;
  isDefault: boolean;
  /** "closed", "open", "half-open"; undefined for an upstream without a breaker (v1 only). */
  circuit: string | undefined;
  latencyMs: number | undefined;
  requests: number;
  lastRequestAt: number | undefined;
  lastFailure: UpstreamFailure | undefined;
  rateLimitRemaining: number | undefined;
}

export interface UpstreamStatusSources {
  upstreams: readonly UpstreamConfig[];
  /** The v2 clients, by name; the circuit breaker exposes `circuit`. */
  clientByName: (name: string) => unknown;
  activity: UpstreamActivity;
  registry: Registry;
}

export async function upstreamStatuses(sources: UpstreamStatusSources): Promise<UpstreamStatus[]> {
  const gauge = sources.registry.getSingleMetric('longshore_upstream_rate_limit_remaining');
  const rateLimits = new Map((gauge ? (await gauge.get()).values : []).map((v) => [String(v.labels.upstream), v.value]));
  return sources.upstreams.map((upstream) => {
    const client = sources.clientByName(upstream.name) as { circuit?: unknown } | undefined;
    const recent = sources.activity.recent(upstream.name);
    return {
      name: upstream.name,
      url: upstream.url,
      v1Index: upstream.v1.index,
      isDefault: upstream.default,
      circuit: typeof client?.circuit === 'string' ? client.circuit : undefined,
      latencyMs: recent.latencyMs,
      requests: recent.requests,
      lastRequestAt: recent.lastRequestAt,
      lastFailure: recent.lastFailure,
      rateLimitRemaining: rateLimits.get(upstream.name),
    };
  });
}
