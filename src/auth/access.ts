// Kept only so that modules owned by parallel work (auth/htpasswd.ts) keep compiling; the
// access policy lives in auth/policy.ts. Import from there.
export type { UserVerifier } from './policy.js';
