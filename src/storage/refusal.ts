// A store that cannot take more bytes: a full disk or quota (ENOSPC, EDQUOT), or one that takes
// none (EROFS, EACCES, EPERM). Such a failure is the registry's condition, not a bug and not the
// client's mistake: mirrored content is served without being cached, pushes get a 507, and one
// warning a minute says so (a full disk must not write a log line per request).
import type { Logger } from 'pino';

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
