// Work that one replica of the cluster does at a time (an eviction pass, rebuilding a shared
// index from the storage), under a lease that is renewed while it runs: a long run keeps the
// lease, and a replica that dies mid-run lets it lapse within one ttl.
import type { Leases } from './ports.js';

/**
 * Runs `work` holding the lease on `key`, renewed every third of `ttlMs`, and releases it after
 * (also when `work` throws, which it then rethrows). Resolves false without running `work`
 * when someone else holds the lease.
 */
export async function whileHoldingLease(leases: Leases, key: string, ttlMs: number, work: () => Promise<void>): Promise<boolean> {
  const lease = await leases.tryAcquire(key, ttlMs);
  if (!lease) return false;
  // A failed renewal is not fatal here: at worst another replica starts the same idempotent work.
  const renewal = setInterval(() => void lease.renew().catch(() => undefined), ttlMs / 3);
  try {
    await work();
  } finally {
    clearInterval(renewal);
    await lease.release().catch(() => undefined);
  }
  return true;
}
