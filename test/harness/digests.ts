// sha256 digests in the registry's "sha256:<hex>" form.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export async function sha256DigestOfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** "sha256:abc..." -> "abc..." (file names in OCI layouts and skopeo dir: output). */
export function digestHex(digest: string): string {
  const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (match?.[1] === undefined) throw new Error(`not a sha256 digest: ${digest}`);
  return match[1];
}
