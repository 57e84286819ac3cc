// Failed-login limits per client address and per user name (auth.loginFailures). Each key
// may fail `failures` times per window; past that, its logins are refused with 429 and
// Retry-After until the window ends, before any bcrypt work is spent on them. A success does
// not reset the earlier failures: a guesser who gets one right still had to stay under the limit.
// Memory is bounded: at most MAX_TRACKED keys of each kind, least recently failed dropped.
import { LRUCache } from 'lru-cache';
import { RegistryError } from '../protocol/errors.js';

export interface LoginLimitSettings {
  /** Failed logins one client address may make per window (0: no limit). */
  perAddress: number;
  /** Failed logins for one user name per window, from anywhere (0: no limit). */
  perUser: number;
  windowMs: number;
}

interface Window {
  failures: number;
  endsAt: number;
}

const MAX_TRACKED = 10_000;

export class LoginLimiter {
  private readonly byAddress = new LRUCache<string, Window>({ max: MAX_TRACKED });
  private readonly byUser = new LRUCache<string, Window>({ max: MAX_TRACKED });

  constructor(
    private readonly settings: LoginLimitSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Starts a login: throws 429 (with Retry-After) when the address or the name is over its
   * limit, else counts the attempt as failed until `succeeded` (or `abandoned`) takes it
   * back. Counted up front, so a burst of concurrent guesses cannot all slip past the limit
   * while their bcrypt checks wait in the queue.
   */
  begin(address: string | undefined, username: string): void {
    this.check(address, username);
    if (address !== undefined) this.count(this.byAddress, address, +1);
    this.count(this.byUser, username, +1);
  }

  /** The login begun for this address and name was right: it does not count as a failure. */
  succeeded(address: string | undefined, username: string): void {
    this.abandoned(address, username);
  }

  /** The login could not be checked (e.g. the queue was full): not a failure either. */
  abandoned(address: string | undefined, username: string): void {
    if (address !== undefined) this.count(this.byAddress, address, -1);
    this.count(this.byUser, username, -1);
  }

  /** Throws 429 (with Retry-After) when the address or the user name is over its limit. */
  check(address: string | undefined, username: string): void {
    const blocked = [
      address === undefined ? undefined : this.blockedFor(this.byAddress, address, this.settings.perAddress),
      this.blockedFor(this.byUser, username, this.settings.perUser),
    ].filter((ms): ms is number => ms !== undefined);
    if (blocked.length === 0) return;
    const retryAfter = Math.max(1, Math.ceil(Math.max(...blocked) / 1000));
    throw new RegistryError('TOOMANYREQUESTS', `too many failed logins; retry in ${retryAfter} s`, { headers: { 'retry-after': String(retryAfter) } });
  }


  /** Milliseconds until the key may try again, or undefined when it is under its limit. */
  private blockedFor(windows: LRUCache<string, Window>, key: string, limit: number): number | undefined {
    if (limit === 0) return undefined;
    const window = windows.peek(key);
    if (!window || window.endsAt <= this.now() || window.failures < limit) return undefined;
    return window.endsAt - this.now();
  }

  private count(windows: LRUCache<string, Window>, key: string, change: 1 | -1): void {
    const window = windows.get(key);
    if (!window || window.endsAt <= this.now()) {
      if (change > 0) windows.set(key, { failures: 1, endsAt: this.now() + this.settings.windowMs });
      return;
    }
    window.failures = Math.max(0, window.failures + change);
  }
}
