// What this replica saw of each upstream lately: the latency of its last requests and its
// last failure. The page's Upstreams view reads it; metrics keep the long-term series.
// Per replica on purpose: each replica has its own connections and circuit breakers.

export interface UpstreamFailure {
  /** "HTTP 503", or "no response" for a refused, reset or timed-out request. */
  status: string;
  kind: string;
  at: number;
}

export interface UpstreamRecent {
  /** Median time to response headers of the last requests, in ms; undefined before any. */
  latencyMs: number | undefined;
  requests: number;
  lastFailure: UpstreamFailure | undefined;
  lastRequestAt: number | undefined;
}

const WINDOW = 50;

interface Track {
  latencies: number[];
  requests: number;
  lastFailure: UpstreamFailure | undefined;
  lastRequestAt: number | undefined;
}

export class UpstreamActivity {
  private readonly tracks = new Map<string, Track>();

  constructor(private readonly now: () => number = Date.now) {}

  request(upstream: string, kind: string, status: number | 'error', seconds: number): void {
    let track = this.tracks.get(upstream);
    if (!track) this.tracks.set(upstream, (track = { latencies: [], requests: 0, lastFailure: undefined, lastRequestAt: undefined }));
    const at = this.now();
    track.requests += 1;
    track.lastRequestAt = at;
    track.latencies.push(seconds * 1000);
    if (track.latencies.length > WINDOW) track.latencies.shift();
    // 404 and 401 are answers, not failures: only what would trip the circuit counts.
    if (status === 'error' || status >= 500 || status === 429) {
      track.lastFailure = { status: status === 'error' ? 'no response' : `HTTP ${status}`, kind, at };
    }
  }

  recent(upstream: string): UpstreamRecent {
    const track = this.tracks.get(upstream);
    if (!track) return { latencyMs: undefined, requests: 0, lastFailure: undefined, lastRequestAt: undefined };
    const sorted = [...track.latencies].sort((a, b) => a - b);
    return { latencyMs: sorted[Math.floor(sorted.length / 2)], requests: track.requests, lastFailure: track.lastFailure, lastRequestAt: track.lastRequestAt };
  }
}
