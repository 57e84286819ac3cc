// Proves the Redis harness (test/harness/redis.ts): the server answers on its port, and a
// stop/start gives an empty Redis (no persistence), which the "Redis lost" scenarios rely on.
// Talks Redis's inline command protocol over a plain socket so this test needs no client library.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startRedis } from '../harness/redis.js';
import type { RedisHandle } from '../harness/redis.js';

/** Sends one inline command and resolves with the first reply line (e.g. "+PONG", "$-1"). */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = '';
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n');
      if (end === -1) return;
      socket.end();
      resolve(received.slice(0, end));
    });
    socket.write(`${line}\r\n`);
  });
}

void describe('Redis harness', () => {
  let redis: RedisHandle | undefined;

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    await redis?.dispose();
  });

  it('answers on its loopback port and comes back empty after stop/start', async () => {
    assert.ok(redis);
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.equal(await command(redis.port, 'PING'), '+PONG');
    assert.equal(await command(redis.port, 'SET longshore-key kept'), '+OK');
    assert.equal(await command(redis.port, 'GET longshore-key'), '$4');

    await redis.stop();
    assert.equal(redis.process, undefined);
    await redis.start();
    assert.equal(await command(redis.port, 'GET longshore-key'), '$-1', 'nothing survives a restart');
  });
});
