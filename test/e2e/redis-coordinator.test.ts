// The Redis coordinator on a real redis-server: the coordination contract (one replica and
// two sharing one Redis), then what happens when Redis goes away and comes back.
import { after, before } from 'node:test';
import { startRedis, type RedisHandle } from '../harness/redis.js';
import { coordinationContract } from '../support/coordination-contract.js';
import { redisDriver } from '../support/redis-coordination.js';

let redis: RedisHandle | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
});

const running = (): RedisHandle => {
  if (!redis) throw new Error('redis-server did not start');
  return redis;
};

coordinationContract(redisDriver(running));
