// Credentials for warm/export against a Longshore that wants them: --creds USER:PASS, or the
// entry for its host in the auth file docker and podman write on `login`.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../config/load.js';

export interface Credentials {
  username: string;
  password: string;
}

export function parseCreds(value: string): Credentials {
  const colon = value.indexOf(':');
  if (colon <= 0) throw new ConfigError('--creds: expected USER:PASSWORD');
  return { username: value.slice(0, colon), password: value.slice(colon + 1) };
}

/** --creds USER:PASS when given, else the docker/podman login stored for `url`'s host. */
export async function credentialsFor(creds: string | undefined, url: string): Promise<Credentials | undefined> {
  return creds === undefined ? storedCredentials(url) : parseCreds(creds);
}

/** Where podman, skopeo and docker keep logins, in the order they are consulted. */
export function authFileCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  const home = env.HOME ?? homedir();
  files.push(path.join(env.DOCKER_CONFIG ?? path.join(home, '.docker'), 'config.json'));
  return files;
}

/** The login stored for `url`'s host:port in the first auth file that has one. */
export async function storedCredentials(url: string, env: NodeJS.ProcessEnv = process.env): Promise<Credentials | undefined> {
  const { host } = new URL(url);
  for (const file of authFileCandidates(env)) {
    let parsed: { auths?: Record<string, { auth?: string }> };
    try {
      parsed = JSON.parse(await readFile(file, 'utf8')) as typeof parsed;
    } catch {
      continue; // absent or unreadable: the next one
    }
    const entry = Object.entries(parsed.auths ?? {}).find(([key]) => key.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === host)?.[1];
    if (entry?.auth) return parseCreds(Buffer.from(entry.auth, 'base64').toString('utf8'));
  }
  return undefined;
}
