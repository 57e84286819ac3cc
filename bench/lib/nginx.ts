// nginx as the "how fast can a static file go" baseline: serves given files under the same
// paths a registry would (/v2/<name>/blobs/<digest>) with sendfile, as a child process
// stopped through its own handle.
import { startNginxProcess, type NginxProcess } from '../../test/harness/nginx.js';

export type NginxHandle = NginxProcess;

/** `files`: URL path -> file on disk. */
export function startNginx(files: Record<string, string>): Promise<NginxHandle> {
  const locations = Object.entries(files)
    .map(([path, file]) => `    location = ${path} { alias ${file}; }`)
    .join('\n');
  return startNginxProcess('nginx', (port) => ({
    tls: false,
    main: 'master_process on;\nworker_processes auto;\nevents { worker_connections 1024; }',
    http: `  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    location = /nginx-ping { return 200 "ok"; }
${locations}
  }`,
  }));
}
