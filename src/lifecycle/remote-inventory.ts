// What a running Longshore holds, for `longshore ls --url`: the same entries as Inventory reads
// from a data directory, asked of the server's web page API (/ui/api/), which already knows
// repositories, tags, sizes and last pulls, and shows each user what they may pull. With
// credentials, a token from the server's /token (as `docker login` gets one) makes private
// repositories visible.
import { request, type Dispatcher } from 'undici';
import type { Credentials } from '../cli/credentials.js';
import type { Page, RepositorySummary, RepositoryView, TagView } from '../ui/query-service.js';
import type { UpstreamStatus } from '../ui/upstream-status.js';
import { readBounded } from '../util/read-bounded.js';
import { matchesRepositoryFilter, type RepositoryEntry, type TagEntry } from './inventory.js';

/** The API's page size limit (MAX_PER_PAGE). */
const PER_PAGE = 200;
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export class RemoteInventoryError extends Error {
  constructor(
    readonly code: 'UNREACHABLE' | 'CREDENTIALS_REFUSED' | 'BAD_RESPONSE',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RemoteInventoryError';
  }
}

export class RemoteInventory {
  private token: string | undefined;

  private constructor(private readonly base: URL) {}

  /** Connects (and logs in, with credentials): a refused login fails here. */
  static async open(url: string, credentials: Credentials | undefined): Promise<RemoteInventory> {
    const inventory = new RemoteInventory(new URL(url.endsWith('/') ? url : `${url}/`));
    if (credentials) {
      const basic = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
      const answer = await inventory.get<{ token?: string }>('token?service=longshore', { authorization: `Basic ${basic}` }, (status, message) =>
        status === 401 || status === 403 ? new RemoteInventoryError('CREDENTIALS_REFUSED', `${url} refused the credentials of "${credentials.username}": ${message}`) : undefined,
      );
      if (!answer.token) throw new RemoteInventoryError('BAD_RESPONSE', `${url}/token answered without a token`);
      inventory.token = answer.token;
    }
    return inventory;
  }

  /** Every repository the credentials may see (or only `only`), ordered as Inventory orders them. */
  async repositories(only?: string): Promise<RepositoryEntry[]> {
    const defaultUpstream = await this.defaultUpstream();
    const found: RepositoryEntry[] = [];
    for (const summary of await this.pages<RepositorySummary>('ui/api/repositories')) {
      const entry = toEntry(summary, defaultUpstream);
      if (only !== undefined && summary.name !== only && !matchesRepositoryFilter(entry, only)) continue;
      const tags = (await this.pages<TagView>('ui/api/repository', { name: summary.name }, (view: RepositoryView) => view.tags))
        // As Inventory: a tag whose manifest is gone is not cached any more, and v1 tags (an
        // image id, no manifest digest) are not images ls, export or warm can name.
        .filter((tag) => tag.cached && tag.api !== 'v1')
        .map(toTagEntry);
      if (entry.kind === 'private' || tags.length > 0) found.push({ ...entry, tags });
    }
    return found.sort(
      (a, b) => (a.kind === b.kind ? 0 : a.kind === 'mirrored' ? -1 : 1) || (a.upstream ?? '').localeCompare(b.upstream ?? '') || a.name.localeCompare(b.name),
    );
  }

  /** The mirror's default upstream: its repositories' names carry no upstream prefix. */
  private async defaultUpstream(): Promise<string | undefined> {
    try {
      const { upstreams } = await this.get<{ upstreams: UpstreamStatus[] }>('ui/api/upstreams');
      return upstreams.find((u) => u.isDefault)?.name;
    } catch (error) {
      // Only for those who may pull mirrored content; without it, no mirrored entry is listed either.
      if (error instanceof RemoteInventoryError && error.code === 'CREDENTIALS_REFUSED') return undefined;
      throw error;
    }
  }

  private async pages<T>(path: string, query: Record<string, string> = {}, pageOf: (body: never) => Page<T> = (body) => body): Promise<T[]> {
    const items: T[] = [];
    for (let page = 1; ; page += 1) {
      const search = new URLSearchParams({ ...query, page: String(page), perPage: String(PER_PAGE) });
      const body = pageOf(await this.get<never>(`${path}?${search.toString()}`));
      items.push(...body.items);
      if (body.items.length === 0 || page * body.perPage >= body.total) return items;
    }
  }

  private async get<T>(path: string, headers: Record<string, string> = {}, refusal?: (status: number, message: string) => Error | undefined): Promise<T> {
    const url = new URL(path, this.base);
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...headers } });
    } catch (error) {
      const reason = (error as { code?: string }).code ?? (error as Error).message;
      throw new RemoteInventoryError('UNREACHABLE', `cannot reach Longshore at ${this.base.origin} (${reason}); is it running, and is that its listen or publicUrl?`, { cause: error });
    }
    const text = (
      await readBounded(response.body, MAX_RESPONSE_BYTES, () => new RemoteInventoryError('BAD_RESPONSE', `${url.pathname}: a response larger than ${MAX_RESPONSE_BYTES} bytes`))
    ).toString('utf8');
    if (response.statusCode === 200) {
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new RemoteInventoryError('BAD_RESPONSE', `${url.origin}${url.pathname} did not answer JSON: is ${this.base.origin} a Longshore?`);
      }
    }
    const message = errorMessage(text) ?? `HTTP ${response.statusCode}`;
    const refused = refusal?.(response.statusCode, message);
    if (refused) throw refused;
    if (response.statusCode === 401) throw new RemoteInventoryError('CREDENTIALS_REFUSED', `${this.base.origin} wants credentials: ${message} (give --creds USER:PASS or docker login)`);
    if (response.statusCode === 404 && url.pathname.startsWith('/ui/')) {
      throw new RemoteInventoryError('BAD_RESPONSE', `${this.base.origin} does not serve the web page's API (ui.enabled: false?); use ls --config on its data directory`);
    }
    throw new RemoteInventoryError('BAD_RESPONSE', `${url.origin}${url.pathname}: ${message}`);
  }
}

function toEntry(summary: RepositorySummary, defaultUpstream: string | undefined): Omit<RepositoryEntry, 'tags'> {
  if (summary.kind === 'private' || summary.upstream === undefined) return { kind: 'private', name: summary.name };
  // The web page names a mirrored repository as clients pull it: "<upstream>/<repository>",
  // without the prefix for the default upstream.
  const prefix = `${summary.upstream}/`;
  const name = summary.upstream !== defaultUpstream && summary.name.startsWith(prefix) ? summary.name.slice(prefix.length) : summary.name;
  return { kind: 'mirrored', upstream: summary.upstream, name };
}

function toTagEntry(tag: TagView): TagEntry {
  return { tag: tag.tag, digest: tag.digest, bytes: tag.size ?? 0, lastPull: tag.lastPulledAt === undefined ? undefined : new Date(tag.lastPulledAt).toISOString() };
}

/** The message of an OCI error envelope. */
function errorMessage(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { errors?: Array<{ message?: string }> };
    return body.errors?.[0]?.message;
  } catch {
    return undefined;
  }
}
