// A circuit breaker per upstream: after `failures` transient failures in a row (refused,
// timed out, 5xx, 429) the upstream is not asked for `cooldownMs`; requests fail at once and
// the pull-through policy serves what it has (stale tags, cached blobs). After the cooldown
// one request is let through: success closes the circuit, failure opens it again.
// One breaker, wrapped around either kind of upstream (v2 registry, v1 index + registry) by
// a decorator, so neither client knows about it.
import type { V1SearchResult } from '../protocol/v1.js';
import { UpstreamError } from './errors.js';
import type { UpstreamBlob, UpstreamManifest, UpstreamManifestHead, UpstreamRegistry, V1UpstreamRegistry } from './upstream.js';
import type { V1UpstreamAuth, V1UpstreamImageJson } from './v1-client.js';

export interface BreakerSettings {
  failures: number;
  cooldownMs: number;
}

type State = { kind: 'closed'; failures: number } | { kind: 'open'; until: number } | { kind: 'half-open' };

export class CircuitBreaker {
  private state: State = { kind: 'closed', failures: 0 };

  constructor(
    private readonly name: string,
    private readonly settings: BreakerSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** "closed", "open" or "half-open", for logs and health output. */
  get circuit(): State['kind'] {
    if (this.state.kind === 'open' && this.now() >= this.state.until) return 'half-open';
    return this.state.kind;
  }

  async guard<T>(call: () => Promise<T>): Promise<T> {
    if (this.state.kind === 'open') {
      if (this.now() < this.state.until) {
        throw new UpstreamError(this.name, 'unavailable', `circuit open after repeated failures; retrying after ${new Date(this.state.until).toISOString()}`);
      }
      this.state = { kind: 'half-open' };
    } else if (this.state.kind === 'half-open') {
      throw new UpstreamError(this.name, 'unavailable', 'circuit half-open: a trial request is in flight');
    }
    try {
      const result = await call();
      this.state = { kind: 'closed', failures: 0 };
      return result;
    } catch (error) {
      // A denial or a malformed answer still means the upstream is up.
      if (error instanceof UpstreamError && error.isTransient) this.recordFailure();
      else this.state = { kind: 'closed', failures: 0 };
      throw error;
    }
  }

  private recordFailure(): void {
    const failures = this.state.kind === 'closed' ? this.state.failures + 1 : this.settings.failures;
    this.state = failures >= this.settings.failures ? { kind: 'open', until: this.now() + this.settings.cooldownMs } : { kind: 'closed', failures };
  }
}

export class CircuitBreakerUpstream implements UpstreamRegistry {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly inner: UpstreamRegistry,
    settings: BreakerSettings,
    now: () => number = Date.now,
  ) {
    this.breaker = new CircuitBreaker(inner.name, settings, now);
  }

  get name(): string {
    return this.inner.name;
  }
  get hosts(): readonly string[] {
    return this.inner.hosts;
  }
  get isDefault(): boolean {
    return this.inner.isDefault;
  }
  get libraryPrefix(): boolean {
    return this.inner.libraryPrefix;
  }
  get tagTtlMs(): number {
    return this.inner.tagTtlMs;
  }
  get circuit(): CircuitBreaker['circuit'] {
    return this.breaker.circuit;
  }

  fetchBlob(repository: string, digest: string, expectedSize?: number): Promise<UpstreamBlob | undefined> {
    // Only the start of a blob response is guarded; a body that breaks later is the fetch's
    // own failure and does not say the upstream is down.
    return this.breaker.guard(() => this.inner.fetchBlob(repository, digest, expectedSize));
  }
  headBlob(repository: string, digest: string): Promise<{ size: number | undefined } | undefined> {
    return this.breaker.guard(() => this.inner.headBlob(repository, digest));
  }
  getManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifest | undefined> {
    return this.breaker.guard(() => this.inner.getManifest(repository, reference, accept));
  }
  headManifest(repository: string, reference: string, accept: readonly string[]): Promise<UpstreamManifestHead | undefined> {
    return this.breaker.guard(() => this.inner.headManifest(repository, reference, accept));
  }
  listTags(repository: string): Promise<string[] | undefined> {
    return this.breaker.guard(() => this.inner.listTags(repository));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export class CircuitBreakerV1Upstream implements V1UpstreamRegistry {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly inner: V1UpstreamRegistry,
    settings: BreakerSettings,
    now: () => number = Date.now,
  ) {
    this.breaker = new CircuitBreaker(inner.name, settings, now);
  }

  get name(): string {
    return this.inner.name;
  }
  get circuit(): CircuitBreaker['circuit'] {
    return this.breaker.circuit;
  }

  repositoryImages(repository: string): Promise<string[] | undefined> {
    return this.breaker.guard(() => this.inner.repositoryImages(repository));
  }
  tags(repository: string): Promise<Record<string, string> | undefined> {
    return this.breaker.guard(() => this.inner.tags(repository));
  }
  tag(repository: string, tag: string): Promise<string | undefined> {
    return this.breaker.guard(() => this.inner.tag(repository, tag));
  }
  imageJson(id: string, auth: V1UpstreamAuth): Promise<V1UpstreamImageJson | undefined> {
    return this.breaker.guard(() => this.inner.imageJson(id, auth));
  }
  ancestry(id: string, auth: V1UpstreamAuth): Promise<string[] | undefined> {
    return this.breaker.guard(() => this.inner.ancestry(id, auth));
  }
  layer(id: string, auth: V1UpstreamAuth, expectedSize?: number): Promise<UpstreamBlob | undefined> {
    // As for v2 blobs: only the start of the response is guarded.
    return this.breaker.guard(() => this.inner.layer(id, auth, expectedSize));
  }
  search(query: string, n: number): Promise<V1SearchResult[]> {
    return this.breaker.guard(() => this.inner.search(query, n));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
