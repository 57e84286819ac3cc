// A circuit breaker per upstream: after `failures` transient failures in a row (refused,
// timed out, 5xx, 429) the upstream is not asked for `cooldownMs`; requests fail at once and
// the pull-through policy serves what it has (stale tags, cached blobs). After the cooldown
// one request is let through: success closes the circuit, failure opens it again.
// One breaker, wrapped around either kind of upstream (v2 registry, v1 index + registry) by
// a decorator, so neither client knows about it.
//
// With several replicas (cluster.redis) the circuit is shared: the replica that opens it tells
// the others, which skip the upstream too until the retry time (a replica starting meanwhile
// reads it); after the cooldown one replica of the cluster, holding a lease, makes the trial,
// and its outcome closes or reopens the circuit everywhere. Without Redis each replica's
// breaker works on its own, as a single replica's does.
import type { Lease, Leases, SharedCircuits } from '../coordination/ports.js';
import type { V1SearchResult } from '../protocol/v1.js';
import { UpstreamError } from './errors.js';
import type { UpstreamBlob, UpstreamManifest, UpstreamManifestHead, UpstreamRegistry, V1UpstreamRegistry } from './upstream.js';
import type { V1UpstreamAuth, V1UpstreamImageJson } from './v1-client.js';

export interface BreakerSettings {
  failures: number;
  cooldownMs: number;
}

/** How a breaker shares its circuit with the other replicas' breakers of the same upstream. */
export interface CircuitSharing {
  circuits: SharedCircuits;
  /** The half-open trial is one replica's, under a lease. */
  leases: Leases;
  /** The circuit's name among the replicas: the same upstream's breakers share it. */
  circuit: string;
}

type State = { kind: 'closed'; failures: number } | { kind: 'open'; until: number } | { kind: 'half-open' };

/** While another replica makes the trial, this one looks again this often (if it died, its lease lapses). */
const TRIAL_ELSEWHERE_RECHECK_MS = 1000;

export class CircuitBreaker {
  private state: State = { kind: 'closed', failures: 0 };
  private readonly unsubscribe: () => void;

  constructor(
    private readonly name: string,
    private readonly settings: BreakerSettings,
    private readonly now: () => number = Date.now,
    private readonly sharing?: CircuitSharing,
  ) {
    this.unsubscribe = sharing?.circuits.subscribe((change) => {
      if (change.circuit !== sharing.circuit) return;
      if (change.openUntil === undefined) this.state = { kind: 'closed', failures: 0 };
      // A trial of ours in flight decides for itself.
      else if (this.state.kind !== 'half-open') this.state = { kind: 'open', until: change.openUntil };
    }) ?? (() => undefined);
    // A replica starting while the circuit is open elsewhere joins it.
    void sharing?.circuits.openUntil(sharing.circuit).then((until) => {
      if (until !== undefined && until > this.now() && this.state.kind === 'closed') this.state = { kind: 'open', until };
    });
  }

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
      this.state = { kind: 'half-open' }; // before the await: one trial per replica
      const trial = await this.takeTrial();
      if (!trial) {
        this.state = { kind: 'open', until: this.now() + Math.min(TRIAL_ELSEWHERE_RECHECK_MS, this.settings.cooldownMs) };
        throw new UpstreamError(this.name, 'unavailable', 'circuit half-open: another replica is making the trial request');
      }
      try {
        return await this.attempt(call);
      } finally {
        void trial.release().catch(() => undefined);
      }
    } else if (this.state.kind === 'half-open') {
      throw new UpstreamError(this.name, 'unavailable', 'circuit half-open: a trial request is in flight');
    }
    return this.attempt(call);
  }

  /** Stops hearing the other replicas. */
  close(): void {
    this.unsubscribe();
  }

  private async attempt<T>(call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.reset();
      return result;
    } catch (error) {
      // A denial or a malformed answer still means the upstream is up.
      if (error instanceof UpstreamError && error.isTransient) this.recordFailure();
      else this.reset();
      throw error;
    }
  }

  /** The cluster's one trial (a lease on the circuit); always granted without sharing. */
  private async takeTrial(): Promise<Pick<Lease, 'release'> | undefined> {
    if (!this.sharing) return { release: () => Promise.resolve() };
    // Lapses after a cooldown if its holder died mid-trial: another replica then tries.
    return this.sharing.leases.tryAcquire(`circuit-trial:${this.sharing.circuit}`, Math.max(this.settings.cooldownMs, TRIAL_ELSEWHERE_RECHECK_MS));
  }

  private reset(): void {
    const wasOpen = this.state.kind !== 'closed';
    this.state = { kind: 'closed', failures: 0 };
    if (wasOpen) this.sharing?.circuits.publish({ circuit: this.sharing.circuit, openUntil: undefined });
  }

  private recordFailure(): void {
    const failures = this.state.kind === 'closed' ? this.state.failures + 1 : this.settings.failures;
    if (failures < this.settings.failures) {
      this.state = { kind: 'closed', failures };
      return;
    }
    const until = this.now() + this.settings.cooldownMs;
    this.state = { kind: 'open', until };
    this.sharing?.circuits.publish({ circuit: this.sharing.circuit, openUntil: until });
  }
}

export class CircuitBreakerUpstream implements UpstreamRegistry {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly inner: UpstreamRegistry,
    settings: BreakerSettings,
    now: () => number = Date.now,
    sharing?: CircuitSharing,
  ) {
    this.breaker = new CircuitBreaker(inner.name, settings, now, sharing);
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
    this.breaker.close();
    return this.inner.close();
  }
}

export class CircuitBreakerV1Upstream implements V1UpstreamRegistry {
  private readonly breaker: CircuitBreaker;

  constructor(
    private readonly inner: V1UpstreamRegistry,
    settings: BreakerSettings,
    now: () => number = Date.now,
    sharing?: CircuitSharing,
  ) {
    this.breaker = new CircuitBreaker(inner.name, settings, now, sharing);
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
    this.breaker.close();
    return this.inner.close();
  }
}
