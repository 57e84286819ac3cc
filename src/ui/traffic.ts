// Cache traffic figures for the overview, read from this replica's Prometheus counters (the
// same numbers /metrics exports), since start and over the last hour. The hour comes from a
// sample of the counters taken every minute: a ring of 61, so nothing grows with traffic.
import type { Registry } from 'prom-client';

export interface TrafficFigures {
  /** Cache lookups answered from the cache (hits and stale answers). */
  hits: number;
  /** Every cache lookup: hits, misses, stale, and requests that joined a fetch in flight. */
  lookups: number;
  /** hits / lookups; undefined without lookups. */
  hitRatio: number | undefined;
  /** Body bytes sent to clients from the cache. */
  bytesFromCache: number;
  /** Body bytes sent to clients as they arrived from an upstream. */
  bytesFromUpstream: number;
  /** Bytes received from upstreams (one copy per fetch, however many clients shared it). */
  upstreamBytes: number;
}

interface Sample {
  at: number;
  figures: TrafficFigures;
}

const SAMPLE_INTERVAL_MS = 60_000;
const HOUR_MS = 60 * 60_000;

async function counterValues(registry: Registry, name: string): Promise<Array<{ labels: Record<string, string | number | undefined>; value: number }>> {
  const metric = registry.getSingleMetric(name);
  return metric ? (await metric.get()).values : [];
}

export class TrafficHistory {
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly registry: Registry,
    private readonly now: () => number = Date.now,
  ) {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_INTERVAL_MS);
    this.timer.unref();
  }

  async sinceStart(): Promise<TrafficFigures> {
    const lookups = await counterValues(this.registry, 'longshore_cache_requests_total');
    const served = await counterValues(this.registry, 'longshore_served_bytes_total');
    const upstream = await counterValues(this.registry, 'longshore_upstream_bytes_total');
    const sum = (values: typeof lookups, match: (labels: Record<string, string | number | undefined>) => boolean) =>
      values.filter((v) => match(v.labels)).reduce((total, v) => total + v.value, 0);
    const hits = sum(lookups, (l) => l.result === 'hit' || l.result === 'stale');
    const total = sum(lookups, () => true);
    return {
      hits,
      lookups: total,
      hitRatio: total > 0 ? hits / total : undefined,
      bytesFromCache: sum(served, (l) => l.source === 'cache'),
      bytesFromUpstream: sum(served, (l) => l.source === 'upstream'),
      upstreamBytes: sum(upstream, () => true),
    };
  }

  /** The last hour (or since start, when younger), as the difference from the oldest sample in it. */
  async lastHour(): Promise<TrafficFigures & { sinceMs: number }> {
    const current = await this.sinceStart();
    const now = this.now();
    const base = this.samples.find((s) => now - s.at <= HOUR_MS);
    if (!base) return { ...current, sinceMs: 0 };
    const delta = (key: Exclude<keyof TrafficFigures, 'hitRatio'>) => current[key] - base.figures[key];
    const hits = delta('hits');
    const lookups = delta('lookups');
    return {
      hits,
      lookups,
      hitRatio: lookups > 0 ? hits / lookups : undefined,
      bytesFromCache: delta('bytesFromCache'),
      bytesFromUpstream: delta('bytesFromUpstream'),
      upstreamBytes: delta('upstreamBytes'),
      sinceMs: now - base.at,
    };
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Takes a sample of the counters (every minute by itself). */
  async sample(): Promise<void> {
    const figures = await this.sinceStart();
    this.samples.push({ at: this.now(), figures });
    while (this.samples.length > 61) this.samples.shift();
  }
}

/** Pulls of one request path (with its query) since the last drain. */
export interface PathPulls {
  pulls: number;
  /** ms since epoch of the latest. */
  lastAt: number;
}

/**
 * Pull counting on the hot path: every manifest GET is a pull the page counts, so a request
 * only bumps a counter under its path (a string it already has), and what the path means
 * (repository, tag, upstream, catalog shard) is worked out when the counts are drained,
 * once per distinct path every few seconds instead of once per request.
 */
export class PullTally {
  private counts = new Map<string, PathPulls>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A successful GET of `url` that may be a pull (the caller filtered cheaply; the drain decides). */
  add(url: string): void {
    const at = this.now();
    const known = this.counts.get(url);
    if (known) {
      known.pulls += 1;
      known.lastAt = at;
    } else {
      this.counts.set(url, { pulls: 1, lastAt: at });
    }
  }

  /** Everything counted since the last drain, which starts over. */
  drain(): Map<string, PathPulls> {
    const drained = this.counts;
    if (drained.size > 0) this.counts = new Map();
    return drained;
  }
}
