// The undici dispatcher (connection pool) for one upstream: its timeouts, its trust (extra CA
// bundle or no verification) and its route out (a configured forward proxy, or the standard
// HTTP_PROXY / HTTPS_PROXY / NO_PROXY variables, which undici's EnvHttpProxyAgent reads in
// both cases). Built once per upstream and handed to its v1 and v2 clients.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { EnvHttpProxyAgent, ProxyAgent, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';

export type DispatcherSettings = Pick<UpstreamConfig, 'connectTimeout' | 'timeout'> & Partial<Pick<UpstreamConfig, 'proxy' | 'ca' | 'insecure'>>;

export class UpstreamTlsConfigError extends Error {
  readonly code = 'UPSTREAM_CA_UNREADABLE';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UpstreamTlsConfigError';
  }
}

/** TLS options for connections to the upstream (direct, or tunnelled through a proxy). */
function upstreamTls(settings: DispatcherSettings): { timeout: number; ca?: string[]; rejectUnauthorized?: boolean } {
  const tls: { timeout: number; ca?: string[]; rejectUnauthorized?: boolean } = { timeout: settings.connectTimeout };
  if (settings.ca) {
    let pem: string;
    try {
      pem = readFileSync(settings.ca, 'utf8');
    } catch (error) {
      throw new UpstreamTlsConfigError(`upstream CA file ${settings.ca} cannot be read: ${(error as Error).message}`, { cause: error });
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UpstreamTlsConfigError(`upstream CA file ${settings.ca} holds no PEM certificate`);
    // `ca` replaces Node's trusted roots; the bundle is added to them, not put in their place.
    tls.ca = [...rootCertificates, pem];
  }
  if (settings.insecure) tls.rejectUnauthorized = false;
  return tls;
}

export function createUpstreamDispatcher(settings: DispatcherSettings, env: NodeJS.ProcessEnv = process.env): Dispatcher {
  const tls = upstreamTls(settings);
  const pool = {
    headersTimeout: settings.timeout,
    // A gap this long between body chunks is a stall: the fetch fails and nothing is cached.
    bodyTimeout: settings.timeout,
    keepAliveTimeout: 30_000,
  };
  if (settings.proxy) {
    return new ProxyAgent({ ...pool, uri: settings.proxy, requestTls: tls, proxyTls: { timeout: settings.connectTimeout } });
  }
  // Both spellings, as curl and Go do; the lower-case one wins when both are set.
  return new EnvHttpProxyAgent({
    ...pool,
    httpProxy: env.http_proxy ?? env.HTTP_PROXY,
    httpsProxy: env.https_proxy ?? env.HTTPS_PROXY,
    noProxy: env.no_proxy ?? env.NO_PROXY,
    connect: tls,
    requestTls: tls,
    proxyTls: { timeout: settings.connectTimeout },
  });
}
