// Upstream problems only the operator can fix (a refused certificate, refused credentials)
// logged at warn, once per upstream and problem per cooldown (the upstream's circuit-breaker
// cooldown). Clients never see them as such:
// dockerd mirror clients fall back to the upstream silently, so the log is the only clue.
import type { Logger } from 'pino';
import { UpstreamError } from './errors.js';
import { isCertificateError } from './http.js';

type Problem = 'certificate' | 'credentials';

const MESSAGES: Record<Problem, string> = {
  certificate: 'upstream TLS certificate not accepted',
  credentials: 'upstream refused the configured credentials',
};

export interface WatchedUpstream {
  name: string;
  hasCredentials: boolean;
  cooldownMs: number;
}

export class UpstreamProblemLog {
  private readonly lastLogged = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Looks at a failed upstream call and logs it if it is an operator's problem. */
  observe(upstream: WatchedUpstream, error: unknown): void {
    const problem = classify(error, upstream.hasCredentials);
    if (!problem) return;
    const key = `${upstream.name}\u0000${problem}`;
    const last = this.lastLogged.get(key);
    if (last !== undefined && this.now() - last < upstream.cooldownMs) return;
    this.lastLogged.set(key, this.now());
    this.log.warn({ upstream: upstream.name, reason: (error as Error).message }, MESSAGES[problem]);
  }

  /**
   * The client with every async method watched: failures pass through unchanged after being
   * observed. Any client shape (v1 or v2) gets it without knowing about it.
   */
  watch<T extends object>(client: T, upstream: WatchedUpstream): T {
    return new Proxy(client, {
      get: (target, property, receiver) => {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || property === 'close') return value;
        return (...args: unknown[]) => {
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!(result instanceof Promise)) return result;
          return result.catch((error: unknown) => {
            this.observe(upstream, error);
            throw error;
          });
        };
      },
    });
  }
}

function classify(error: unknown, hasCredentials: boolean): Problem | undefined {
  if (isCertificateError(error)) return 'certificate';
  if (hasCredentials && error instanceof UpstreamError && error.kind === 'denied') return 'credentials';
  return undefined;
}
