// The web page: /ui/ (one static page and its script), its JSON API under /ui/api/, the
// redirect of a browser's GET /, and the hook that counts pulls for it.
//
// The page renders in the browser from the JSON API because the login token lives in the
// browser session (sessionStorage), as the registry token protocol hands it out: a plain
// navigation carries no token, a fetch() from the script does.
import { readFileSync } from 'node:fs';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { sendRegistryError } from '../api/errors.js';
import { parseDigest } from '../protocol/digest.js';
import { RegistryError } from '../protocol/errors.js';
import { isValidRepositoryName } from '../protocol/reference.js';
import { accessRequest } from '../api/v2/routes.js';
import type { Services } from '../services.js';
import type { MirrorTarget, RoutableUpstream } from '../mirror/router.js';
import type { ResponseObserver } from '../app.js';
import { metadataKeys } from '../storage/keys.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { UiQueryService, MAX_PER_PAGE, type Viewer } from './query-service.js';
import { RepositoryCatalog, type RepositoryOrigin } from './repository-catalog.js';
import { PullTally, TrafficHistory, type PathPulls } from './traffic.js';
import { upstreamStatuses } from './upstream-status.js';

const STATIC_FILES = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
} as const;

// Nothing the page loads may come from elsewhere: no CDN, no fonts, no third-party script.
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

const V2_MANIFEST_PATH = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const V1_TAG_PATH = /^\/v1\/repositories\/(.+)\/tags\/([^/]+)$/;
const V1_IMAGES_PATH = /^\/v1\/repositories\/(.+)\/images$/;

/** A request that pulled or pushed a repository: what the catalog counts. */
export interface RepositoryActivity {
  api: 'v1' | 'v2';
  action: 'pull' | 'push';
  name: string;
  /** The tag pulled; undefined for a pull by digest (v2) or of the image list (v1). */
  tag: string | undefined;
}

/**
 * Pulls: a v2 manifest GET (by tag, or by digest, which only moves "last pulled"), a v1 tag
 * lookup, a v1 image list (the start of every v1 pull). Pushes: a v2 manifest PUT, a v1 tag
 * PUT. Only successful answers count; HEAD never does.
 */
export function repositoryActivity(method: string, url: string, status: number): RepositoryActivity | undefined {
  const path = url.split('?')[0] ?? '';
  const v2 = V2_MANIFEST_PATH.exec(path);
  if (v2) {
    const [, name = '', reference = ''] = v2;
    if (method === 'GET' && status === 200) return { api: 'v2', action: 'pull', name, tag: reference.includes(':') ? undefined : reference };
    if (method === 'PUT' && status === 201) return { api: 'v2', action: 'push', name, tag: reference.includes(':') ? undefined : reference };
    return undefined;
  }
  const v1Tag = V1_TAG_PATH.exec(path);
  // A v1 push ends by tagging the pushed image (Docker 1.10: PUT …/tags/TAG answers 200).
  if (v1Tag && method === 'PUT' && status === 200) return { api: 'v1', action: 'push', name: v1Tag[1] ?? '', tag: v1Tag[2] };
  if (method !== 'GET' || status !== 200) return undefined;
  if (v1Tag) return { api: 'v1', action: 'pull', name: v1Tag[1] ?? '', tag: v1Tag[2] };
  const v1Images = V1_IMAGES_PATH.exec(path);
  if (v1Images) return { api: 'v1', action: 'pull', name: v1Images[1] ?? '', tag: undefined };
  return undefined;
}

const pageQuery = {
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  perPage: z.coerce.number().int().min(1).max(MAX_PER_PAGE).default(50),
};
const repositoriesQuery = z.strictObject({ ...pageQuery, q: z.string().max(256).optional(), kind: z.enum(['mirrored', 'private']).optional() });
const repositoryQuery = z.strictObject({ ...pageQuery, name: z.string() });
const imageQuery = z.strictObject({ name: z.string(), digest: z.string() });

function loadStaticFiles(): Map<string, Buffer> {
  const directory = new URL('./static/', import.meta.url);
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(STATIC_FILES)) {
    try {
      files.set(name, readFileSync(new URL(name, directory)));
    } catch (error) {
      throw new Error(`web page file ${name} is missing from ${directory.pathname} (npm run build copies src/ui/static): ${(error as Error).message}`, { cause: error });
    }
  }
  return files;
}

export function uiPlugin(services: Services, observeResponses: (observer: ResponseObserver) => void): FastifyPluginCallback {
  const plugin: FastifyPluginCallback = (app, _options, done) => {
    const files = loadStaticFiles();
    const pulls = new PullTally();
    // The tallied pulls reach the catalog whenever it writes or is read (its flush).
    const catalog = new RepositoryCatalog(services.metadata, { log: app.log, collect: () => recordPulls(services, catalog, pulls.drain()) });
    const traffic = new TrafficHistory(services.metrics.registry);
    const query = new UiQueryService({
      catalog,
      metadata: services.metadata,
      manifests: services.manifests,
      blobs: services.blobs,
      cache: services.cacheIndex,
      traffic,
      inflightFetches: () => services.inflight.count,
      cacheMaxBytes: services.config.storage.cache.maxBytes,
      mayPull: (user, repository) => services.access.policy.decide(user === undefined ? { kind: 'anonymous' } : { kind: 'user', name: user }, repository, ['list']).allowed,
    });

    // In the background: a big store takes a while to walk, and the page works meanwhile.
    const reconcile = () =>
      void catalog.reconcile(storedRepositories(services)).then(
        (added) => app.log.info({ added }, 'repository catalog reconciled with the store'),
        (error: unknown) => app.log.warn({ err: (error as Error).message }, 'repository catalog: reconcile failed'),
      );
    // At start, and after an import (or gc) beside this server: its repositories show.
    const stopFollowing = services.cacheChanges.onRescanned(reconcile);
    app.addHook('onReady', () => {
      reconcile();
      return Promise.resolve();
    });
    app.addHook('onClose', async () => {
      stopFollowing();
      traffic.close();
      await catalog.close();
    });
    // Pulls and pushes of every route, told by the app's per-request listener (app.ts).
    observeResponses((request, status) => {
      const { method, url } = request;
      // Pulls are counted by path and worked out later (PullTally); pushes are rare and go at once.
      if (method === 'GET' && status === 200) {
        if (url.startsWith('/v2/') ? url.includes('/manifests/') : url.startsWith('/v1/repositories/')) pulls.add(url);
      } else if (method === 'PUT') {
        recordActivity(services, catalog, repositoryActivity(method, url, status), url);
      }
    });

    app.get('/', (request, reply) => {
      if (!(request.headers.accept ?? '').includes('text/html')) return reply.callNotFound();
      return reply.redirect('/ui/', 302);
    });
    app.get('/ui', (_request, reply) => reply.redirect('/ui/', 301));
    app.get('/ui/', (_request, reply) => sendStatic(reply, files, 'index.html'));
    app.get('/ui/:file', (request, reply) => {
      const { file } = request.params as { file: string };
      if (!(file in STATIC_FILES) || file === 'index.html') return sendRegistryError(reply, new RegistryError('NAME_UNKNOWN', `no such page file: ${file}`, { status: 404 }));
      return sendStatic(reply, files, file as keyof typeof STATIC_FILES);
    });

    app.get('/ui/api/session', async (request, reply) => {
      const viewer = await viewerOf(services, request);
      return reply.send({
        user: viewer.user ?? null,
        anonymousPull: services.config.auth.anonymousPull,
        loginAvailable: services.users !== undefined,
        registryHost: services.config.publicUrl ? new URL(services.config.publicUrl).host : (request.headers.host ?? ''),
      });
    });
    app.get('/ui/api/overview', async (request, reply) => reply.send(await query.overview(await mirrorViewer(services, request))));
    app.get('/ui/api/upstreams', async (request, reply) => {
      await mirrorViewer(services, request);
      const statuses = await upstreamStatuses({
        upstreams: services.config.upstreams,
        clientByName: (name) => services.router.byName(name) ?? services.v1Router.byName(name)?.v1,
        activity: services.upstreamActivity,
        registry: services.metrics.registry,
      });
      return reply.send({ upstreams: statuses });
    });
    app.get('/ui/api/repositories', async (request, reply) => {
      const viewer = await viewerOf(services, request);
      const { q, kind, page, perPage } = parseQuery(repositoriesQuery, request.query);
      return reply.send(await query.repositories(viewer, { query: q, kind, page, perPage }));
    });
    app.get('/ui/api/repository', async (request, reply) => {
      const viewer = await viewerOf(services, request);
      const { name, page, perPage } = parseQuery(repositoryQuery, request.query);
      const repository = await query.repository(viewer, validName(name), { page, perPage });
      if (!repository) throw unknownRepository(name);
      return reply.send(repository);
    });
    app.get('/ui/api/image', async (request, reply) => {
      const viewer = await viewerOf(services, request);
      const { name, digest } = parseQuery(imageQuery, request.query);
      try {
        parseDigest(digest);
      } catch {
        throw new RegistryError('DIGEST_INVALID', `not a digest: ${digest}`, { detail: { digest } });
      }
      const image = await query.image(viewer, validName(name), digest);
      if (!image) throw new RegistryError('MANIFEST_UNKNOWN', `no manifest ${digest} in ${name} (or you may not see it)`, { detail: { name, digest } });
      return reply.send(image);
    });
    done();
  };
  // Shares the enclosing scope (like fastify-plugin), so the pull-counting hook sees the v1
  // and v2 routes registered beside it; its routes are all under /ui/ and / anyway.
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
  return plugin;
}

function sendStatic(reply: FastifyReply, files: Map<string, Buffer>, name: keyof typeof STATIC_FILES): FastifyReply {
  return reply
    .header('content-type', STATIC_FILES[name])
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('cache-control', 'no-cache')
    .send(files.get(name));
}

function parseQuery<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.join('.') ?? '';
  throw new RegistryError('UNSUPPORTED', `bad query parameter ${field ? `"${field}"` : ''}: ${issue?.message ?? 'invalid'}`, { status: 400, detail: { parameter: field } });
}

function validName(name: string): string {
  if (!isValidRepositoryName(name)) throw new RegistryError('NAME_INVALID', `not a repository name: ${name}`, { detail: { name } });
  return name;
}

function unknownRepository(name: string): RegistryError {
  // The same answer whether it does not exist or the viewer may not see it: no probing.
  return new RegistryError('NAME_UNKNOWN', `no repository ${name} (or you may not see it: log in)`, { detail: { name } });
}

/**
 * Who is looking: the identity the access edge decides on for this request (the login form's
 * token, or other credentials the registry API accepts), recorded on it like every decision;
 * refused credentials are a 401 and the page asks to log in again.
 */
async function viewerOf(services: Services, request: FastifyRequest): Promise<Viewer> {
  const identity = await services.access.identifyRequest(accessRequest(request, services.config.publicUrl));
  return { user: identity.user };
}

/** Overview and upstreams describe mirrored content: only for those who may pull it. */
async function mirrorViewer(services: Services, request: FastifyRequest): Promise<Viewer> {
  const viewer = await viewerOf(services, request);
  if (viewer.user === undefined && !services.config.auth.anonymousPull) throw new RegistryError('UNAUTHORIZED', 'this mirror is for its users only: log in');
  return viewer;
}

/** Where a client-facing name lives: a private repository, or a mirrored one at its upstream. */
function originOf(services: Services, activity: RepositoryActivity, namespace: string | undefined): { name: string; origin: RepositoryOrigin } | undefined {
  const { name } = activity;
  if (services.policy.isPrivate(name)) return { name, origin: { kind: 'private', repository: name } };
  const router: { resolve(name: string, namespace: string | undefined): MirrorTarget<RoutableUpstream> | undefined; defaultUpstream: RoutableUpstream | undefined } =
    activity.api === 'v1' ? services.v1Router : services.router;
  const target = router.resolve(name, namespace);
  if (!target) return undefined;
  const clientName = target.upstream.name === router.defaultUpstream?.name ? target.repository : `${target.upstream.name}/${target.repository}`;
  return { name: clientName, origin: { kind: 'mirrored', upstream: target.upstream.name, repository: target.repository } };
}

/** Pushes, and pulls (`pulls` of them, the latest at `at`), of what `url` names. */
function recordActivity(services: Services, catalog: RepositoryCatalog, activity: RepositoryActivity | undefined, url: string, pulls = 1, at?: number): void {
  if (!activity) return;
  const where = originOf(services, activity, namespaceOf(url));
  if (!where) return;
  // v1 requests may leave v1 tag records (a push, a pull through a v1 index): views read them.
  const origin: RepositoryOrigin = activity.api === 'v1' ? { ...where.origin, v1: true } : where.origin;
  if (activity.action === 'pull') catalog.recordPull(where.name, origin, activity.tag, pulls, at);
  else catalog.note(where.name, origin);
}

function recordPulls(services: Services, catalog: RepositoryCatalog, tallied: Map<string, PathPulls>): void {
  for (const [url, { pulls, lastAt }] of tallied) recordActivity(services, catalog, repositoryActivity('GET', url, 200), url, pulls, lastAt);
}

/** `?ns=` (the registry a containerd mirror request is for); a repeated one was refused with a 400 before. */
function namespaceOf(url: string): string | undefined {
  const query = url.indexOf('?');
  return query === -1 ? undefined : (new URLSearchParams(url.slice(query + 1)).get('ns') ?? undefined);
}

/** Every repository with tag records in the store, by client-facing name (for reconcile). */
async function* storedRepositories(services: Services): AsyncIterable<{ name: string; origin: RepositoryOrigin }> {
  for (const upstream of services.router.upstreams) {
    for await (const repository of repositoriesUnder(services.metadata, [metadataKeys.mirrorRoot, upstream.name], [])) {
      const name = upstream === services.router.defaultUpstream ? repository : `${upstream.name}/${repository}`;
      if (isValidRepositoryName(name) && !services.policy.isPrivate(name)) yield { name, origin: { kind: 'mirrored', upstream: upstream.name, repository } };
    }
  }
  for await (const repository of repositoriesUnder(services.metadata, [metadataKeys.localRoot], [])) {
    if (isValidRepositoryName(repository)) yield { name: repository, origin: { kind: 'private', repository } };
  }
  // v1 tag records: private v1 pushes, and the lists kept by the v1 pull-through per upstream.
  for await (const repository of repositoriesUnder(services.metadata, [metadataKeys.v1RepositoriesRoot], [])) {
    if (isValidRepositoryName(repository)) yield { name: repository, origin: { kind: 'private', repository, v1: true } };
  }
  for (const upstream of services.v1Router.upstreams) {
    // `_tags`: the whole tag list was asked for; `_tag/<tag>`: single tags (docker pull NAME:TAG).
    for await (const repository of repositoriesUnder(services.metadata, [metadataKeys.v1MirrorListRoot(upstream.name)], [], ['_tags', '_tag'])) {
      const name = upstream === services.v1Router.defaultUpstream ? repository : `${upstream.name}/${repository}`;
      if (isValidRepositoryName(name) && !services.policy.isPrivate(name)) yield { name, origin: { kind: 'mirrored', upstream: upstream.name, repository, v1: true } };
    }
  }
}

/** Repositories below `root`: directories holding one of `markers` (their tag records). */
async function* repositoriesUnder(metadata: MetadataStore, root: string[], path: string[], markers: readonly string[] = ['_tags']): AsyncIterable<string> {
  const entries = await metadata.list([...root, ...path].join('/'));
  if (path.length > 0 && entries.some((entry) => markers.includes(entry))) yield path.join('/');
  for (const entry of entries) {
    if (!entry.startsWith('_')) yield* repositoriesUnder(metadata, root, [...path, entry], markers);
  }
}
