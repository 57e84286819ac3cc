// Debian's nginx as a child process on a free loopback port, in its own temp prefix, stopped
// through its handle. Callers give the parts of the config that differ (the TLS proxy of the
// deployment tests, the sendfile baseline of the bench); the rest is here once.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { freePort } from './ports.js';
import { spawnProcess, type ProcessHandle } from './processes.js';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';
import { pollUntil } from './wait.js';

export interface NginxProcess {
  /** "http(s)://127.0.0.1:<port>" */
  readonly url: string;
  readonly process: ProcessHandle;
  dispose(): Promise<void>;
}

export interface NginxSite {
  tls: boolean;
  /** Top-level directives (workers, master process). */
  main: string;
  /** Directives inside `http {}`, the server block included. It must answer `GET /nginx-ping` with 200. */
  http: string;
}

export async function startNginxProcess(label: string, site: (port: number) => NginxSite): Promise<NginxProcess> {
  const binary = requireTool('nginx', 'nginx');
  const dir = await makeTempDir(label);
  const port = await freePort();
  const { tls, main, http } = site(port);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir.path, sub));
  // As root, workers would run as "nobody" and could not read the 0700 temp dirs.
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `${isRoot ? 'user root;\n' : ''}daemon off;
${main}
pid ${dir.path}/nginx.pid;
error_log ${dir.path}/error.log warn;
http {
  access_log off;
  client_body_temp_path ${dir.path}/client_body;
  proxy_temp_path ${dir.path}/proxy;
  fastcgi_temp_path ${dir.path}/fastcgi;
  uwsgi_temp_path ${dir.path}/uwsgi;
  scgi_temp_path ${dir.path}/scgi;
${http}
}
`;
  const confPath = join(dir.path, 'nginx.conf');
  await writeFile(confPath, conf);
  // -e: the compiled-in error log (/var/log/nginx) is opened before the config is read.
  const child = spawnProcess(binary, ['-p', `${dir.path}/`, '-c', confPath, '-e', join(dir.path, 'error.log')], { logFile: join(dir.path, 'nginx.out') });
  // The probe only checks that nginx answers; the certificate is the tests' business.
  const probeAgent = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    await pollUntil(
      async () => {
        const response = await request(`${url}/nginx-ping`, { dispatcher: probeAgent, reset: true });
        await response.body.dump();
        return response.statusCode === 200;
      },
      { timeoutMs: 10_000, what: `nginx to answer on ${url}`, abortReason: () => (child.exitStatus() === undefined ? undefined : child.describe()) },
    );
  } catch (error) {
    await child.stop();
    await dir.remove();
    throw error;
  } finally {
    await probeAgent.close();
  }
  return {
    url,
    process: child,
    dispose: async () => {
      await child.stop();
      await dir.remove();
    },
  };
}
