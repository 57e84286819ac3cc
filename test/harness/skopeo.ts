// skopeo (and podman, see podman.ts), isolated from the machine's container configuration: every call gets its own empty
// registries.conf, auth file, docker config and home, and a permissive signature policy, so
// nothing it reads can redirect it (mirrors, search registries, credential helpers) to the network.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnProcess } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';

export interface SkopeoOptions {
  /** Kill skopeo and reject after this long (default 120 s). */
  timeoutMs?: number;
}

export interface SkopeoResult {
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const PROXY_VARIABLES = new Set(['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy']);

export async function isolatedConfig(dir: string): Promise<{ globalFlags: string[]; env: NodeJS.ProcessEnv }> {
  const paths = {
    registriesConf: join(dir, 'registries.conf'),
    registriesD: join(dir, 'registries.d'),
    policy: join(dir, 'policy.json'),
    authFile: join(dir, 'auth.json'),
    containersConf: join(dir, 'containers.conf'),
    dockerConfig: join(dir, 'docker'),
    home: join(dir, 'home'),
    tmp: join(dir, 'tmp'),
  };
  await Promise.all([paths.registriesD, paths.dockerConfig, paths.home, paths.tmp].map((path) => mkdir(path, { recursive: true })));
  await writeFile(paths.registriesConf, '');
  await writeFile(paths.containersConf, '');
  await writeFile(paths.policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  await writeFile(paths.authFile, JSON.stringify({ auths: {} }));
  await writeFile(join(paths.dockerConfig, 'config.json'), JSON.stringify({ auths: {} }));

  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!PROXY_VARIABLES.has(key.toLowerCase())) env[key] = value;
  }
  Object.assign(env, {
    HOME: paths.home,
    XDG_CONFIG_HOME: join(paths.home, '.config'),
    XDG_RUNTIME_DIR: dir,
    REGISTRY_AUTH_FILE: paths.authFile,
    REGISTRIES_CONFIG_PATH: paths.registriesConf,
    CONTAINERS_REGISTRIES_CONF: paths.registriesConf,
    CONTAINERS_CONF: paths.containersConf,
    DOCKER_CONFIG: paths.dockerConfig,
    // Big blobs are staged in TMPDIR (/var/tmp by default); keep them in our temp dir.
    TMPDIR: paths.tmp,
    NO_PROXY: '127.0.0.1,localhost',
  });
  return {
    // --registries-conf is a hidden global flag in skopeo 1.9; the env variables above cover it too.
    globalFlags: ['--policy', paths.policy, '--registries.d', paths.registriesD, '--registries-conf', paths.registriesConf, '--tmpdir', paths.tmp],
    env,
  };
}

/** Runs `skopeo <args>`; rejects with the command, exit status and stderr tail on failure. */
export async function skopeo(args: string[], opts: SkopeoOptions = {}): Promise<SkopeoResult> {
  const binary = requireTool('skopeo', 'skopeo');
  const configDir = await makeTempDir('skopeo');
  try {
    const { globalFlags, env } = await isolatedConfig(configDir.path);
    const child = spawnProcess(binary, [...globalFlags, ...args], { env });
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void child.stop(1_000);
    }, timeoutMs);
    const status = await child.exited.finally(() => clearTimeout(timer));
    if (timedOut) throw new Error(`skopeo timed out after ${timeoutMs} ms: ${child.describe(40)}`);
    if (status.code !== 0) throw new Error(`skopeo failed: ${child.describe(40)}`);
    return { stdout: child.stdoutLines.join('\n'), stderr: child.stderrLines.join('\n') };
  } finally {
    await configDir.remove();
  }
}

/** Pushes `oci:<layoutDir>:<tag>` to `docker://<destRef>` (destRef: "127.0.0.1:port/repo:tag"), plain HTTP. */
export async function pushOciLayout(layoutDir: string, tag: string, destRef: string, opts: { all?: boolean } & SkopeoOptions = {}): Promise<SkopeoResult> {
  return skopeo(
    ['copy', ...(opts.all === true ? ['--all'] : []), '--dest-tls-verify=false', '--dest-no-creds', `oci:${layoutDir}:${tag}`, `docker://${destRef}`],
    opts,
  );
}

/**
 * Copies `docker://<srcRef>` into a skopeo `dir:` layout: manifest.json, and every blob under its
 * bare hex digest as file name (with --all, per-platform manifests as <hex>.manifest.json).
 */
export async function copyToDir(srcRef: string, outDir: string, opts: { all?: boolean } & SkopeoOptions = {}): Promise<SkopeoResult> {
  return skopeo(
    ['copy', ...(opts.all === true ? ['--all'] : []), '--src-tls-verify=false', '--src-no-creds', `docker://${srcRef}`, `dir:${outDir}`],
    opts,
  );
}

/** The manifest exactly as the registry serves it (skopeo inspect --raw). */
export async function inspectRaw(ref: string, opts: SkopeoOptions = {}): Promise<string> {
  const { stdout } = await skopeo(['inspect', '--raw', '--tls-verify=false', '--no-creds', `docker://${ref}`], opts);
  return stdout;
}
