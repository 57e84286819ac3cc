// Why an upstream request failed, in the terms the pull-through policy decides on:
// unavailable/rate-limited → serve stale if we can; denied → the client is told; not found
// is not an error (methods return undefined). What a client is told is decided once, here
// (registryErrorOf), and rendered by the API's edge (OCI envelope or v1 JSON).
import { RegistryError } from '../protocol/errors.js';

export type UpstreamFailureKind = 'unavailable' | 'rate-limited' | 'denied' | 'invalid';

export class UpstreamError extends Error {
  constructor(
    readonly upstream: string,
    readonly kind: UpstreamFailureKind,
    message: string,
    readonly options: { status?: number; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(`upstream ${upstream}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpstreamError';
  }

  get status(): number | undefined {
    return this.options.status;
  }

  /** True when serving what we already have beats reporting the error. */
  get isTransient(): boolean {
    return this.kind === 'unavailable' || this.kind === 'rate-limited';
  }
}

/**
 * Any error in the client's terms: an upstream failure becomes the coded error a client
 * acts on (429 stays 429, anything else unreachable is 502); other errors pass unchanged.
 */
export function registryErrorOf(error: unknown): unknown {
  if (!(error instanceof UpstreamError)) return error;
  switch (error.kind) {
    case 'rate-limited':
      return new RegistryError('TOOMANYREQUESTS', error.message, {
        headers: error.options.retryAfterSeconds !== undefined ? { 'retry-after': String(error.options.retryAfterSeconds) } : {},
        cause: error,
      });
    case 'denied':
      // Docker Hub answers 401 for repositories that do not exist; to a mirror client both
      // mean "not here", and a 404 lets docker and containerd fall back to the next source.
      return new RegistryError('NAME_UNKNOWN', error.message, { cause: error });
    case 'unavailable':
      return new RegistryError('UNAVAILABLE', error.message, { status: 502, cause: error });
    case 'invalid':
      return new RegistryError('UNKNOWN', error.message, { status: 502, cause: error });
  }
}

/** Whether an error means "there is no such thing" to a client (a 404 once coded). */
export function isNotFound(error: unknown): boolean {
  const coded = registryErrorOf(error);
  return coded instanceof RegistryError && coded.status === 404;
}
