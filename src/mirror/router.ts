// Which upstream a repository name belongs to, and its name there.
//   ?ns=ghcr.io           containerd names the registry on every request
//   /v2/ghcr.io/org/app   a name prefix equal to an upstream's host or name
//   /v2/alpine            the default upstream; Docker Hub-style ones add "library/"
import type { UpstreamRegistry } from '../upstream/upstream.js';

/** What routing needs to know of an upstream (v2 clients, v1 upstreams). */
export interface RoutableUpstream {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly isDefault: boolean;
  readonly libraryPrefix: boolean;
}

export interface MirrorTarget<U extends RoutableUpstream = UpstreamRegistry> {
  upstream: U;
  /** The repository name as the upstream knows it. */
  repository: string;
}

export class UpstreamRouter<U extends RoutableUpstream = UpstreamRegistry> {
  private readonly byKey = new Map<string, U>();
  private readonly fallback: U | undefined;

  constructor(readonly upstreams: readonly U[]) {
    for (const upstream of upstreams) {
      this.byKey.set(upstream.name, upstream);
      for (const host of upstream.hosts) this.byKey.set(host, upstream);
    }
    // With a single upstream there is nothing to choose between, default flag or not.
    this.fallback = upstreams.find((u) => u.isDefault) ?? (upstreams.length === 1 ? upstreams[0] : undefined);
  }

  /** undefined: no upstream serves this name (the caller answers NAME_UNKNOWN). */
  resolve(name: string, namespace: string | undefined): MirrorTarget<U> | undefined {
    if (namespace !== undefined) {
      const upstream = this.byKey.get(namespace.toLowerCase());
      return upstream ? this.target(upstream, name) : undefined;
    }
    const slash = name.indexOf('/');
    if (slash > 0) {
      const upstream = this.byKey.get(name.slice(0, slash));
      if (upstream) return this.target(upstream, name.slice(slash + 1));
    }
    return this.fallback ? this.target(this.fallback, name) : undefined;
  }

  /** By upstream name only (records remember which upstream they came from). */
  byName(name: string): U | undefined {
    return this.upstreams.find((u) => u.name === name);
  }

  get defaultUpstream(): U | undefined {
    return this.fallback;
  }

  private target(upstream: U, name: string): MirrorTarget<U> {
    const repository = upstream.libraryPrefix && !name.includes('/') ? `library/${name}` : name;
    return { upstream, repository };
  }
}
