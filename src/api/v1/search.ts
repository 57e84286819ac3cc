// GET /v1/search?q=&n=&page= (spec §5.6), what `docker search` asks: the private repositories
// this caller may pull (pushed with v1 or v2) and the mirrored repositories with cached
// content this caller may pull, merged with the upstream index's results when a v1 upstream
// is configured. Each name is decided by the one policy as a `list` (auth/policy.ts), as the
// v2 catalog's are.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { V1Access, V1Identity } from '../../auth/v1-access.js';
import { V1Error, type V1SearchResult } from '../../protocol/v1.js';
import { sendJson } from './http.js';

export type SearchResult = V1SearchResult;

/** Upstream index search; failures are the source's to swallow (local results still count). */
export interface SearchSource {
  search(query: string, identity: V1Identity): Promise<SearchResult[]>;
}

/** Where the names come from (all of them; the caller's access is checked here). */
export interface SearchRepositories {
  /** Every private repository name (v1 and v2). */
  privateRepositories(): Promise<string[]>;
  /** Mirrored repositories with cached content, by the names clients pull them by. */
  cachedRepositories(): Promise<string[]>;
}

const DEFAULT_PAGE_SIZE = 25;
const MAX_PAGE_SIZE = 100;

export class V1Search {
  constructor(
    private readonly access: V1Access,
    private readonly repositories: SearchRepositories,
    private readonly upstream: SearchSource | undefined,
  ) {}

  async search(request: FastifyRequest, reply: FastifyReply, identity: V1Identity): Promise<FastifyReply> {
    const query = request.query as { q?: string; n?: string; page?: string };
    const term = (query.q ?? '').trim();
    const pageSize = positiveInteger(query.n, 'n', DEFAULT_PAGE_SIZE);
    if (pageSize > MAX_PAGE_SIZE) throw new V1Error(400, `n must be at most ${MAX_PAGE_SIZE}`);
    const page = positiveInteger(query.page, 'page', 1);

    const byName = new Map<string, SearchResult>();
    const needle = term.toLowerCase();
    const [privateNames, cachedNames] = await Promise.all([this.repositories.privateRepositories(), this.repositories.cachedRepositories()]);
    const matching = [...privateNames, ...cachedNames].filter((name) => name.includes(needle));
    for (const name of this.access.listable(identity, matching)) byName.set(name, localResult(name));
    // Upstream entries replace local ones of the same name, as the Python mirror merged them.
    for (const result of (await this.upstream?.search(term, identity)) ?? []) byName.set(result.name, result);
    const all = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return sendJson(reply, 200, {
      query: term,
      num_results: all.length,
      num_pages: Math.max(1, Math.ceil(all.length / pageSize)),
      page,
      page_size: pageSize,
      results: all.slice((page - 1) * pageSize, page * pageSize),
    });
  }
}

function localResult(name: string): SearchResult {
  return { name, description: '', star_count: 0, is_official: false, is_automated: false, is_trusted: false };
}

function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new V1Error(400, `${name} must be a positive integer, got "${value}"`);
  return number;
}
