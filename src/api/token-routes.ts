// GET /token: the token service named in our Bearer challenges (Docker's token protocol:
// ?service=&scope=…, Basic credentials optional, answers {token, access_token, expires_in}).
import type { FastifyPluginCallback } from 'fastify';
import type { RegistryAccess } from '../auth/v2-access.js';
import { accessRequest } from './v2/routes.js';

export function tokenRoutes(access: RegistryAccess, publicUrl: string | undefined): FastifyPluginCallback {
  return (app, _options, done) => {
    app.get('/token', async (request, reply) => {
      const scope = (request.query as { scope?: string | string[] }).scope;
      const scopes = (Array.isArray(scope) ? scope : scope ? [scope] : []).flatMap((s) => s.split(' '));
      return reply.send(await access.issueToken(accessRequest(request, publicUrl), scopes));
    });
    done();
  };
}
