// htpasswd files made with Apache's own tool (Debian apache2-utils), bcrypt entries.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { requireTool } from '../harness/tools.js';

export async function writeHtpasswd(file: string, users: Record<string, string>): Promise<void> {
  const htpasswd = requireTool('htpasswd', 'apache2-utils');
  const lines = Object.entries(users).map(([user, password]) => execFileSync(htpasswd, ['-nbB', user, password], { encoding: 'utf8' }).trim());
  await writeFile(file, `${lines.join('\n')}\n`);
}
