// Compact JWS (HS256) tokens: the registry token format Docker and OCI clients expect from
// a token service. Verification is constant-time and checks expiry.
import { createHmac, timingSafeEqual } from 'node:crypto';

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

export interface JwtClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  [claim: string]: unknown;
}

export class JwtCodec {
  constructor(
    private readonly secret: Buffer,
    private readonly now: () => number = Date.now,
  ) {}

  private signature(input: string): string {
    return createHmac('sha256', this.secret).update(input).digest('base64url');
  }

  sign(claims: Omit<JwtClaims, 'iat' | 'nbf' | 'exp'>, ttlMs: number): { token: string; expiresIn: number; issuedAt: string } {
    const now = Math.floor(this.now() / 1000);
    const expiresIn = Math.max(1, Math.floor(ttlMs / 1000));
    const payload = Buffer.from(JSON.stringify({ ...claims, iat: now, nbf: now, exp: now + expiresIn })).toString('base64url');
    const input = `${HEADER}.${payload}`;
    return { token: `${input}.${this.signature(input)}`, expiresIn, issuedAt: new Date(now * 1000).toISOString() };
  }

  /** The claims of a token this codec signed and that has not expired; undefined otherwise. */
  verify(token: string): JwtClaims | undefined {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== HEADER) return undefined;
    const expected = Buffer.from(this.signature(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2] ?? '');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    let claims: JwtClaims;
    try {
      claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as JwtClaims;
    } catch {
      return undefined;
    }
    const now = Math.floor(this.now() / 1000);
    if (typeof claims.exp !== 'number' || claims.exp <= now || (typeof claims.nbf === 'number' && claims.nbf > now + 5)) return undefined;
    return claims;
  }
}
