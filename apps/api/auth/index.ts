// Authentication and scopes for the API: API keys sent as bearer tokens or as AWS SigV4
// signatures (so the AWS SDK and CLI work with a key pair). See docs/security.md.
import type { Plugin } from 'graphql-yoga';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { Db } from '../../../db/schema.ts';
import { Authenticator, type AuthOptions } from './authenticator.ts';
import { useApiKeyAuth } from './graphql.ts';
import { authMiddleware } from './middleware.ts';

export { AuthenticationError, Authenticator, type AuthOptions, type Principal } from './authenticator.ts';
export { authorizeOperation, rootFields, useApiKeyAuth } from './graphql.ts';
export { MAX_SIGNED_BODY_BYTES, authMiddleware, principalOf } from './middleware.ts';
export { GRAPHQL_FIELD_SCOPES, ROUTE_RULES, decideAccess, graphqlFieldScope, isMiddleware, routeRule, ruleOfRoute } from './routes.ts';

export interface ApiAuth {
  /** mount before every route: app.use('*', auth.middleware) */
  middleware: MiddlewareHandler;
  /** add to the yoga plugins */
  graphqlPlugins: Plugin[];
}

/** null when auth is off: nothing to mount. */
export function createApiAuth(db: Db, options: AuthOptions | undefined, logger?: Logger): ApiAuth | null {
  if (!options?.enabled) return null;
  const authenticator = new Authenticator(db, options, logger);
  return { middleware: authMiddleware(authenticator, logger), graphqlPlugins: [useApiKeyAuth(authenticator)] };
}
