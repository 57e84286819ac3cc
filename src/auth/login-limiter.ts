// Failed-login limits per client address and per user name (auth.loginFailures). Each key
// may fail `failures` times per window; past that, its logins are refused with 429 and
// Retry-After until the window ends, before any bcrypt work is spent on them. A success does
// not reset the count: a guesser who gets one right still had to stay under the limit.
// The counts live in the coordinator's WindowCounters: in memory for one replica (bounded,
// least recently failed dropped), in Redis with cluster.redis, so a guesser spreading tries
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

  /** Throws 429 (with Retry-After) when the address or the user name is over its limit. */
  async check(address: string | undefined, username: string): Promise<void> {
    const blocked = (
      await Promise.all([
        address === undefined ? undefined : this.blockedFor(addressKey(address), this.settings.perAddress),
        this.blockedFor(userKey(username), this.settings.perUser),
      ])
    ).filter((ms): ms is number => ms !== undefined);
    if (blocked.length === 0) return;
    const retryAfter = Math.max(1, Math.ceil(Math.max(...blocked) / 1000));
    throw new RegistryError('TOOMANYREQUESTS', `too many failed logins; retry in ${retryAfter} s`, { headers: { 'retry-after': String(retryAfter) } });
  }

  async failed(address: string | undefined, username: string): Promise<void> {
    await Promise.all([
      address === undefined || this.settings.perAddress === 0 ? undefined : this.counters.increment(addressKey(address), this.settings.windowMs),
      this.settings.perUser === 0 ? undefined : this.counters.increment(userKey(username), this.settings.windowMs),
    ]);
  }

  /** Milliseconds until the key may try again, or undefined when it is under its limit. */
  private async blockedFor(key: string, limit: number): Promise<number | undefined> {
    if (limit === 0) return undefined;
    const window = await this.counters.peek(key);
    if (!window || window.count < limit) return undefined;
    return window.remainingMs;
  }
}

// Names are hashed: a key's length stays bounded whatever a client sends as a user name.
const addressKey = (address: string) => `login:address:${address}`;
const userKey = (username: string) => `login:user:${createHash('sha256').update(username).digest('hex').slice(0, 32)}`;
