// How a Docker 1.6-17.x daemon judges a v2 answer: whether it would go on to try v1.
// Transcribed from Docker 1.13 (registry.PingV2Registry, distribution/errors.go
// continueOnError, and the distribution client's HandleErrorResponse /
// parseHTTPErrorResponse), so tests can check what the daemon would do without one.

export interface V2Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** The ping (GET /v2/): a `registry/2.0` version header confirms v2, after which v1 is skipped. */
export function pingConfirmsV2(answer: V2Answer): boolean {
  const header = answer.headers['docker-distribution-api-version'];
  const values = (Array.isArray(header) ? header : [header ?? '']).flatMap((h) => h.split(/[\s,]+/));
  return values.includes('registry/2.0');
}

const FALLBACK_CODES = new Set(['UNAUTHORIZED', 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);

/** An error answer to any later v2 request: does the daemon fall back to v1 on it? */
export function fallsBackToV1(answer: V2Answer, method: string): boolean {
  if (answer.status < 400) return false; // not an error at all
  // Blob HEADs: a 404 is distribution.ErrBlobUnknown, a plain error, and plain errors fall back.
  if (method === 'HEAD' && answer.status === 404) return true;
  if (answer.status >= 500) return true; // UnexpectedHTTPStatusError: a plain error
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body);
  } catch {
    return true; // not JSON: UnexpectedHTTPResponseError
  }
  const document = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { details?: unknown; errors?: unknown };
  if (typeof document.details === 'string' && document.details !== '') return answer.status === 401; // UNAUTHORIZED or UNKNOWN
  // Go's JSON decoding matches field names case-insensitively.
  const errorsKey = Object.keys(document).find((key) => key.toLowerCase() === 'errors');
  const errors = errorsKey === undefined ? undefined : (document as Record<string, unknown>)[errorsKey];
  if (!Array.isArray(errors) || errors.length === 0) return true; // no registry error in the body
  const first = errors[0] as { code?: unknown } | undefined;
  return typeof first?.code === 'string' && FALLBACK_CODES.has(first.code);
}
