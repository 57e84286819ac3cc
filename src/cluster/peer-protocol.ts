// How replicas talk to each other: where a follower asks the leader of a fetch for its bytes,
// and the credential replicas present to each other: an HMAC of a fixed purpose label under
// auth.secret (the same on every replica), so it is known to every replica and to nobody
// without the secret, and is useless as a client token (a different key and format).
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const PURPOSE = 'longshore peer requests v1';
/** Not under /v2 or /v1: no client reaches it by a registry path, and it is not a pull. */
export const PEER_PATH_PREFIX = '/_longshore/peer/';
const PEER_FETCH_PREFIX = `${PEER_PATH_PREFIX}fetches/`;
/** The route the leader serves its fetches in progress on (the key, url-encoded, is its tail). */
export const PEER_FETCH_ROUTE = `${PEER_FETCH_PREFIX}*`;

/** Where the leader at `peerUrl` serves the fetch of `key` (a digest or a v1 layer key). */
export function peerFetchUrl(peerUrl: string, key: string): string {
  return `${peerUrl.replace(/\/+$/, '')}${PEER_FETCH_PREFIX}${encodeURIComponent(key)}`;
}

/** The Authorization scheme of peer requests. */
export const PEER_AUTH_SCHEME = 'LongshorePeer';

export class PeerToken {
  private readonly token: string;
  private readonly tokenHash: Buffer;

  constructor(secret: Buffer) {
    this.token = createHmac('sha256', secret).update(PURPOSE).digest('base64url');
    this.tokenHash = sha256(this.token);
  }

  /** The Authorization header value a peer request carries. */
  get authorization(): string {
    return `${PEER_AUTH_SCHEME} ${this.token}`;
  }

  /** Whether an Authorization header carries the token; compared in constant time. */
  accepts(authorization: string | undefined): boolean {
    if (authorization === undefined) return false;
    const [scheme = '', value = ''] = authorization.trim().split(/\s+/, 2);
    if (scheme !== PEER_AUTH_SCHEME) return false;
    // Hashed first: timingSafeEqual needs equal lengths, and the length must not leak either.
    return timingSafeEqual(sha256(value), this.tokenHash);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
