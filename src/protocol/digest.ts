// Content digests ("sha256:<64 hex>"), the keys of the whole store.
import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from './errors.js';

const DIGEST_ENCODED_LENGTH = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ENCODED_LENGTH;

export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** "algorithm:hex", the canonical string form. */
  readonly text: string;
}

const DIGEST_GRAMMAR = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Parses a digest or returns undefined; only algorithms we can verify are accepted. */
export function tryParseDigest(text: string): Digest | undefined {
  const match = DIGEST_GRAMMAR.exec(text);
  if (!match) return undefined;
  const algorithm = match[1] as DigestAlgorithm;
  const hex = match[2] as string;
  const length = DIGEST_ENCODED_LENGTH[algorithm] as number | undefined;
  if (length === undefined || hex.length !== length || !/^[0-9a-f]+$/.test(hex)) return undefined;
  return { algorithm, hex, text };
}

export function parseDigest(text: string): Digest {
  const digest = tryParseDigest(text);
  if (!digest) throw new RegistryError('DIGEST_INVALID', `invalid digest "${text}"`, { detail: { digest: text } });
  return digest;
}

export function looksLikeDigest(reference: string): boolean {
  return reference.includes(':');
}

export function createDigester(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
