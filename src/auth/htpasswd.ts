// Users from an Apache htpasswd file with bcrypt entries (`htpasswd -B`), the format the Go
// registry uses. The file is re-read when it changes, so users can be added without a restart.
//
// What a login costs, and who pays (issue 14, point 1):
// - bcrypt runs in a small worker pool (bcrypt-pool.ts), never on the event loop, with a
//   bounded queue: a flood of made-up credentials waits there or is refused, and cached pulls
//   keep their latency.
// - Failed logins are limited per client address and per user name (login-limiter.ts); over
//   the limit a login is refused with 429 before any bcrypt work.
// - An unknown user is checked against a dummy hash of the same cost as the file's entries,
//   so a wrong password and an unknown name take the same time (names cannot be enumerated).
// - Clients that send Basic credentials on every request (v1 over https, `curl -u`) would pay
//   a bcrypt per request: a credential that checked out is remembered, keyed by a hash of
//   name, password and the stored entry, so a changed password or a removed user is never
//   answered from memory.
//
// A file that turns bad at run time (unreadable, or an entry that is not bcrypt) does not
// turn logins into 500s: the last good users keep working, one warning names the problem, and
// the user of a bad line gets 401 until it is fixed. At start-up the same problems are fatal.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import type { UserVerifier } from './policy.js';
import { BcryptPool } from './bcrypt-pool.js';
import type { LoginLimiter } from './login-limiter.js';

// The file is looked at no more often than this (a stat per request is wasted work).
const REFRESH_INTERVAL_MS = 1000;
// bcrypt as `htpasswd -B` and the Go registry write it; cost 4-31, 22 + 31 characters of salt and hash.
const BCRYPT_ENTRY = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
// Cost of accounts this server creates (v1 sign-up, password changes); Apache's -B default is 5.
const NEW_ACCOUNT_COST = 10;
// Dummy cost when the file has no entries to copy the cost from.
const DEFAULT_COST = NEW_ACCOUNT_COST;
const UNREADABLE = 'unreadable';

export interface HtpasswdOptions {
  /** Where bcrypt runs (closed by close()); one thread with a small queue when not given. */
  pool?: BcryptPool;
  /** Failed-login limits; none when not given. */
  limiter?: LoginLimiter;
  /**
   * auth.signupAccess: what accounts made by v1 sign-up may do in private namespaces. "pull"
   * (the default) until an operator removes the name from `<htpasswd>.signups`.
   */
  signupAccess?: 'pull' | 'push';
  /** For the run-time warnings about a bad file. */
  log?: Pick<Logger, 'warn'>;
  now?: () => number;
}

interface ParsedFile {
  users: Map<string, string>;
  /** Lines that are not bcrypt entries: kept verbatim when we rewrite the file. */
  badLines: Array<{ number: number; text: string; user: string | undefined }>;
}

export class HtpasswdUsers implements UserVerifier {
  private users = new Map<string, string>();
  private badLines: ParsedFile['badLines'] = [];
  private loadedMtimeMs = -1;
  private checkedAt = -Infinity;
  private readonly verified = new LRUCache<string, true>({ max: 1000 });
  private readonly pool: BcryptPool;
  private readonly now: () => number;
  private dummyHash: Promise<string> | undefined;
  /** Self-registered accounts (see mayPush). */
  private signups = new Set<string>();
  private dummyCost = DEFAULT_COST;
  /** Problems already warned about, so a file that stays bad is reported once. */
  private warned = new Set<string>();

  constructor(
    private readonly file: string,
    private readonly options: HtpasswdOptions = {},
  ) {
    this.pool = options.pool ?? new BcryptPool({ workers: 1, queue: 64 });
    this.now = options.now ?? Date.now;
  }

  /**
   * Reads the file if it changed since the last read. Strict (start-up): an unreadable file or
   * a bad entry throws, naming the line.
   */
  async refresh(): Promise<void> {
    this.checkedAt = this.now();
    this.signups = await this.readSignups();
    const parsed = await this.readIfChanged();
    if (!parsed) return;
    const bad = parsed.badLines[0];
    if (bad) throw new Error(`${this.file}:${bad.number}: not a bcrypt htpasswd entry (create users with htpasswd -B)`);
    this.adopt(parsed);
  }

  /** Adds a user (v1 sign-up); false when the name is taken. */
  async add(username: string, password: string): Promise<boolean> {
    return this.update(async (users) => {
      if (users.has(username) || this.badLines.some((line) => line.user === username)) return false;
      users.set(username, await this.hashPassword(password));
      // Recorded before the account exists: a crash in between leaves a listed name, never
      // an account with more rights than sign-up gives.
      await this.recordSignup(username);
      return true;
    });
  }

  /**
   * False for a self-registered account while auth.signupAccess is "pull" and its name is
   * still in `<htpasswd>.signups`: it may pull, not push or delete.
   */
  mayPush(username: string): boolean {
    return this.options.signupAccess === 'push' || !this.signups.has(username);
  }

  /** The file listing self-registered accounts, one name per line (edited by operators). */
  get signupsFile(): string {
    return `${this.file}.signups`;
  }

  private async recordSignup(username: string): Promise<void> {
    const names = new Set([...(await this.readSignups()), username]);
    const temp = `${this.signupsFile}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temp, [...names].map((name) => `${name}\n`).join(''), { mode: 0o600 });
    await rename(temp, this.signupsFile);
    this.signups = names;
  }

  private async readSignups(): Promise<Set<string>> {
    try {
      const text = await readFile(this.signupsFile, 'utf8');
      return new Set(text.split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#')));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw error;
    }
  }

  /** Changes an existing user's password; false when there is no such user. */
  async setPassword(username: string, password: string): Promise<boolean> {
    return this.update(async (users) => {
      if (!users.has(username)) return false;
      users.set(username, await this.hashPassword(password));
      return true;
    });
  }

  private writing: Promise<unknown> = Promise.resolve();

  /**
   * Read-modify-write of the file, one at a time, replaced atomically (temp + rename) so the
   * Go registry or another reader never sees half a file. Lines we could not read are written
   * back as they were: they are the operator's to fix, not ours to drop.
   */
  private async update(change: (users: Map<string, string>) => Promise<boolean>): Promise<boolean> {
    const run = this.writing.then(async () => {
      await this.refreshLeniently();
      // Changed on a copy: if writing fails, memory still matches the file.
      const next = new Map(this.users);
      if (!(await change(next))) return false;
      const text = [...next].map(([name, hash]) => `${name}:${hash}\n`).join('') + this.badLines.map((line) => `${line.text}\n`).join('');
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

  async verify(username: string, password: string, address?: string): Promise<boolean> {
    const limiter = this.options.limiter;
    // Before any work: a client or a name over its failure limit costs nothing more.
    await limiter?.begin(address, username);
    let matches: boolean;
    try {
      matches = await this.check(username, password);
    } catch (error) {
      await limiter?.abandoned(address, username);
      throw error;
    }
    if (matches) await limiter?.succeeded(address, username);
    return matches;
  }

  private async check(username: string, password: string): Promise<boolean> {
    if (this.now() - this.checkedAt >= REFRESH_INTERVAL_MS) await this.refreshLeniently();
    const hash = this.users.get(username);
    const key = hash === undefined ? undefined : createHash('sha256').update(`${username}\0${password}\0${hash}`).digest('hex');
    if (key !== undefined && this.verified.has(key)) return true;
    // bcryptjs reads $2y$ (Apache's prefix) as $2b$: the algorithm is the same.
    const matches = await this.pool.compare(password, (hash ?? (await this.dummy())).replace(/^\$2y\$/, '$2b$'));
    if (key === undefined || !matches) return false;
    this.verified.set(key, true);
    return true;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Run-time refresh: a bad or unreadable file keeps the last good users and warns once. */
  private async refreshLeniently(): Promise<void> {
    this.checkedAt = this.now();
    let parsed: ParsedFile | undefined;
    try {
      // Unreadable: keep the last list (a name in it stays pull-only).
      this.signups = await this.readSignups().catch(() => this.signups);
      parsed = await this.readIfChanged();
    } catch (error) {
      if (!this.warned.has(UNREADABLE)) {
        this.options.log?.warn({ file: this.file, err: (error as Error).message, users: this.users.size }, 'htpasswd file cannot be read; keeping the users of its last good version');
      }
      this.warned = new Set([...this.warned, UNREADABLE]);
      return;
    }
    if (!parsed) {
      this.warned.delete(UNREADABLE); // readable again, and unchanged
      return;
    }
    const problems = new Set<string>();
    for (const line of parsed.badLines) {
      const problem = `${line.number}:${line.text}`;
      problems.add(problem);
      if (this.warned.has(problem)) continue;
      this.options.log?.warn(
        { file: this.file, line: line.number, user: line.user },
        `htpasswd ${this.file}:${line.number} is not a bcrypt entry (create users with htpasswd -B); that user is refused until it is fixed`,
      );
    }
    this.warned = problems;
    this.adopt(parsed);
  }

  /** The file's entries when its mtime changed since the last read; undefined when not. */
  private async readIfChanged(): Promise<ParsedFile | undefined> {
    let mtimeMs: number;
    let text: string;
    try {
      mtimeMs = (await stat(this.file)).mtimeMs;
      if (mtimeMs === this.loadedMtimeMs) return undefined;
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read htpasswd file ${this.file}: ${(error as Error).message}`, { cause: error });
    }
    const parsed = parseHtpasswd(text);
    this.loadedMtimeMs = mtimeMs;
    return parsed;
  }

  private adopt(parsed: ParsedFile): void {
    this.users = parsed.users;
    this.badLines = parsed.badLines;
    const cost = commonestCost([...parsed.users.values()]) ?? DEFAULT_COST;
    if (cost !== this.dummyCost || !this.dummyHash) {
      this.dummyCost = cost;
      this.dummyHash = undefined;
    }
  }

  /**
   * A hash of a random password at the cost most entries have, compared against when the user
   * does not exist: same work, same time, for an unknown name and a wrong password.
   */
  private dummy(): Promise<string> {
    this.dummyHash ??= this.pool.hash(randomBytes(16).toString('hex'), this.dummyCost);
    const made = this.dummyHash;
    made.catch(() => {
      if (this.dummyHash === made) this.dummyHash = undefined; // a full queue: try again next time
    });
    return made;
  }

  /** bcrypt with Apache's $2y$ prefix, as `htpasswd -B` writes it. */
  private async hashPassword(password: string): Promise<string> {
    return (await this.pool.hash(password, NEW_ACCOUNT_COST)).replace(/^\$2[ab]\$/, '$2y$');
  }
}

/** Entries of an htpasswd file; lines that are not `name:bcrypt` are returned apart. */
export function parseHtpasswd(text: string): ParsedFile {
  const users = new Map<string, string>();
  const badLines: ParsedFile['badLines'] = [];
  for (const [index, line] of text.split('\n').entries()) {
    const entry = line.trim();
    if (!entry || entry.startsWith('#')) continue;
    const colon = entry.indexOf(':');
    const hash = entry.slice(colon + 1);
    if (colon <= 0 || !BCRYPT_ENTRY.test(hash)) {
      badLines.push({ number: index + 1, text: entry, user: colon > 0 ? entry.slice(0, colon) : undefined });
      continue;
    }
    users.set(entry.slice(0, colon), hash);
  }
  // A name on a bad line is refused even if a good line names it too: the operator meant something else.
  for (const bad of badLines) if (bad.user !== undefined) users.delete(bad.user);
  return { users, badLines };
}

function commonestCost(hashes: readonly string[]): number | undefined {
  const counts = new Map<number, number>();
  for (const hash of hashes) {
    const cost = Number(hash.slice(4, 6));
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let best: number | undefined;
  for (const [cost, count] of counts) if (best === undefined || count > (counts.get(best) ?? 0)) best = cost;
  return best;
}
