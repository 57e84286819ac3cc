// Failed-login limits per client address and per user name (auth.loginFailures). Each key
// may fail `failures` times per window; past that, its logins are refused with 429 and
// Retry-After until the window ends, before any bcrypt work is spent on them. A success does
// not reset the earlier failures: a guesser who gets one right still had to stay under the limit.
// The counts live in the coordinator's WindowCounters: in memory for one replica (bounded,
// least recently counted dropped), in Redis with cluster.redis, so a guesser spreading tries
// over the replicas behind a load balancer meets the same limit.
import { createHash } from 'node:crypto';
import { InProcessWindowCounters } from '../coordination/in-process.js';
import type { WindowCounters } from '../coordination/ports.js';
import { RegistryError } from '../protocol/errors.js';

export interface LoginLimitSettings {
  /** Failed logins one client address may make per window (0: no limit). */
  perAddress: number;
  /** Failed logins for one user name per window, from anywhere (0: no limit). */
  perUser: number;
  windowMs: number;
}

export class LoginLimiter {
  constructor(
    private readonly settings: LoginLimitSettings,
    now: () => number = Date.now,
    private readonly counters: WindowCounters = new InProcessWindowCounters(now),
  ) {}

  /**
   * Starts a login: throws 429 (with Retry-After) when the address or the name is over its
   * limit, else counts the attempt as failed until `succeeded` (or `abandoned`) takes it
   * back. Counted up front, so a burst of concurrent guesses cannot all slip past the limit
   * while their bcrypt checks wait in the queue.
   */
  async begin(address: string | undefined, username: string): Promise<void> {
    // Counted first and checked on the count it produced: atomic per key (one Redis INCRBY),
    // so of concurrent logins exactly those under the limit go ahead, on any replica.
    const keys = this.limitedKeys(address, username);
    const windows = await Promise.all(keys.map(({ key }) => this.counters.add(key, +1, this.settings.windowMs)));
    const blocked = windows.flatMap((window, i) => (window && window.count > keys[i]!.limit ? [window.remainingMs] : []));
    if (blocked.length === 0) return;
    await this.count(address, username, -1); // refused: not an attempt
    throw tooMany(blocked);
  }

  /** The login begun for this address and name was right: it does not count as a failure. */
  async succeeded(address: string | undefined, username: string): Promise<void> {
    await this.abandoned(address, username);
  }

  /** The login could not be checked (e.g. the queue was full): not a failure either. */
  async abandoned(address: string | undefined, username: string): Promise<void> {
    await this.count(address, username, -1);
  }

  /** Throws 429 (with Retry-After) when the address or the user name is over its limit. */
  async check(address: string | undefined, username: string): Promise<void> {
    const blocked = (await Promise.all(this.limitedKeys(address, username).map(({ key, limit }) => this.blockedFor(key, limit)))).filter((ms): ms is number => ms !== undefined);
    if (blocked.length > 0) throw tooMany(blocked);
  }

  /** The counters this login touches, with their limits (a limit of 0 is none). */
  private limitedKeys(address: string | undefined, username: string): Array<{ key: string; limit: number }> {
    return [
      ...(address === undefined || this.settings.perAddress === 0 ? [] : [{ key: addressKey(address), limit: this.settings.perAddress }]),
      ...(this.settings.perUser === 0 ? [] : [{ key: userKey(username), limit: this.settings.perUser }]),
    ];
  }

  /** Milliseconds until the key may try again, or undefined when it is under its limit. */
  private async blockedFor(key: string, limit: number): Promise<number | undefined> {
    if (limit === 0) return undefined;
    const window = await this.counters.peek(key);
    if (!window || window.count < limit) return undefined;
    return window.remainingMs;
  }

  private async count(address: string | undefined, username: string, change: 1 | -1): Promise<void> {
    await Promise.all(this.limitedKeys(address, username).map(({ key }) => this.counters.add(key, change, this.settings.windowMs)));
  }
}

function tooMany(blockedForMs: number[]): RegistryError {
  const retryAfter = Math.max(1, Math.ceil(Math.max(...blockedForMs) / 1000));
  return new RegistryError('TOOMANYREQUESTS', `too many failed logins; retry in ${retryAfter} s`, { headers: { 'retry-after': String(retryAfter) } });
}

// Names are hashed: a key's length stays bounded whatever a client sends as a user name.
const addressKey = (address: string) => `login:address:${address}`;
const userKey = (username: string) => `login:user:${createHash('sha256').update(username).digest('hex').slice(0, 32)}`;
