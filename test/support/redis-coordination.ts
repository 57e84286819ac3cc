// The Redis coordination driver for the contract suite: one real redis-server per test file,
// one key prefix per test (a cluster), and every coordinator, index and connection closed after
// the test that opened it.
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import type { Coordinator } from '../../src/coordination/ports.js';
import { openRedisCoordinator, type RedisCoordinator, type RedisCoordinatorOptions } from '../../src/coordination/redis.js';
import { RedisCacheIndex } from '../../src/coordination/redis-cache-index.js';
import { RedisPrivateContent } from '../../src/coordination/redis-private-content.js';
import type { RedisHandle } from '../harness/redis.js';
import { onCleanup } from './cleanup.js';
import type { CoordinationCluster, CoordinationDriver } from './coordination-contract.js';

export const silentLog = pino({ level: 'silent' });

function asRedis(coordinator: Coordinator): RedisCoordinator {
  return coordinator as RedisCoordinator;
}

/** A cluster on `redis` under a fresh key prefix (or the given one). */
export function redisCluster(t: TestContext, redis: () => RedisHandle, options: Partial<RedisCoordinatorOptions> = {}): CoordinationCluster {
  const keyPrefix = options.keyPrefix ?? `test-${randomUUID()}:`;
  return {
    coordinator: async (replica = {}) => {
      const coordinator = await openRedisCoordinator({ url: redis().url, log: silentLog, connectTimeoutMs: 2000, ...options, ...replica, keyPrefix });
      onCleanup(t, () => coordinator.close());
      return coordinator;
    },
    privateContent: async (coordinator, metadata) => {
      const marks = new RedisPrivateContent(asRedis(coordinator).connection, metadata, coordinator.leases, silentLog);
      onCleanup(t, () => marks.close());
      await marks.load();
      return marks;
    },
    cacheIndex: async (coordinator, setup) => {
      const index = new RedisCacheIndex({ ...setup, connection: asRedis(coordinator).connection, leases: coordinator.leases, events: coordinator.events, log: silentLog });
      await index.rebuild();
      return index;
    },
  };
}

export function redisDriver(redis: () => RedisHandle): CoordinationDriver {
  return { name: 'redis', mode: 'redis', shared: true, sharedIndexes: true, cluster: (t) => Promise.resolve(redisCluster(t, redis)) };
}
