// HTTP plumbing both upstream clients (v2 and v1) share: the connection pool, response
// headers, and how an unexpected answer or a network error becomes an UpstreamError.
import { Transform, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { UpstreamError } from './errors.js';
import type { UpstreamBlob } from './upstream.js';

export const USER_AGENT = 'longshore/0.1 (+pull-through mirror)';

/** The first value of a response header. */
export function header(response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function contentLength(response: Dispatcher.ResponseData): number | undefined {
  const value = header(response, 'content-length');
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

/** Drains a response whose body is not needed, then answers `value`. */
export async function discard<T>(response: Dispatcher.ResponseData, value: T): Promise<T> {
  await response.body.dump().catch(() => undefined);
  return value;
}

/** An answer other than the ones the caller handles, as the pull-through policy classifies it. */
export async function failWith(upstream: string, response: Dispatcher.ResponseData, what: string): Promise<never> {
  await response.body.dump().catch(() => undefined);
  const status = response.statusCode;
  if (status === 429) {
    const retryAfter = Number(header(response, 'retry-after'));
    throw new UpstreamError(upstream, 'rate-limited', `${what}: 429 too many requests`, {
      status,
      retryAfterSeconds: Number.isFinite(retryAfter) ? retryAfter : undefined,
    });
  }
  if (status === 401 || status === 403) throw new UpstreamError(upstream, 'denied', `${what}: access denied (${status})`, { status });
  throw new UpstreamError(upstream, status >= 500 ? 'unavailable' : 'invalid', `${what}: unexpected status ${status}`, { status });
}

/** A request that got no answer (refused, reset, timed out). */
export function networkFailure(upstream: string, what: string, error: unknown): UpstreamError {
  const err = error as { code?: string; message?: string };
  const detail = err.code ? `${err.code} ${err.message ?? ''}`.trim() : String(err.message ?? error);
  if (isCertificateError(error)) {
    return new UpstreamError(upstream, 'unavailable', `${what}: TLS certificate not accepted (${detail}); trust its CA with upstreams[].ca`, { cause: error });
  }
  return new UpstreamError(upstream, 'unavailable', `${what}: ${detail}`, { cause: error });
}

/**
 * A blob response as the pull-through tees it, held to the size the caller expects when it
 * knows one (a manifest's descriptor, v1's X-Docker-Size): a stated Content-Length that
 * disagrees is refused before any byte is stored, and a body sent without one is cut (and
 * fails) past the expected size instead of filling the disk.
 */
export async function expectedSizeBlob(upstream: string, response: Dispatcher.ResponseData, expectedSize: number | undefined, what: string): Promise<UpstreamBlob> {
  const size = contentLength(response);
  if (expectedSize === undefined) return { size, body: response.body };
  if (size !== undefined && size !== expectedSize) {
    await response.body.dump().catch(() => undefined);
    throw new UpstreamError(upstream, 'invalid', `${what}: Content-Length ${size}, expected ${expectedSize} bytes`);
  }
  if (size !== undefined) return { size, body: response.body };
  return { size, body: limitBytes(response.body, expectedSize, () => new UpstreamError(upstream, 'invalid', `${what}: more than the expected ${expectedSize} bytes`)) };
}

/** `body`, failing with `tooLong()` once it passes `maxBytes`. */
function limitBytes(body: Readable, maxBytes: number, tooLong: () => Error): Readable {
  let seen = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.byteLength;
      if (seen > maxBytes) callback(tooLong());
      else callback(null, chunk);
    },
  });
  body.on('error', (error) => limited.destroy(error));
  limited.on('close', () => {
    if (!body.destroyed) body.destroy();
  });
  return body.pipe(limited);
}

// OpenSSL's verification failures as Node reports them (err.code), plus a name mismatch.
const CERTIFICATE_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Whether a network error is the upstream's certificate being refused (not a network fault). */
export function isCertificateError(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (CERTIFICATE_ERROR_CODES.has((current as { code?: string }).code ?? '')) return true;
  }
  return false;
}
