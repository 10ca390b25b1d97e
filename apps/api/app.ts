// The HTTP edge as one Hono value: ops routes, the Lambda-compatible Invoke API, the
// native routes and GraphQL. Tests call it with app.request() without opening a port.
import { Hono } from 'hono';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Db } from '../../db/schema.ts';
import type { UrlAllowlist } from '../runtimes/allowlist.ts';
import { createApiAuth, type AuthOptions } from './auth/index.ts';
import type { InvokeService } from './invoke.ts';
import { graphqlRoutes } from './graphql/index.ts';
import { lambdaRoutes } from './lambda-routes.ts';
import { nativeRoutes } from './native-routes.ts';
import { opsRoutes } from './ops.ts';
import { queueRoutes } from './queue-routes.ts';

export interface AppDeps {
  db: Db;
  invoke: InvokeService;
  logger: Logger;
  registry: Registry;
  functionsDir: string;
  /** GraphQL subscriptions LISTEN on their own connection here; without it they poll */
  databaseUrl?: string;
  /** GRAPHQL_INTROSPECTION=off turns schema introspection off (default on) */
  graphqlIntrospection?: boolean;
  /** API keys and scopes (docs/security.md); off when absent, as in tests that build the app directly */
  auth?: AuthOptions;
  /** HTTP_ALLOWLIST, checked when GraphQL registers a function's url or URL destinations */
  httpAllowlist?: UrlAllowlist;
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const auth = createApiAuth(deps.db, deps.auth, deps.logger);
  if (auth) app.use('*', auth.middleware);
  app.route('/', opsRoutes(deps.db, deps.registry));
  app.route('/', lambdaRoutes(deps.invoke, deps.logger));
  app.route('/', nativeRoutes(deps.invoke, deps.logger));
  app.route('/', queueRoutes(deps.db, deps.logger));
  app.route('/graphql', graphqlRoutes(deps, { plugins: auth?.graphqlPlugins ?? [] }));
  return app;
}
