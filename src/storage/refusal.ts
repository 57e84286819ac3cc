// A store that cannot take more bytes: a full disk or quota (ENOSPC, EDQUOT), or one that takes
// none (EROFS, EACCES, EPERM). Such a failure is the registry's condition, not a bug and not the
// client's mistake: mirrored content is served without being cached, pushes get a 507, and one
// warning a minute says so (a full disk must not write a log line per request).
import type { Logger } from 'pino';
import { RegistryError } from '../protocol/errors.js';

const STORAGE_REFUSED_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM']);

/** True when `error` says the storage refuses writes (full, read-only, no permission). */
export function isStorageRefusal(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && STORAGE_REFUSED_CODES.has(code);
}

const WARN_INTERVAL_MS = 60_000;

/** Logs storage refusals at warn, at most once a minute (with how many were not logged). */
export class StorageRefusalLog {
  private lastWarnedAt = Number.NEGATIVE_INFINITY;
  private unlogged = 0;

  constructor(
    private readonly log: Pick<Logger, 'warn'>,
    private readonly now: () => number = Date.now,
  ) {}

  refused(error: unknown, what: string): void {
    if (this.now() - this.lastWarnedAt < WARN_INTERVAL_MS) {
      this.unlogged += 1;
      return;
    }
    this.lastWarnedAt = this.now();
    const code = (error as NodeJS.ErrnoException).code;
    this.log.warn({ code, err: (error as Error).message, what, alsoRefusedSinceLastWarning: this.unlogged }, 'storage refuses writes (full or read-only): serving without caching');
    this.unlogged = 0;
  }
}

/**
 * A refusal as the client sees it: 507 Insufficient Storage in the OCI envelope (v1 renders the
 * same status as `{"error"}`), with a Retry-After. Other errors pass through unchanged.
 */
export function storageError(error: unknown, what: string): unknown {
  if (!isStorageRefusal(error)) return error;
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return new RegistryError('UNAVAILABLE', `${what}: the registry's storage refuses writes (${code}); retry once space is freed`, {
    status: 507,
    headers: { 'retry-after': '60' },
    cause: error,
  });
}
