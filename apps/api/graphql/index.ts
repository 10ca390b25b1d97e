// GraphQL at /graphql (docs/graphql.md, docs/audit.md): graphql-yoga inside Hono, GraphiQL served offline,
// subscriptions over SSE from the one ledger feed of this process, limits from graphql-armor.
import { readFileSync } from 'node:fs';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { getOperationAST, type GraphQLError, type ValidationContext } from 'graphql';
import { createSchema, createYoga, type Plugin } from 'graphql-yoga';
import { Hono } from 'hono';
import type { RegistryChecks } from '../../../db/functions.ts';
import type { Logger } from 'pino';
import { listenToLedger, type LedgerNotifications } from '../../../db/notifications.ts';
import type { ReplicaReads } from '../../../db/replica.ts';
import type { Db } from '../../../db/schema.ts';
import type { UrlAllowlist } from '../../runtimes/allowlist.ts';
import { resolveHandlerPath } from '../../runtimes/index.ts';
import type { AuthOptions } from '../auth/index.ts';
import type { GraphQLContext, GraphQLInvoke } from './context.ts';
import { createMaskError, guardResolvers } from './errors.ts';
import { LedgerFeed } from './feed.ts';
import { AUTH_HEADERS_TEMPLATE, DEFAULT_QUERY, KEY_HINT, graphiqlAssetRoutes, renderOfflineGraphiQL } from './graphiql.ts';
import { NoSchemaIntrospectionCustomRule } from './graphql-js.ts';
import { useLiveFeedTransport, type LiveTransportOptions } from './live.ts';
import { EventsLoader } from './loaders.ts';
import { monitoringResolvers, monitoringTypeDefs } from './monitoring.ts';
import { proofResolvers, proofTypeDefs } from './proofs.ts';
import { queueResolvers, queueTypeDefs } from './queues.ts';
import { brokerResolvers, brokerTypeDefs } from './brokers.ts';
import { replayResolvers, replayTypeDefs } from './replays.ts';
import { resolvers } from './resolvers.ts';
import { scheduleResolvers, scheduleTypeDefs } from './schedules.ts';
import { streamResolvers, streamTypeDefs } from './streams.ts';
import { changeStreamResolvers, changeStreamTypeDefs } from './change-streams.ts';

export const GRAPHQL_ENDPOINT = '/graphql';

/** Query limits; a page of 100 invocations with their events costs about 2,500. */
export const LIMITS = {
  maxDepth: 10,
  maxCost: 5_000,
  maxAliases: 100,
} as const;

/** What GraphQL is built from: createApp picks these out of its dependencies. */
export interface GraphQLDeps {
  /** the primary; a query reads from `reads` when given */
  db: Db;
  invoke: GraphQLInvoke;
  logger: Logger;
  /** module handlers registered over GraphQL must resolve inside it */
  functionsDir: string;
  /** a LISTEN connection is made from it when `notifications` is not given */
  databaseUrl?: string;
  notifications?: LedgerNotifications;
  /** the process's live feed; made here when absent */
  feed?: LedgerFeed;
  /** GRAPHQL_INTROSPECTION=off turns schema introspection off (default on) */
  graphqlIntrospection?: boolean;
  /** keys on: GraphiQL opens with the header to fill in; secretKey seals broker credentials */
  auth?: Pick<AuthOptions, 'enabled' | 'secretKey'>;
  /** HTTP_ALLOWLIST, checked when a function's url or URL destinations are registered */
  httpAllowlist?: UrlAllowlist;
  /** DATABASE_READ_URL: queries read from the replica once it has caught up */
  reads?: ReplicaReads;
}

export interface GraphQLOptions {
  /** the process's ledger feed (main and tests pass one, to close or watch it); deps.feed, else made here */
  feed?: LedgerFeed;
  /** slow-consumer grace and SSE pings */
  live?: LiveTransportOptions;
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

/**
 * Queries (not mutations, not subscriptions) read from the replica once it has replayed
 * everything the primary had committed when the query arrived, else from the primary
 * (db/replica.ts): resolvers see that database as `ctx.db`.
 */
function replicaQueries(reads: ReplicaReads): Plugin<GraphQLContext> {
  return {
    async onExecute({ args }) {
      if (getOperationAST(args.document, args.operationName)?.operation !== 'query') return;
      const ctx = args.contextValue;
      const { db } = await reads.fresh();
      ctx.db = db;
      ctx.events = new EventsLoader(db);
    },
  };
}

export function graphqlRoutes(deps: GraphQLDeps, options: GraphQLOptions = {}): Hono {
  const logger = deps.logger.child({ component: 'graphql' });
  // without the process's listener (tests that build the app alone) one of its own, which
  // holds a connection only while someone subscribes
  const notifications =
    deps.notifications ??
    (deps.databaseUrl
      ? listenToLedger(deps.databaseUrl, { onError: (err, retryInMs) => logger.warn({ err, retryInMs }, 'ledger feed: LISTEN failed; polling meanwhile') })
      : undefined);
  const feed =
    options.feed ??
    deps.feed ??
    new LedgerFeed({
      db: deps.db,
      ...(notifications ? { notifications } : {}),
      onError: (err) => logger.warn({ err }, 'ledger feed: read failed; retrying'),
    });
  const checks: RegistryChecks = {
    handler: (h) => void resolveHandlerPath(deps.functionsDir, h),
    url: (u) => deps.httpAllowlist?.check(u),
  };
  const introspection = deps.graphqlIntrospection !== false;

  const yoga = createYoga<object, GraphQLContext>({
    schema: createSchema<GraphQLContext>({
      typeDefs: [typeDefs, queueTypeDefs, monitoringTypeDefs, proofTypeDefs, brokerTypeDefs, scheduleTypeDefs, replayTypeDefs, streamTypeDefs, changeStreamTypeDefs],
      resolvers: [
        guardResolvers(resolvers),
        guardResolvers(queueResolvers),
        guardResolvers(monitoringResolvers),
        guardResolvers(proofResolvers),
        guardResolvers(brokerResolvers),
        guardResolvers(scheduleResolvers),
        guardResolvers(replayResolvers),
        guardResolvers(streamResolvers),
        guardResolvers(changeStreamResolvers),
      ],
    }),
    graphqlEndpoint: GRAPHQL_ENDPOINT,
    landingPage: false,
    // yoga's default echoes any Origin with credentials; CORS is decided once, in createApp
    cors: false,
    context: ({ request }): GraphQLContext => ({ db: deps.db, invoke: deps.invoke, secretKey: deps.auth?.secretKey ?? null, checks, feed, events: new EventsLoader(deps.db), request }),
    maskedErrors: { maskError: createMaskError(logger) },
    logging: {
      debug: (...args: unknown[]) => logger.debug(args.map(String).join(' ')),
      info: (...args: unknown[]) => logger.info(args.map(String).join(' ')),
      warn: (...args: unknown[]) => logger.warn(args.map(String).join(' ')),
      error: (...args: unknown[]) => logger.error(args.map(String).join(' ')),
    },
    graphiql: {
      title: 'Invoke Ledger GraphiQL',
      defaultQuery: deps.auth?.enabled ? `${KEY_HINT}${DEFAULT_QUERY}` : DEFAULT_QUERY,
      subscriptionsProtocol: 'SSE',
      // with keys on, the headers pane opens with the header to fill in (the console's
      // own GraphiQL, /console/graphiql, uses the signed-in key instead)
      ...(deps.auth?.enabled ? { headers: AUTH_HEADERS_TEMPLATE, defaultHeaders: AUTH_HEADERS_TEMPLATE, defaultEditorToolsVisibility: 'headers' as const } : {}),
    },
    renderGraphiQL: renderOfflineGraphiQL(GRAPHQL_ENDPOINT),
    plugins: [
      // cost first: a flood of aliases is refused for what it would cost, with the numbers
      costLimitPlugin({ maxCost: LIMITS.maxCost, objectCost: 2, scalarCost: 1, depthCostFactor: 1, ...limitError('QueryTooComplex') }),
      maxDepthPlugin({ n: LIMITS.maxDepth, ...limitError('QueryTooDeep') }),
      maxAliasesPlugin({ n: LIMITS.maxAliases, ...limitError('TooManyAliases') }),
      introspectionSwitch(introspection),
      ...(options.plugins ?? []),
      ...(deps.reads ? [replicaQueries(deps.reads)] : []),
      // after the auth plugin: it shares executions only between callers with the same scopes
      useLiveFeedTransport(logger, options.live),
    ],
  });

  const app = new Hono();
  app.route('/', graphiqlAssetRoutes());
  // the node response lets the feed disconnect a subscriber that stopped reading
  app.on(['GET', 'POST', 'OPTIONS'], '/', (c) => yoga.fetch(c.req.raw, { outgoing: (c.env as { outgoing?: unknown } | undefined)?.outgoing }));
  return app;
}
