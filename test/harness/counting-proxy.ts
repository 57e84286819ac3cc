// A transparent HTTP reverse proxy in front of an upstream, so tests can count what a client
// (skopeo, Longshore) really asked the upstream for, and slow responses down to catch a
// download mid-way. Only the Host header is rewritten; bodies stream both ways.
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listenOnLoopback } from './ports.js';

export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent it. */
  path: string;
  /** Status the upstream answered (and the client received). */
  status: number;
  /** Response body bytes passed on to the client so far. */
  bytesSent: number;
  /** True once the whole response body reached the client. */
  finished: boolean;
  /** Set when the response broke off (upstream or client side). */
  error?: string;
}

export interface UpstreamFailure {
  method: string;
  path: string;
  error: string;
}

export interface CountingProxy {
  /** "http://127.0.0.1:<port>" */
  readonly url: string;
  /** Every request whose upstream response started, in the order responses started. */
  readonly requests: ProxiedRequest[];
  /** Requests that got no response (upstream refused/reset); the client's connection was dropped. */
  readonly upstreamFailures: UpstreamFailure[];
  count(method: string, pathRegex: RegExp): number;
  /** Forgets recorded requests and failures. */
  reset(): void;
  /** Limits response bodies to `bytesPerSecond` (undefined: full speed); applies to responses in flight too. */
  setThrottle(bytesPerSecond: number | undefined): void;
  close(): Promise<void>;
}

// Throttled bodies go out in pieces of this size, so a slow transfer still moves steadily.
const THROTTLE_PIECE_BYTES = 16 * 1024;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when `res` can take more data, or when it is closed (nothing more to do then). */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function withHost(rawHeaders: string[], host: string): string[] {
  const headers: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.toLowerCase() !== 'host') headers.push(name, rawHeaders[i + 1] as string);
  }
  headers.push('Host', host);
  return headers;
}

export async function startCountingProxy(targetUrl: string, opts: { bytesPerSecond?: number } = {}): Promise<CountingProxy> {
  const target = new URL(targetUrl);
  if (target.protocol !== 'http:') throw new Error(`counting proxy: only http:// targets are supported, got ${targetUrl}`);
  const agent = new Agent({ keepAlive: true });
  const requests: ProxiedRequest[] = [];
  const upstreamFailures: UpstreamFailure[] = [];
  let bytesPerSecond = opts.bytesPerSecond;

  async function relayBody(upstreamRes: IncomingMessage, res: ServerResponse, record: ProxiedRequest): Promise<void> {
    // Pacing against a schedule (not a fixed sleep per piece) keeps the average rate right
    // despite timer granularity.
    let nextSendAt = Date.now();
    for await (const chunk of upstreamRes as AsyncIterable<Buffer>) {
      for (let offset = 0; offset < chunk.length; offset += THROTTLE_PIECE_BYTES) {
        const piece = chunk.subarray(offset, offset + THROTTLE_PIECE_BYTES);
        const rate = bytesPerSecond;
        if (rate !== undefined) {
          const waitMs = nextSendAt - Date.now();
          if (waitMs > 0) await sleep(waitMs);
          nextSendAt = Math.max(nextSendAt, Date.now() - 50) + (piece.length / rate) * 1000;
        }
        if (res.destroyed) throw new Error('client went away');
        record.bytesSent += piece.length;
        if (!res.write(piece)) await drainedOrClosed(res);
      }
    }
    res.end();
    record.finished = true;
  }

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const upstreamReq = httpRequest({
      host: target.hostname,
      port: target.port,
      method,
      path,
      headers: withHost(req.rawHeaders, target.host),
      setHost: false,
      agent,
    });
    let responded = false;

    upstreamReq.on('error', (error) => {
      if (responded) return; // handled where the body is relayed
      // No upstream answer: drop the client's connection, as an unreachable upstream would,
      // rather than inventing a 502 the real upstream never sent.
      upstreamFailures.push({ method, path, error: error.message });
      req.socket.destroy();
    });
    // Client gone before the upstream answered (or mid-upload): stop the upstream request too.
    req.on('close', () => {
      if (!req.complete) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);

    upstreamReq.on('response', (upstreamRes) => {
      responded = true;
      const record: ProxiedRequest = { method, path, status: upstreamRes.statusCode ?? 0, bytesSent: 0, finished: false };
      requests.push(record);
      res.writeHead(record.status, upstreamRes.statusMessage, upstreamRes.rawHeaders);
      res.on('close', () => {
        if (!record.finished) upstreamRes.destroy();
      });
      relayBody(upstreamRes, res, record).catch((error: unknown) => {
        record.error = error instanceof Error ? error.message : String(error);
        // The client must see the body break off, just as it broke off here.
        res.destroy();
        upstreamRes.destroy();
      });
    });
  }

  const server = createServer(forward);
  const url = await listenOnLoopback(server);

  return {
    url,
    requests,
    upstreamFailures,
    count: (method, pathRegex) => requests.filter((r) => r.method === method && new RegExp(pathRegex.source, pathRegex.flags.replace('g', '')).test(r.path)).length,
    reset: () => {
      requests.length = 0;
      upstreamFailures.length = 0;
    },
    setThrottle: (bps) => {
      if (bps !== undefined && !(bps > 0)) throw new Error(`setThrottle: bytes per second must be > 0, got ${bps}`);
      bytesPerSecond = bps;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Throttled or stalled responses would otherwise keep close() waiting.
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}
