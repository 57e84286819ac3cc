// The leader side of a cluster-wide fetch: another replica that was refused the fetch lease
// asks here for the bytes of the download in progress, and reads the scratch file as it grows,
// exactly like a local follower (the final byte waits for the digest check). Only a fetch
// running here is served: never the store, never the upstream, so this route cannot be used
// to read anything or to make this replica fetch. Peer requests carry the cluster token.
import type { FastifyPluginCallback } from 'fastify';
import type { InflightBlobs } from '../mirror/inflight.js';
import { RegistryError } from '../protocol/errors.js';
import { parseRange } from '../protocol/range.js';
import { PEER_AUTH_SCHEME, PEER_FETCH_ROUTE, type PeerToken } from './peer-protocol.js';

export function peerRoutes(inflight: InflightBlobs, token: PeerToken): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get(PEER_FETCH_ROUTE, async (request, reply) => {
      if (!token.accepts(request.headers.authorization)) {
        throw new RegistryError('UNAUTHORIZED', 'peer requests between replicas need the cluster token (derived from auth.secret)', {
          headers: { 'www-authenticate': PEER_AUTH_SCHEME },
        });
      }
      const tail = (request.params as { '*'?: string })['*'] ?? '';
      let key: string;
      try {
        key = decodeURIComponent(tail);
      } catch {
        throw new RegistryError('UNSUPPORTED', `malformed fetch key "${tail}"`, { status: 400 });
      }
      const blob = await inflight.followRunning(key);
      if (!blob) throw new RegistryError('BLOB_UNKNOWN', `no fetch of ${key} is in progress on this replica`, { detail: { key, reason: 'not in flight' } });
      reply.header('content-type', 'application/octet-stream');
      const range = blob.size === undefined ? ({ kind: 'none' } as const) : parseRange(request.headers.range, blob.size);
      if (range.kind === 'unsatisfiable') {
        await blob.discard();
        throw new RegistryError('RANGE_INVALID', `range ${request.headers.range} not satisfiable`, { headers: { 'content-range': `bytes */${blob.size}` } });
      }
      if (range.kind === 'range') {
        reply.code(206).headers({ 'content-range': `bytes ${range.start}-${range.end}/${blob.size}`, 'content-length': String(range.end - range.start + 1) });
        return reply.send(blob.open({ start: range.start, end: range.end }));
      }
      if (blob.size !== undefined) reply.header('content-length', String(blob.size));
      return reply.send(blob.open());
    });
    done();
  };
}
