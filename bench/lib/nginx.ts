// nginx as the "how fast can a static file go" baseline: serves given files under the same
// paths a registry would (/v2/<name>/blobs/<digest>) with sendfile, as a child process
// stopped through its own handle.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from '../../test/harness/ports.js';
import { spawnProcess, type ProcessHandle } from '../../test/harness/processes.js';
import { makeTempDir } from '../../test/harness/tmp.js';
import { requireTool } from '../../test/harness/tools.js';
import { pollUntil } from '../../test/harness/wait.js';

export interface NginxHandle {
  readonly url: string;
  readonly process: ProcessHandle;
  dispose(): Promise<void>;
}

/** `files`: URL path -> file on disk. */
export async function startNginx(files: Record<string, string>): Promise<NginxHandle> {
  const binary = requireTool('nginx', 'nginx');
  const dir = await makeTempDir('nginx');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir.path, sub));
  const locations = Object.entries(files)
    .map(([path, file]) => `    location = ${path} { alias ${file}; }`)
    .join('\n');
  // As root, workers would run as "nobody" and could not read the 0700 temp dirs.
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `${isRoot ? 'user root;\n' : ''}daemon off;
master_process on;
worker_processes auto;
pid ${dir.path}/nginx.pid;
error_log ${dir.path}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir.path}/client_body;
  proxy_temp_path ${dir.path}/proxy;
  fastcgi_temp_path ${dir.path}/fastcgi;
  uwsgi_temp_path ${dir.path}/uwsgi;
  scgi_temp_path ${dir.path}/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    location = /ping { return 200 "ok"; }
${locations}
  }
}
`;
  const confPath = join(dir.path, 'nginx.conf');
  await writeFile(confPath, conf);
  // -e: the compiled-in error log (/var/log/nginx) is opened before the config is read.
  const child = spawnProcess(binary, ['-p', `${dir.path}/`, '-c', confPath, '-e', join(dir.path, 'error.log')], {
    logFile: join(dir.path, 'nginx.out'),
  });
  try {
    await pollUntil(
      async () => {
        const response = await request(`${url}/ping`, { reset: true });
        await response.body.dump();
        return response.statusCode === 200;
      },
      { timeoutMs: 10_000, what: `nginx to answer on ${url}`, abortReason: () => (child.exitStatus() === undefined ? undefined : child.describe()) },
    );
  } catch (error) {
    await child.stop();
    await dir.remove();
    throw error;
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
