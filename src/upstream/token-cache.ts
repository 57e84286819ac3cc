// Bearer tokens per scope, kept until shortly before they expire. Concurrent requests that
// need the same token share one token-server round trip. Scopes are repository names that
// any client can make up, so at most `maxTokens` are kept (least recently used go first).
import { LRUCache } from 'lru-cache';

interface CachedToken {
  token: string;
  expiresAt: number;
}

// Registries that omit expires_in mean 60 s (distribution token spec).
const DEFAULT_TOKEN_LIFETIME_S = 60;
// Renew a little early so a token does not expire between our check and the upstream's.
const EXPIRY_MARGIN = 0.9;

export const MAX_CACHED_TOKENS = 10_000;

export class TokenCache {
  private readonly tokens: LRUCache<string, CachedToken>;
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    private readonly now: () => number = Date.now,
    maxTokens = MAX_CACHED_TOKENS,
  ) {
    this.tokens = new LRUCache({ max: maxTokens });
  }

  get size(): number {
    return this.tokens.size;
  }

  get(key: string): string | undefined {
    const cached = this.tokens.get(key);
    if (!cached) return undefined;
    if (cached.expiresAt <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return cached.token;
  }

  async getOrFetch(key: string, fetchToken: () => Promise<{ token: string; expiresInSeconds?: number }>): Promise<string> {
    const cached = this.get(key);
    if (cached) return cached;
    let pending = this.pending.get(key);
    if (!pending) {
      pending = fetchToken()
        .then(({ token, expiresInSeconds }) => {
          const lifetime = (expiresInSeconds && expiresInSeconds > 0 ? expiresInSeconds : DEFAULT_TOKEN_LIFETIME_S) * 1000;
          this.tokens.set(key, { token, expiresAt: this.now() + lifetime * EXPIRY_MARGIN });
          return token;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  invalidate(key: string): void {
    this.tokens.delete(key);
  }
}
