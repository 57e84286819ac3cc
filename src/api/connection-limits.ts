// What a client connection may hold: time limits for slow or stalled senders (http.* keys),
// turned into the options Fastify passes to node:http, the proxies whose X-Forwarded-For is
// believed, and the recognition of a client that
// went away, which is normal traffic and not a server error.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/schema.js';

// How often node:http looks for connections past headersTimeout/requestTimeout (its default,
// 30 s, would let a slow-header client hold a connection up to 30 s past the limit).
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** Fastify server options for the http.* keys: timeouts, and which proxies to believe. */
export function connectionOptions(http: Config['http']) {
  return {
    // request.ip (the failed-login limits' client address) from X-Forwarded-For, but only
    // when the connection comes from a listed proxy: anyone else could forge the header.
    trustProxy: http.trustProxy.length > 0 ? http.trustProxy : false,
    // Fastify's connectionTimeout is the socket's idle timeout: no bytes either way.
    connectionTimeout: http.bodyIdleTimeout,
    requestTimeout: http.requestTimeout,
    http: {
      headersTimeout: http.headersTimeout,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_INTERVAL_MS, http.headersTimeout),
    },
  };
}

/**
 * node:https (Node 20) looks at headersTimeout only when more bytes arrive, never on a
 * connection that went silent halfway through its headers: such a client would hold its TLS
 * connection until the idle timeout. Kept here instead: request headers must be complete
 * `headersTimeoutMs` after the connection is up, or after the first byte of the next request
 * on a kept-alive one.
 */
export function enforceHeadersTimeoutOverTls(server: Server, headersTimeoutMs: number): void {
  const timers = new WeakMap<Socket, NodeJS.Timeout>();
  const arm = (socket: Socket) => {
    if (timers.has(socket) || socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), headersTimeoutMs);
    timer.unref();
    timers.set(socket, timer);
  };
  const disarm = (socket: Socket) => {
    clearTimeout(timers.get(socket));
    timers.delete(socket);
  };
  server.on('secureConnection', (socket: Socket) => {
    arm(socket);
    socket.once('close', () => disarm(socket));
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    disarm(request.socket);
    response.once('finish', () => request.socket.once('data', () => arm(request.socket)));
  });
}

const CLIENT_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNABORTED']);

/**
 * True when a handler failed because the client closed the connection (a body cut short, a
 * response nobody reads any more). Logged at info with the request line, never at error: any
 * client can do it at will.
 */
export function isClientGone(error: unknown, request: FastifyRequest): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && CLIENT_GONE_CODES.has(code)) return true;
  if ((error as Error).message === 'aborted') return true;
  return request.raw.destroyed && !request.raw.complete;
}

export function logClientGone(request: FastifyRequest, error: unknown): void {
  request.log.info({ method: request.method, path: request.url, reason: (error as Error).message }, 'client went away before the request finished');
}
