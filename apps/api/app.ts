// The HTTP edge as one Hono value: ops routes, the Lambda-compatible Invoke API, the
// native routes and GraphQL. Tests call it with app.request() without opening a port.
import { Hono, type MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { consoleRoutes, rootRoute } from '../console/index.tsx';
import type { AppDeps } from './deps.ts';
import { auditRoutes } from './audit-routes.ts';
import { createApiAuth } from './auth/index.ts';
import { graphqlRoutes, type GraphQLDeps } from './graphql/index.ts';
import { lambdaControlRoutes } from './lambda-control-routes.ts';
import { lambdaEventSourceRoutes } from './lambda-event-source-routes.ts';
import { lambdaRoutes } from './lambda-routes.ts';
import { nativeRoutes } from './native-routes.ts';
import { opsRoutes } from './ops.ts';
import { queueRoutes } from './queue-routes.ts';
import { streamRoutes } from './stream-routes.ts';
import { kinesisRoutes } from './kinesis-routes.ts';
import { traceRequests } from './tracing.ts';
import { schedulerRoutes } from './scheduler-routes.ts';

export type { AppDeps } from './deps.ts';

/** Response headers a browser script may read: what the invoke routes answer with. */
const EXPOSED_HEADERS = [
  'X-Invocation-Id',
  'X-Function-Version',
  'X-Function-Error',
  'X-Amz-Function-Error',
  'X-Amz-Executed-Version',
  'X-Amz-Log-Result',
  'X-Amzn-RequestId',
  'X-Amzn-ErrorType',
  'Retry-After',
];

/**
 * CORS_ORIGINS: comma-separated origins (`https://app.example.com,http://localhost:5173`).
 * Exact origins only: no `*`, no paths; a malformed entry stops the server at start.
 */
export function parseCorsOrigins(spec: string | undefined): string[] {
  const entries = (spec ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return entries.map((entry) => {
    let url: URL | null = null;
    try {
      url = new URL(entry);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== entry) {
      throw new Error(`CORS_ORIGINS entry "${entry}" is not an origin like https://app.example.com (scheme://host[:port], no path, no *)`);
    }
    return url.origin;
  });
}

/**
 * hono/cors sets its headers on the response before the route runs; a response the route
 * builds itself (GraphQL's, from yoga) loses them when @hono/node-server's Response is
 * rebuilt afterwards. Mounted outside hono/cors, this puts them back last.
 */
function keepCorsHeaders(origins: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const origin = c.req.header('origin');
    if (origin === undefined || !origins.includes(origin) || c.req.method === 'OPTIONS') return;
    if (!c.res.headers.has('access-control-allow-origin')) c.header('Access-Control-Allow-Origin', origin);
    if (!c.res.headers.has('access-control-expose-headers')) c.header('Access-Control-Expose-Headers', EXPOSED_HEADERS.join(','));
  };
}

/** GraphQL's part of the API's dependencies: what its resolvers and its feed use, no more. */
function graphqlDepsOf(deps: AppDeps): GraphQLDeps {
  const { db, invoke, logger, functionsDir, databaseUrl, notifications, feed, graphqlIntrospection, auth, httpAllowlist, reads } = deps;
  return {
    db,
    invoke,
    logger,
    functionsDir,
    ...(databaseUrl !== undefined ? { databaseUrl } : {}),
    ...(notifications ? { notifications } : {}),
    ...(feed ? { feed } : {}),
    ...(graphqlIntrospection !== undefined ? { graphqlIntrospection } : {}),
    ...(auth ? { auth: { enabled: auth.enabled, secretKey: auth.secretKey ?? null } } : {}),
    ...(httpAllowlist ? { httpAllowlist } : {}),
    ...(reads ? { reads } : {}),
  };
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  // first: the request's span covers auth and CORS too (a no-op with tracing off)
  app.use('*', traceRequests());
  // before auth: a preflight carries no credentials. Without CORS_ORIGINS nothing is
  // mounted, and no response carries Access-Control-Allow-Origin (docs/security.md).
  if (deps.corsOrigins?.length) {
    app.use('*', keepCorsHeaders(deps.corsOrigins));
    app.use('*', cors({ origin: [...deps.corsOrigins], credentials: false, exposeHeaders: EXPOSED_HEADERS, maxAge: 600 }));
  }
  const auth = createApiAuth(deps.db, deps.auth, deps.logger);
  if (auth) app.use('*', auth.middleware);
  app.route('/', opsRoutes(deps.db, deps.registry));
  app.route('/', lambdaRoutes(deps.db, deps.invoke, deps.logger));
  // the control plane: Lambda's function management API (docs/control-plane.md)
  app.route('/', lambdaControlRoutes({ db: deps.db, logger: deps.logger, forget: (n) => deps.invoke.forgetFunction(n), ...(deps.codeUrlKey ? { codeUrlKey: deps.codeUrlKey } : {}) }));
  // event source mappings of our queues, streams and RabbitMQ brokers on Lambda's wire (docs/control-plane.md#event-source-mappings)
  app.route('/', lambdaEventSourceRoutes({ db: deps.db, logger: deps.logger, secretKey: deps.auth?.secretKey ?? null }));
  app.route('/', nativeRoutes(deps.db, deps.invoke, deps.logger));
  app.route('/', queueRoutes(deps.db, deps.logger));
  app.route('/', streamRoutes(deps.db, deps.logger));
  app.route('/', kinesisRoutes(deps.db, deps.logger));
  app.route('/', schedulerRoutes(deps.db, deps.logger));
  app.route('/', auditRoutes(deps.db, deps.logger, deps.treeHeadSigner, deps.reads));
  app.route('/graphql', graphqlRoutes(graphqlDepsOf(deps), { plugins: auth?.graphqlPlugins ?? [] }));
  // the web console reads and acts through /graphql with the signed-in key (apps/console)
  app.route('/', consoleRoutes({ db: deps.db, logger: deps.logger, ...(deps.auth ? { auth: deps.auth } : {}), ...(deps.traceUrlTemplate ? { traceUrlTemplate: deps.traceUrlTemplate } : {}), api: (req, env) => app.fetch(req, env) }));
  app.route('/', rootRoute());
  return app;
}
