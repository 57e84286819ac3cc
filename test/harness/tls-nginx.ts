// nginx (Debian package nginx) terminating TLS with a certificate from a private CA in front
// of a plain-HTTP registry: an upstream "behind the corporate CA".
import { startNginxProcess } from './nginx.js';
import type { CertificateFiles } from './tls.js';

export interface TlsNginx {
  /** "https://127.0.0.1:<port>" */
  readonly url: string;
  dispose(): Promise<void>;
}

export function startTlsNginx(targetUrl: string, certificate: CertificateFiles): Promise<TlsNginx> {
  return startNginxProcess('tls-nginx', (port) => ({
    tls: true,
    main: 'worker_processes 1;\nevents { worker_connections 256; }',
    http: `  server {
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
  }`,
  }));
}
