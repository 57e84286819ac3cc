// `podman search`, the way a user runs it, isolated like skopeo (harness/skopeo.ts: its own
// registries.conf, auth files and home) and with its own storage and state directories, so it
// neither reads nor writes the machine's /var/lib/containers.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnProcess } from './processes.js';
import { isolatedConfig } from './skopeo.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';

const TIMEOUT_MS = 60_000;

/** Names `podman search` prints for `host:port/term`, plain HTTP; `creds` as "user:password". */
export async function podmanSearch(registryHost: string, term: string, opts: { creds?: string; limit?: number } = {}): Promise<string[]> {
  const binary = requireTool('podman', 'podman');
  const dir = await makeTempDir('podman');
  try {
    const { env } = await isolatedConfig(dir.path);
    const storage = ['--root', join(dir.path, 'root'), '--runroot', join(dir.path, 'runroot'), '--storage-driver', 'vfs', '--tmpdir', join(dir.path, 'tmp'), '--events-backend', 'none'];
    // podman 4.3's search has no --creds: credentials come from an auth file, as after `podman login`.
    const authFile = join(dir.path, 'search-auth.json');
    const auths = opts.creds ? { [registryHost]: { auth: Buffer.from(opts.creds).toString('base64') } } : {};
    await writeFile(authFile, JSON.stringify({ auths }));
    const args = ['search', '--tls-verify=false', '--format', '{{.Name}}', '--authfile', authFile, ...(opts.limit ? ['--limit', String(opts.limit)] : []), `${registryHost}/${term}`];
    const child = spawnProcess(binary, [...storage, ...args], { env });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void child.stop(1_000);
    }, TIMEOUT_MS);
    const status = await child.exited.finally(() => clearTimeout(timer));
    if (timedOut) throw new Error(`podman search timed out after ${TIMEOUT_MS} ms: ${child.describe(40)}`);
    if (status.code !== 0) throw new Error(`podman search failed: ${child.describe(40)}`);
    return child.stdoutLines.filter((line) => line.trim() !== '');
  } finally {
    await dir.remove();
  }
}
