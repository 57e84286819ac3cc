// Image references as people type them ("alpine:3.20", "ghcr.io/org/app@sha256:…") and
// platforms ("linux/arm64/v8"), normalised the way docker does.
import { isValidTag } from './reference.js';
import { tryParseDigest } from './digest.js';

export interface ImageRef {
  /** Registry host, when the reference names one ("docker.io", "127.0.0.1:5000"). */
  host: string | undefined;
  /** Repository path without the host ("library/alpine" stays "alpine" if typed so). */
  path: string;
  tag: string | undefined;
  digest: string | undefined;
  /** What was typed, for messages and bundle annotations. */
  text: string;
}

/** The first component is a host if it looks like one (docker's rule: a dot, a port, or localhost). */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

export function parseImageRef(text: string): ImageRef {
  let rest = text.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    if (!tryParseDigest(digest)) throw new Error(`invalid digest in image reference "${text}"`);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    if (!isValidTag(tag)) throw new Error(`invalid tag in image reference "${text}"`);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  let host: string | undefined;
  if (slash > 0 && looksLikeHost(rest.slice(0, slash))) {
    host = rest.slice(0, slash);
    rest = rest.slice(slash + 1);
  }
  if (!rest) throw new Error(`image reference "${text}" has no repository`);
  if (!tag && !digest) tag = 'latest';
  return { host, path: rest, tag, digest, text };
}

/** The repository name to ask a Longshore for: the host stays as a routing prefix. */
export function mirrorRepositoryName(ref: ImageRef): string {
  return ref.host ? `${ref.host}/${ref.path}` : ref.path;
}

/** The reference as a full name, e.g. for OCI layout annotations. */
export function formatImageRef(ref: ImageRef): string {
  const name = mirrorRepositoryName(ref);
  return ref.digest ? `${name}${ref.tag ? `:${ref.tag}` : ''}@${ref.digest}` : `${name}:${ref.tag ?? 'latest'}`;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function parsePlatform(text: string): Platform {
  const [os, architecture, variant, extra] = text.split('/');
  if (!os || !architecture || extra !== undefined) throw new Error(`invalid platform "${text}" (use os/arch[/variant], e.g. linux/arm64/v8)`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function platformMatches(wanted: Platform, actual: Partial<Platform> | undefined): boolean {
  if (!actual) return false;
  if (wanted.os !== actual.os || wanted.architecture !== actual.architecture) return false;
  return wanted.variant === undefined || wanted.variant === actual.variant;
}

export function formatPlatform(platform: Partial<Platform> | undefined): string {
  if (!platform) return 'unknown';
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}
