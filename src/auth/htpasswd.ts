// Users from an Apache htpasswd file with bcrypt entries (`htpasswd -B`), the format the Go
// registry uses. The file is re-read when it changes, so users can be added without a restart.
// Verification is bcrypt's own (constant per entry); unknown users still cost one hash.
import { randomBytes } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import type { UserVerifier } from './v2-access.js';

// Hash of a random password: compared against when the user does not exist, so a probe
// cannot tell unknown users from wrong passwords by timing. Made on first use.
let dummyHash: string | undefined;
function dummy(): string {
  dummyHash ??= bcrypt.hashSync(randomBytes(16).toString('hex'), 10);
  return dummyHash;
}

export class HtpasswdUsers implements UserVerifier {
  private users = new Map<string, string>();
  private loadedMtimeMs = -1;

  constructor(private readonly file: string) {}

  /** Reads the file if it changed since the last read. */
  async refresh(): Promise<void> {
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

  has(username: string): boolean {
    return this.users.has(username);
  }

  /** Adds a user (v1 sign-up); false when the name is taken. */
  async add(username: string, password: string): Promise<boolean> {
    return this.update(async () => {
      if (this.users.has(username)) return false;
      this.users.set(username, await hashPassword(password));
      return true;
    });
  }

  /** Changes an existing user's password; false when there is no such user. */
  async setPassword(username: string, password: string): Promise<boolean> {
    return this.update(async () => {
      if (!this.users.has(username)) return false;
      this.users.set(username, await hashPassword(password));
      return true;
    });
  }

  private writing: Promise<unknown> = Promise.resolve();

  /**
   * Read-modify-write of the file, one at a time, replaced atomically (temp + rename) so the
   * Go registry or another reader never sees half a file.
   */
  private async update(change: () => Promise<boolean>): Promise<boolean> {
    const run = this.writing.then(async () => {
      await this.refresh();
      if (!(await change())) return false;
      const text = [...this.users].map(([name, hash]) => `${name}:${hash}\n`).join('');
      const temp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
      await writeFile(temp, text, { mode: 0o600 });
      await rename(temp, this.file);
      this.loadedMtimeMs = (await stat(this.file)).mtimeMs;
      return true;
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  async verify(username: string, password: string): Promise<boolean> {
    await this.refresh();
    const hash = this.users.get(username);
    // bcryptjs reads $2y$ (Apache's prefix) as $2b$: the algorithm is the same.
    const matches = await bcrypt.compare(password, (hash ?? dummy()).replace(/^\$2y\$/, '$2b$'));
    return hash !== undefined && matches;
  }
}

/** bcrypt with Apache's $2y$ prefix, as `htpasswd -B` writes it (cost 10, its default). */
async function hashPassword(password: string): Promise<string> {
  return (await bcrypt.hash(password, 10)).replace(/^\$2[ab]\$/, '$2y$');
}
