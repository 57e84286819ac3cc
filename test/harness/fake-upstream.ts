// An in-process, programmable Distribution API upstream for fault tests: it serves what the
// test put in, and misbehaves exactly where and how the test says.
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { sha256Digest } from './digests.js';
import { listenOnLoopback } from './ports.js';

export type Fault = (
  | { kind: 'status'; status: number; retryAfter?: number }
  /** Full Content-Length, then the connection is destroyed after `afterBytes` body bytes. */
  | { kind: 'truncate'; afterBytes: number }
  /** Correct length and headers, every body byte different (digest mismatch). */
  | { kind: 'wrongBytes' }
  /** `afterBytes` body bytes, then silence with the connection held open until close(). */
  | { kind: 'stall'; afterBytes: number }
  /** No Content-Length, then the body's bytes over and over, never ending, until the peer hangs up. */
  | { kind: 'endless' }
) & {
  /** Apply to this many matching requests only, then behave normally (default: always). */
  times?: number;
};

export interface FakeUpstreamRequest {
  method: string;
  /** Path and query. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The fault applied to this request, if any. */
  fault?: Fault['kind'];
}

export interface FakeUpstream {
  /** "http://127.0.0.1:<port>" */
  readonly url: string;
  readonly requests: FakeUpstreamRequest[];
  /** Serves `bytes` at /v2/<any repo>/blobs/<digest> (the digest is not checked: lie if you need to). */
  setBlob(digest: string, bytes: Buffer): void;
  /** Serves `bytes` at /v2/<repo>/manifests/<ref> and at its digest; returns the digest. */
  setManifest(repo: string, ref: string, bytes: Buffer, mediaType: string): string;
  /** Faults are checked in the order set; the first match on path+query with times left applies. */
  setFault(pathRegex: RegExp, fault: Fault): void;
  clearFaults(): void;
  /** Body bytes sent by `endless` faults so far (to see that the reader hung up). */
  readonly endlessBytesSent: () => number;
  /** Stops listening and destroys every connection, stalled ones included. */
  close(): Promise<void>;
}

interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

const ROUTE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;

function errorBody(code: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ errors: [{ code, message, detail: null }] }));
}

function statusErrorCode(status: number): string {
  if (status === 429) return 'TOOMANYREQUESTS';
  if (status === 404) return 'NAME_UNKNOWN';
  if (status === 401) return 'UNAUTHORIZED';
  return 'UNKNOWN';
}

/** A single "bytes=start-end" / "bytes=start-" range, or undefined for anything else. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  const match = header === undefined ? null : /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (match?.[1] === undefined) return undefined;
  const start = Number(match[1]);
  const end = match[2] === undefined || match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  return start <= end ? { start, end } : undefined;
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const requests: FakeUpstreamRequest[] = [];
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, StoredManifest>();
  let faults: Array<{ pathRegex: RegExp; fault: Fault; remaining: number }> = [];
  const stalledSockets = new Set<Socket>();
  let endlessBytes = 0;

  function takeFault(path: string): Fault | undefined {
    const entry = faults.find((candidate) => candidate.remaining > 0 && new RegExp(candidate.pathRegex.source, candidate.pathRegex.flags.replace('g', '')).test(path));
    if (entry === undefined) return undefined;
    entry.remaining -= 1;
    return entry.fault;
  }

  function send(req: IncomingMessage, res: ServerResponse, status: number, headers: OutgoingHttpHeaders, body: Buffer, fault: Fault | undefined): void {
    const length = fault?.kind === 'endless' ? {} : { 'content-length': body.length };
    res.writeHead(status, { 'docker-distribution-api-version': 'registry/2.0', ...length, ...headers });
    const hasBody = req.method !== 'HEAD';
    if (!hasBody || fault === undefined || fault.kind === 'status') {
      res.end(hasBody ? body : undefined);
      return;
    }
    const socket = res.socket;
    switch (fault.kind) {
      case 'wrongBytes':
        res.end(Buffer.from(body.map((byte) => byte ^ 0xff)));
        return;
      case 'truncate':
        res.flushHeaders();
        res.write(body.subarray(0, fault.afterBytes));
        // Destroy only once what was written has reached the kernel, so exactly afterBytes arrive.
        socket?.write('', () => socket.destroy());
        return;
      case 'stall':
        res.flushHeaders();
        res.write(body.subarray(0, fault.afterBytes));
        if (socket !== null) {
          stalledSockets.add(socket);
          socket.once('close', () => stalledSockets.delete(socket));
        }
        return;
      case 'endless': {
        // Chunked, honouring backpressure, until the reader goes away.
        const more = (): void => {
          while (!res.destroyed && res.write(body)) endlessBytes += body.length;
          if (!res.destroyed) {
            endlessBytes += body.length;
            res.once('drain', more);
          }
        };
        res.once('close', () => res.off('drain', more));
        more();
        return;
      }
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const fault = takeFault(path);
    requests.push({ method, path, headers: req.headers, ...(fault === undefined ? {} : { fault: fault.kind }) });
    // The request body (if any) is not needed; drain it so the connection stays usable.
    req.resume();

    if (fault?.kind === 'status') {
      const headers: OutgoingHttpHeaders = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
      send(req, res, fault.status, headers, errorBody(statusErrorCode(fault.status), `injected fault: HTTP ${fault.status}`), fault);
      return;
    }
    const pathname = path.split('?')[0] ?? path;
    if (method !== 'GET' && method !== 'HEAD') {
      send(req, res, 405, { 'content-type': 'application/json' }, errorBody('UNSUPPORTED', `${method} is not supported by the fake upstream`), undefined);
      return;
    }
    if (pathname === '/v2/' || pathname === '/v2') {
      send(req, res, 200, { 'content-type': 'application/json' }, Buffer.from('{}'), fault);
      return;
    }
    const route = ROUTE.exec(pathname);
    if (route === null) {
      send(req, res, 404, { 'content-type': 'application/json' }, errorBody('NAME_UNKNOWN', `no route for ${pathname}`), undefined);
      return;
    }
    const [, repo, kind, ref] = route as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const manifest = manifests.get(`${repo}@${decodeURIComponent(ref)}`);
      if (manifest === undefined) {
        send(req, res, 404, { 'content-type': 'application/json' }, errorBody('MANIFEST_UNKNOWN', `manifest unknown: ${repo}:${ref}`), undefined);
        return;
      }
      send(req, res, 200, { 'content-type': manifest.mediaType, 'docker-content-digest': manifest.digest }, manifest.bytes, fault);
      return;
    }
    const digest = decodeURIComponent(ref);
    const blob = blobs.get(digest);
    if (blob === undefined) {
      send(req, res, 404, { 'content-type': 'application/json' }, errorBody('BLOB_UNKNOWN', `blob unknown: ${digest}`), undefined);
      return;
    }
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'docker-content-digest': digest, 'accept-ranges': 'bytes' };
    const range = parseRange(req.headers.range, blob.length);
    if (range !== undefined) {
      headers['content-range'] = `bytes ${range.start}-${range.end}/${blob.length}`;
      send(req, res, 206, headers, blob.subarray(range.start, range.end + 1), fault);
      return;
    }
    send(req, res, 200, headers, blob, fault);
  }

  const server = createServer(handle);
  const url = await listenOnLoopback(server);

  return {
    url,
    requests,
    setBlob: (digest, bytes) => {
      blobs.set(digest, bytes);
    },
    setManifest: (repo, ref, bytes, mediaType) => {
      const stored = { bytes, mediaType, digest: sha256Digest(bytes) };
      manifests.set(`${repo}@${ref}`, stored);
      manifests.set(`${repo}@${stored.digest}`, stored);
      return stored.digest;
    },
    setFault: (pathRegex, fault) => {
      faults.push({ pathRegex, fault, remaining: fault.times ?? Number.POSITIVE_INFINITY });
    },
    endlessBytesSent: () => endlessBytes,
    clearFaults: () => {
      faults = [];
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of stalledSockets) socket.destroy();
        server.closeAllConnections();
      }),
  };
}
