// GraphQL at /graphql (ledger.md §4): graphql-yoga inside Hono, GraphiQL served offline,
// subscriptions over SSE from the one ledger feed of this process, limits from graphql-armor.
import { readFileSync } from 'node:fs';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import type { GraphQLError, ValidationContext } from 'graphql';
import { createSchema, createYoga, type Plugin } from 'graphql-yoga';
import { Hono } from 'hono';
import { connectClient } from '../../../db/connection.ts';
import type { RegistryChecks } from '../../../db/functions.ts';
import { LedgerFeed } from '../../../db/subscriptions.ts';
import { resolveHandlerPath } from '../../runtimes/index.ts';
import type { AppDeps } from '../app.ts';
import { createMaskError, guardResolvers } from './errors.ts';
import { DEFAULT_QUERY, graphiqlAssetRoutes, renderOfflineGraphiQL } from './graphiql.ts';
import { NoSchemaIntrospectionCustomRule } from './graphql-js.ts';
import { EventsLoader } from './loaders.ts';
import { queueResolvers, queueTypeDefs } from './queues.ts';
import { resolvers, type GraphQLContext } from './resolvers.ts';

export const GRAPHQL_ENDPOINT = '/graphql';

/** Query limits; a page of 100 invocations with their events costs about 2,500. */
export const LIMITS = {
  maxDepth: 10,
  maxCost: 5_000,
  maxAliases: 100,
} as const;

export interface GraphQLOptions {
  /** the process's ledger feed (tests pass one to watch it); made here otherwise */
  feed?: LedgerFeed;
  /** more yoga plugins, run after the limits (createApp passes the API-key check) */
  plugins?: Plugin[];
}

const typeDefs = readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8');

/** Gives the armor plugins' validation errors a code, like every other error of the API. */
const limitError = (code: string) => ({
  onReject: [
    (_ctx: ValidationContext | null, err: GraphQLError) => {
      (err.extensions as Record<string, unknown>).code = code;
    },
  ],
});

function introspectionSwitch(enabled: boolean): Plugin {
  return {
    onValidate({ addValidationRule }) {
      if (!enabled) addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

export function graphqlRoutes(deps: AppDeps, options: GraphQLOptions = {}): Hono {
  const logger = deps.logger.child({ component: 'graphql' });
  const databaseUrl = deps.databaseUrl;
  const feed =
    options.feed ??
    new LedgerFeed({
      db: deps.db,
      ...(databaseUrl ? { listen: () => connectClient(databaseUrl) } : {}),
      onError: (err) => logger.warn({ err }, 'ledger feed: read or LISTEN failed; retrying'),
    });
  const checks: RegistryChecks = {
    handler: (h) => void resolveHandlerPath(deps.functionsDir, h),
    url: (u) => deps.httpAllowlist?.check(u),
  };
  const introspection = deps.graphqlIntrospection !== false;

  const yoga = createYoga<object, GraphQLContext>({
    schema: createSchema<GraphQLContext>({
      typeDefs: [typeDefs, queueTypeDefs],
      resolvers: [guardResolvers(resolvers), guardResolvers(queueResolvers)],
    }),
    graphqlEndpoint: GRAPHQL_ENDPOINT,
    landingPage: false,
    context: ({ request }) => ({ deps, checks, feed, events: new EventsLoader(deps.db), request }),
    maskedErrors: { maskError: createMaskError(logger) },
    logging: {
      debug: (...args: unknown[]) => logger.debug(args.map(String).join(' ')),
      info: (...args: unknown[]) => logger.info(args.map(String).join(' ')),
      warn: (...args: unknown[]) => logger.warn(args.map(String).join(' ')),
      error: (...args: unknown[]) => logger.error(args.map(String).join(' ')),
    },
    graphiql: {
      title: 'Invoke Ledger GraphiQL',
      defaultQuery: DEFAULT_QUERY,
      subscriptionsProtocol: 'SSE',
    },
    renderGraphiQL: renderOfflineGraphiQL(GRAPHQL_ENDPOINT),
    plugins: [
      // cost first: a flood of aliases is refused for what it would cost, with the numbers
      costLimitPlugin({ maxCost: LIMITS.maxCost, objectCost: 2, scalarCost: 1, depthCostFactor: 1, ...limitError('QueryTooComplex') }),
      maxDepthPlugin({ n: LIMITS.maxDepth, ...limitError('QueryTooDeep') }),
      maxAliasesPlugin({ n: LIMITS.maxAliases, ...limitError('TooManyAliases') }),
      introspectionSwitch(introspection),
      ...(options.plugins ?? []),
    ],
  });

  const app = new Hono();
  app.route('/', graphiqlAssetRoutes());
  app.on(['GET', 'POST', 'OPTIONS'], '/', (c) => yoga.fetch(c.req.raw, {}));
  return app;
}
