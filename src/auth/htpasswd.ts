// Users from an Apache htpasswd file with bcrypt entries (`htpasswd -B`), the format the Go
// registry uses. The file is re-read when it changes, so users can be added without a restart.
// Verification is bcrypt's own (constant per entry); unknown users still cost one hash.
// Clients that send Basic credentials on every request (v1 over https, `curl -u`) would pay
// a bcrypt per request (tens of milliseconds of one JS thread): a credential that checked out
// is remembered, keyed by a hash of name, password and the stored entry, so a changed
// password or a removed user is never answered from memory.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import type { UserVerifier } from './access.js';

import { LRUCache } from 'lru-cache';

// Hash of a random password: compared against when the user does not exist, so a probe
// cannot tell unknown users from wrong passwords by timing. Made once, off the event loop.
let dummyHash: Promise<string> | undefined;
function dummy(): Promise<string> {
  dummyHash ??= bcrypt.hash(randomBytes(16).toString('hex'), 10);
  return dummyHash;
}

// The file is looked at no more often than this (a stat per request is wasted work).
const REFRESH_INTERVAL_MS = 1000;

export class HtpasswdUsers implements UserVerifier {
  private users = new Map<string, string>();
  private loadedMtimeMs = -1;
  private checkedAt = -Infinity;
  private readonly verified = new LRUCache<string, true>({ max: 1000 });

  constructor(
    private readonly file: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the file if it changed since the last read. */
  async refresh(): Promise<void> {
    this.checkedAt = this.now();
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(this.file)).mtimeMs;
    } catch (error) {
      throw new Error(`cannot read htpasswd file ${this.file}: ${(error as Error).message}`, { cause: error });
    }
    if (mtimeMs === this.loadedMtimeMs) return;
    const users = new Map<string, string>();
    for (const [index, line] of (await readFile(this.file, 'utf8')).split('\n').entries()) {
      const entry = line.trim();
      if (!entry || entry.startsWith('#')) continue;
      const colon = entry.indexOf(':');
      const hash = entry.slice(colon + 1);
      if (colon <= 0 || !/^\$2[aby]\$\d\d\$/.test(hash)) {
        throw new Error(`${this.file}:${index + 1}: not a bcrypt htpasswd entry (create users with htpasswd -B)`);
      }
      users.set(entry.slice(0, colon), hash);
    }
    this.users = users;
    this.loadedMtimeMs = mtimeMs;
  }

  /** Adds a user (v1 sign-up); false when the name is taken. */
  async add(username: string, password: string): Promise<boolean> {
    return this.update(async (users) => {
      if (users.has(username)) return false;
      users.set(username, await hashPassword(password));
      return true;
    });
  }

  /** Changes an existing user's password; false when there is no such user. */
  async setPassword(username: string, password: string): Promise<boolean> {
    return this.update(async (users) => {
      if (!users.has(username)) return false;
      users.set(username, await hashPassword(password));
      return true;
    });
  }

  private writing: Promise<unknown> = Promise.resolve();

  /**
   * Read-modify-write of the file, one at a time, replaced atomically (temp + rename) so the
   * Go registry or another reader never sees half a file.
   */
  private async update(change: (users: Map<string, string>) => Promise<boolean>): Promise<boolean> {
    const run = this.writing.then(async () => {
      await this.refresh();
      // Changed on a copy: if writing fails, memory still matches the file.
      const next = new Map(this.users);
      if (!(await change(next))) return false;
      const text = [...next].map(([name, hash]) => `${name}:${hash}\n`).join('');
      const temp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
      await writeFile(temp, text, { mode: 0o600 });
      await rename(temp, this.file);
      this.users = next;
      this.loadedMtimeMs = (await stat(this.file)).mtimeMs;
      return true;
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  async verify(username: string, password: string): Promise<boolean> {
    if (this.now() - this.checkedAt >= REFRESH_INTERVAL_MS) await this.refresh();
    const hash = this.users.get(username);
    const key = hash === undefined ? undefined : createHash('sha256').update(`${username}\0${password}\0${hash}`).digest('hex');
    if (key !== undefined && this.verified.has(key)) return true;
    // bcryptjs reads $2y$ (Apache's prefix) as $2b$: the algorithm is the same.
    const matches = await bcrypt.compare(password, (hash ?? (await dummy())).replace(/^\$2y\$/, '$2b$'));
    if (key !== undefined && matches) this.verified.set(key, true);
    return hash !== undefined && matches;
  }
}

/** bcrypt with Apache's $2y$ prefix, as `htpasswd -B` writes it (cost 10, its default). */
async function hashPassword(password: string): Promise<string> {
  return (await bcrypt.hash(password, 10)).replace(/^\$2[ab]\$/, '$2y$');
}
