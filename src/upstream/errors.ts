// Why an upstream request failed, in the terms the pull-through policy decides on:
// unavailable/rate-limited → serve stale if we can; denied → the client is told; not found
// is not an error (methods return undefined).

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
