// What /v2/ answers with api.v2: false: the look of a server that has no v2 API at all, so
// that Docker 1.6-17.x daemons, which try v2 first, fall back to v1 for pulls and pushes.
//
// The daemon's rules (Docker 1.13: registry PingV2Registry, distribution/errors.go
// continueOnError, distribution/registry/client parseHTTPErrorResponse):
//   - GET /v2/ "confirms v2" only through `Docker-Distribution-API-Version: registry/2.0`;
//     once confirmed, the v1 endpoint is skipped whatever happens next. So: never that header.
//   - A later v2 error falls back to v1 when its body is not a registry error (not JSON, or
//     JSON without a non-empty `errors` list: an "unexpected HTTP response"), or when the
//     first error's code is UNAUTHORIZED, MANIFEST_UNKNOWN or NAME_UNKNOWN. Any other code
//     (UNSUPPORTED, say) ends the pull, and a `details` field turns into UNKNOWN, which ends
//     it too.
// Every method on every /v2 path therefore answers 404 with the v1 error body
// `{"error": "..."}`: v1 is the protocol this server speaks, and to a v2 client it is no
// registry error at all.
import type { FastifyPluginCallback } from 'fastify';
import { V1Error } from '../../protocol/v1.js';
import { handleV1Error } from '../v1/http.js';
import { keepBodiesRaw } from '../raw-bodies.js';

export function v2DisabledRoutes(): FastifyPluginCallback {
  return (app, _options, done) => {
    // Bodies are never read: no parsing can fail (a 415 would be a registry error).
    keepBodiesRaw(app);
    app.setErrorHandler(handleV1Error);
    for (const url of ['/v2', '/v2/', '/v2/*']) {
      app.all(url, (request) => {
        throw new V1Error(404, `the v2 API is turned off here (api.v2: false): ${request.method} ${request.url.split('?')[0] ?? ''}; use the v1 API`);
      });
    }
    done();
  };
}
