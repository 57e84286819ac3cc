// The configuration schema: every key, its default and its validation in one place.
// Keys here are a public contract (README, env overrides, other issues), so rename nothing.
import { z } from 'zod';
import { parseByteSize, parseDuration } from './units.js';

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(value)} (use e.g. "30s", "5m", "1h")` });
    return z.NEVER;
  }
  return ms;
});

// Kept for the storage bound (cache lifecycle); exported so later keys share one parser.
export const byteSize = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = parseByteSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(value)} (use e.g. "10GiB", "500MB")` });
    return z.NEVER;
  }
  return bytes;
});

/**
 * A YAML section whose keys are all commented out parses as null; treat it as absent so its
 * defaults apply (`cache:` with only comments below it means "defaults").
 */
function section<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => (value === null ? undefined : value), schema);
}

const listenAddress = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:5000"');

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http:// or https:// URL')
  .transform((u) => u.replace(/\/+$/, ''));

const v1UpstreamSchema = z.strictObject({
  // The v1 index: repositories, tokens, X-Docker-Endpoints, search.
  index: httpUrl.optional(),
  // The v1 registry holding image data; default: what the index names in X-Docker-Endpoints.
  registry: httpUrl.optional(),
  // Which image of a multi-platform v2 tag a v1 client gets ("os/arch" or "os/arch/variant").
  platform: z
    .string()
    .regex(/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/, 'expected "os/arch" or "os/arch/variant", e.g. "linux/amd64"')
    .default('linux/amd64'),
});

const UPLOAD_DEFAULTS = { maxSessions: 1000, maxSessionsPerUser: 100 };

// storage.s3 (issue 16): the bucket that holds blobs and records when storage.driver is "s3".
const s3Schema = z
  .strictObject({
    // Omit for AWS; any S3-compatible server's URL otherwise.
    endpoint: httpUrl.optional(),
    region: z.string().min(1).default('us-east-1'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3-63 lower-case letters, digits, "." and "-"'),
    // Key prefix, so one bucket can hold several mirrors; a "/" is added when missing.
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*\/?$|^$/, 'letters, digits, ".", "_", "-" and "/" between them')
      .refine((prefix) => !prefix.split('/').some((segment) => segment === '.' || segment === '..'), 'no "." or ".." segments')
      .default('')
      .transform((prefix) => (prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`)),
    // Both or neither; neither: the AWS SDK's default chain (environment, profile, instance role).
    accessKeyId: z.string().min(1).optional(),
    secretAccessKey: z.string().min(1).optional(),
    // Path-style URLs (http://host/bucket/key). Default: true with an endpoint, false for AWS.
    forcePathStyle: z.boolean().optional(),
    // true: blob GETs of stored blobs answered 307 to a presigned URL of the object (20 minutes).
    redirect: z.boolean().default(false),
    // Finished scratch files (storage.path) kept for later ones to write over, up to this many
    // bytes: a new file's page-cache pages cost far more than reused ones (spare-files.ts). 0: none.
    spareScratchBytes: byteSize.default(1024 * 1024 * 1024), // DEFAULT_SPARE_SCRATCH_BYTES
  })
  .transform((s3) => ({ ...s3, forcePathStyle: s3.forcePathStyle ?? s3.endpoint !== undefined }));

const LOGIN_FAILURE_DEFAULTS = { perAddress: 20, perUser: 10, window: 5 * 60_000 };
const HTTP_DEFAULTS = { headersTimeout: 10_000, requestTimeout: 60 * 60_000, bodyIdleTimeout: 60_000, maxBufferedBodies: 64 * 1024 * 1024, trustProxy: [] };

const upstreamSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" and "-"'),
    // The v2 API; an upstream has this, a v1 index, or both.
    url: httpUrl.optional(),
    v1: section(v1UpstreamSchema.default({ platform: 'linux/amd64' })),
    default: z.boolean().default(false),
    hosts: z.array(z.string().min(1)).default([]),
    username: z.string().optional(),
    password: z.string().optional(),
    tagTtl: duration.default(5 * 60_000),
    // Docker Hub keeps official images under "library/": "/v2/alpine" means "library/alpine".
    // Defaults to true when the upstream answers for docker.io.
    libraryPrefix: z.boolean().optional(),
    // Token servers (WWW-Authenticate realms) on another origin that may receive the
    // configured credentials over plain http; by default they go only to this upstream's own
    // origin or over https. Origins, e.g. "http://auth.internal:5001".
    tokenRealms: z.array(httpUrl.transform((u) => new URL(u).origin)).default([]),
    // Bounds waiting for response headers and any gap between body chunks (a stalled upstream).
    timeout: duration.default(30_000),
    connectTimeout: duration.default(10_000),
    // Forward proxy for this upstream ("http://proxy:3128"); default: HTTP(S)_PROXY / NO_PROXY.
    proxy: httpUrl.optional(),
    // PEM file of CA certificates trusted for this upstream, besides the system roots.
    ca: z.string().min(1).optional(),
    // Skip certificate verification (a test upstream with a self-signed certificate). Logged at start.
    insecure: z.boolean().default(false),
    // After `failures` transient failures in a row, stop asking for `cooldown` (serve stale).
    circuitBreaker: section(
      z
        .strictObject({
          failures: z.number().int().min(1).default(5),
          cooldown: duration.default(30_000),
        })
        .default({ failures: 5, cooldown: 30_000 }),
    ),
  })
  .transform((u) => ({ ...u, libraryPrefix: u.libraryPrefix ?? u.hosts.includes('docker.io') }));

export const configSchema = z
  .strictObject({
    listen: listenAddress.default('127.0.0.1:5000'),
    // Serve HTTPS on `listen` with this PEM certificate (chain) and key; re-read on SIGHUP.
    tls: section(z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional()),
    // Base URL clients use to reach this server, for self-references; the request's Host otherwise.
    publicUrl: httpUrl.optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    storage: section(
      z
        .strictObject({
          path: z.string().min(1).default('./data'),
          // "fs": everything under storage.path. "s3": blobs and records in storage.s3's bucket,
          // storage.path holds scratch files only (in-progress downloads, uploads and shared reads).
          driver: z.enum(['fs', 's3']).default('fs'),
          // fs driver: write temp files with O_DIRECT from aligned staging blocks (a cold miss's
          // bytes skip the page cache; direct-staging.ts). false: through the page cache.
          directWrites: z.boolean().default(true),
          s3: section(s3Schema.optional()),
          // Allow DELETE of manifests, tags and blobs in private repositories.
          delete: z.boolean().default(false),
          // Unfinished blob uploads idle this long are dropped with their data.
          uploadTimeout: duration.default(60 * 60_000),
          // Bounds on unfinished blob uploads (push sessions); past them, starting an upload is
          // answered 429 TOOMANYREQUESTS with Retry-After. Idle sessions hold no descriptor.
          uploads: section(
            z
              .strictObject({
                // Open sessions of all users together.
                maxSessions: z.number().int().min(1).default(UPLOAD_DEFAULTS.maxSessions),
                // Open sessions of one user.
                maxSessionsPerUser: z.number().int().min(1).default(UPLOAD_DEFAULTS.maxSessionsPerUser),
              })
              .default(UPLOAD_DEFAULTS),
          ),
          cache: section(
            z
              .strictObject({
                // Bound on mirrored content ("10GiB"); least recently used goes first. Unset: no bound.
                maxBytes: byteSize.optional(),
              })
              .default({}),
          ),
        })
        .default({ path: './data', driver: 'fs', directWrites: true, delete: false, uploadTimeout: 60 * 60_000, uploads: UPLOAD_DEFAULTS, cache: {} }),
    ),
    // Several replicas sharing one storage (an S3 bucket) coordinate through Redis.
    cluster: section(
      z
        .strictObject({
          // "redis://[:password@]host:6379[/db]" (or rediss:// for TLS): set, replicas coordinate
          // through it (fetch leases, locks, blob events, the private and cache indexes).
          redis: z
            .string()
            .url()
            .refine((u) => /^rediss?:\/\//.test(u), 'must be a redis:// or rediss:// URL')
            .optional(),
          // How the other replicas reach this one (its own address, not the load balancer's).
          advertiseUrl: httpUrl.optional(),
        })
        .default({}),
    ),
    private: section(
      z
        .strictObject({
          // First path component of repositories stored here (never mirrored, never evicted).
          namespaces: z.array(z.string().regex(/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/, 'a repository name component')).default([]),
          // Pulls of private repositories without credentials.
          anonymousPull: z.boolean().default(false),
        })
        .default({ namespaces: [], anonymousPull: false }),
    ),
    auth: section(
      z
        .strictObject({
          // Users: an Apache htpasswd file with bcrypt entries (htpasswd -B), as the Go registry uses.
          htpasswd: z.string().min(1).optional(),
          // v1 sign-up: POST /v1/users/ adds accounts to the htpasswd file (docker login ≤1.10).
          allowSignup: z.boolean().default(false),
          // Pulls of mirrored content without credentials.
          anonymousPull: z.boolean().default(true),
          // Lifetime of issued tokens (v2 Bearer, v1 Token).
          tokenTtl: duration.default(5 * 60_000),
          // Token signing key; default: generated once and kept in <storage.path>/auth-secret.
          secret: z.string().min(16).optional(),
          // What self-registered (v1 sign-up) accounts may do in private namespaces until an
          // operator grants more: "pull", or "push" (pull, push and delete, like any user).
          signupAccess: z.enum(['pull', 'push']).default('pull'),
          // bcrypt runs in worker threads: this many at once; `verifyQueue` more may wait,
          // past that a login is answered 429.
          verifyWorkers: z.number().int().min(1).max(64).default(1),
          verifyQueue: z.number().int().min(1).default(64),
          // Failed logins allowed per client address and per user name in `window`; past the
          // limit, logins are answered 429 with Retry-After until the window ends. 0: no limit.
          loginFailures: section(
            z
              .strictObject({
                perAddress: z.number().int().min(0).default(20),
                perUser: z.number().int().min(0).default(10),
                window: duration.default(5 * 60_000),
              })
              .default(LOGIN_FAILURE_DEFAULTS),
          ),
        })
        .default({
          anonymousPull: true,
          allowSignup: false,
          tokenTtl: 5 * 60_000,
          signupAccess: 'pull',
          verifyWorkers: 1,
          verifyQueue: 64,
          loginFailures: LOGIN_FAILURE_DEFAULTS,
        }),
    ),
    // Limits on what a client connection may hold (slow senders, buffered bodies).
    http: section(
      z
        .strictObject({
          // The request line and headers must arrive within this (slow-header attacks).
          headersTimeout: duration.default(HTTP_DEFAULTS.headersTimeout),
          // The whole request, body included, must arrive within this (0: no bound). Large
          // layer pushes need time: keep it above the biggest push at the slowest link.
          requestTimeout: duration.default(HTTP_DEFAULTS.requestTimeout),
          // A connection with no bytes moving either way for this long is closed: a stalled
          // sender, or a client that stopped reading. Keep it above upstreams[].timeout.
          bodyIdleTimeout: duration.default(HTTP_DEFAULTS.bodyIdleTimeout),
          // Total memory all requests together may hold in buffered bodies (manifests, v1
          // JSON); past it, such requests are answered 503 until memory frees.
          maxBufferedBodies: byteSize.default(HTTP_DEFAULTS.maxBufferedBodies),
          // Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client;
          // without them every client behind a proxy shares its address (and its login limit).
          trustProxy: z.array(z.string().min(1)).default([]),
        })
        .default(HTTP_DEFAULTS),
    ),
    api: section(
      z
        .strictObject({
          // The Docker Registry v1 API under /v1/ (and /_ping).
          v1: z.boolean().default(true),
          // false: /v2/ answers 404, so Docker 1.6–17.x clients fall back to v1.
          v2: z.boolean().default(true),
        })
        .default({ v1: true, v2: true }),
    ),
    // Never contact an upstream: serve the cache only (air-gapped sites).
    offline: z.boolean().default(false),
    // On SIGTERM: how long responses in flight may take to finish before they are cut.
    shutdownGracePeriod: duration.default(10_000),
    metrics: section(
      z
        .strictObject({
          // A second listener serving only /metrics ("host:port"); /metrics is on the main one too.
          listen: listenAddress.optional(),
        })
        .default({}),
    ),
    // The read-only web page at /ui/ (and its JSON API under /ui/api/).
    ui: section(z.strictObject({ enabled: z.boolean().default(true) }).default({ enabled: true })),
    upstreams: section(z.array(upstreamSchema).default([])),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.upstreams.forEach((upstream, index) => {
      if (seen.has(upstream.name)) {
        ctx.addIssue({ code: 'custom', path: ['upstreams', index, 'name'], message: `duplicate upstream name "${upstream.name}"` });
      }
      seen.add(upstream.name);
      if (upstream.url === undefined && upstream.v1.index === undefined) {
        ctx.addIssue({ code: 'custom', path: ['upstreams', index, 'url'], message: 'an upstream needs url (v2), v1.index, or both' });
      }
      if (upstream.v1.registry !== undefined && upstream.v1.index === undefined) {
        ctx.addIssue({ code: 'custom', path: ['upstreams', index, 'v1', 'index'], message: 'v1.registry needs v1.index (tokens come from the index)' });
      }
      if ((upstream.username === undefined) !== (upstream.password === undefined)) {
        ctx.addIssue({ code: 'custom', path: ['upstreams', index, 'password'], message: 'username and password go together' });
      }
    });
    const routingNames = new Set(config.upstreams.flatMap((u) => [u.name, ...u.hosts]));
    config.private.namespaces.forEach((namespace, index) => {
      if (routingNames.has(namespace)) {
        ctx.addIssue({ code: 'custom', path: ['private', 'namespaces', index], message: `"${namespace}" is also an upstream name or host` });
      }
    });
    if (config.auth.allowSignup && config.auth.htpasswd === undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth', 'allowSignup'], message: 'sign-up writes accounts to auth.htpasswd, which is not set' });
    }
    const s3 = config.storage.s3;
    if (config.storage.driver === 's3' && s3 === undefined) {
      ctx.addIssue({ code: 'custom', path: ['storage', 's3'], message: 'storage.driver is "s3", but storage.s3 (bucket, …) is not set' });
    }
    if (s3 !== undefined && (s3.accessKeyId === undefined) !== (s3.secretAccessKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['storage', 's3', 'secretAccessKey'], message: 'accessKeyId and secretAccessKey go together' });
    }
    if (config.http.requestTimeout > 0 && config.http.headersTimeout > config.http.requestTimeout) {
      ctx.addIssue({ code: 'custom', path: ['http', 'headersTimeout'], message: 'must not be longer than http.requestTimeout' });
    }
    if (config.cluster.redis !== undefined) {
      // Peer requests are authenticated with a token derived from the secret, and tokens one
      // replica issues must verify on the others: a secret generated per data directory won't do.
      if (config.auth.secret === undefined) {
        ctx.addIssue({ code: 'custom', path: ['auth', 'secret'], message: 'required with cluster.redis: the same secret on every replica' });
      }
      if (config.cluster.advertiseUrl === undefined) {
        ctx.addIssue({ code: 'custom', path: ['cluster', 'advertiseUrl'], message: 'required with cluster.redis: how the other replicas reach this one' });
      }
    }
    if (config.upstreams.filter((u) => u.default).length > 1) {
      ctx.addIssue({ code: 'custom', path: ['upstreams'], message: 'at most one upstream may be "default: true"' });
    }
  });

export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = Config['upstreams'][number];
/** An upstream that speaks the v2 API (has `url`). */
export type V2UpstreamConfig = UpstreamConfig & { url: string };

export function speaksV2(upstream: UpstreamConfig): upstream is V2UpstreamConfig {
  return upstream.url !== undefined;
}
