// nginx (Debian package nginx) terminating TLS with a certificate from a private CA in front
// of a plain-HTTP registry: an upstream "behind the corporate CA".
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { freePort } from './ports.js';
import { spawnProcess } from './processes.js';
import { makeTempDir } from './tmp.js';
import type { CertificateFiles } from './tls.js';
import { requireTool } from './tools.js';
import { pollUntil } from './wait.js';

export interface TlsNginx {
  /** "https://127.0.0.1:<port>" */
  readonly url: string;
  dispose(): Promise<void>;
}

export async function startTlsNginx(targetUrl: string, certificate: CertificateFiles): Promise<TlsNginx> {
  const binary = requireTool('nginx', 'nginx');
  const dir = await makeTempDir('tls-nginx');
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir.path, sub));
  // As root, workers would run as "nobody" and could not read the 0700 temp dirs.
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `${isRoot ? 'user root;\n' : ''}daemon off;
worker_processes 1;
pid ${dir.path}/nginx.pid;
error_log ${dir.path}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir.path}/client_body;
  proxy_temp_path ${dir.path}/proxy;
  fastcgi_temp_path ${dir.path}/fastcgi;
  uwsgi_temp_path ${dir.path}/uwsgi;
  scgi_temp_path ${dir.path}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${certificate.cert};
    ssl_certificate_key ${certificate.key};
    client_max_body_size 0;
    location = /nginx-ping { return 200 "ok"; }
    location / {
      proxy_pass ${targetUrl};
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_set_header Host $http_host;
    }
  }
}
`;
  const confPath = join(dir.path, 'nginx.conf');
  await writeFile(confPath, conf);
  const child = spawnProcess(binary, ['-p', `${dir.path}/`, '-c', confPath, '-e', join(dir.path, 'error.log')], { logFile: join(dir.path, 'nginx.out') });
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    await pollUntil(
      async () => {
        const response = await request(`${url}/nginx-ping`, { dispatcher: insecure, reset: true });
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
    await insecure.close();
  }
  return {
    url,
    dispose: async () => {
      await child.stop();
      await dir.remove();
    },
  };
}
