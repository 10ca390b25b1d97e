// Resolvers: translate GraphQL to the core functions of db/ and the InvokeService.
// No lifecycle rules and no SQL here.
import { LedgerError } from '../../../db/errors.ts';
import { changeFunction, createManagedFunction, deleteManagedFunction, functionHistory } from '../../../db/control-plane.ts';
import { getFunction, listFunctions, type FunctionVersion } from '../../../db/functions.ts';
import { cancel, getInvocation, redrive, requireInvocation, viewOf, type InvocationView } from '../../../db/invocations.ts';
import type { InvocationState, LedgerEvent } from '../../../db/lifecycle.ts';
import {
  countInvocations,
  functionStats,
  hasInvocationsBefore,
  listInvocations,
  type InvocationFilter,
  type InvocationPage,
} from '../../../db/read-models.ts';
import { redactUrlSecrets } from '../../runtimes/index.ts';
import type { Principal } from '../auth/index.ts';
import { chainDepthOf } from '../function-ref.ts';
import { ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT } from '../invoke.ts';
import { changeContext, type GraphQLContext } from './context.ts';
import { formatCursor, parseCursor, type FeedEvent } from './feed.ts';
import { attachFeed, onFeedDropped } from './live.ts';
import { DateTimeScalar, JSONScalar } from './scalars.ts';

type Args = Record<string, unknown>;

interface Connection {
  page: InvocationPage;
  filter: InvocationFilter;
  after: string | null;
}

const MAX_IDEMPOTENCY_KEY = 256;

function checkPayload(payload: unknown, limit: number): void {
  const bytes = Buffer.byteLength(JSON.stringify(payload ?? null), 'utf8');
  if (bytes > limit) throw new LedgerError('PayloadTooLarge', `payload is ${bytes} bytes; the limit is ${limit}`);
}

function checkIdempotencyKey(key: unknown): string | null {
  if (key === null || key === undefined) return null;
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY) {
    throw new LedgerError('InvalidParameter', `idempotencyKey must be 1 … ${MAX_IDEMPOTENCY_KEY} characters`);
  }
  return key;
}

/** payload/result/error need the events: read them through the request's batch loader. */
async function viewFor(parent: InvocationState | InvocationView, ctx: GraphQLContext): Promise<InvocationView> {
  if ('events' in parent) return parent;
  return viewOf(parent, await ctx.events.load(parent.id));
}

/**
 * A URL as a caller may see it: keys without `admin` get it without credentials and query
 * values, which may be tokens (docs/security.md, "Secrets in URLs").
 */
function visibleUrl(url: string | null, ctx: GraphQLContext): string | null {
  const principal = (ctx as { principal?: Principal }).principal;
  return url !== null && principal !== undefined && !principal.scopes.has('admin') ? redactUrlSecrets(url) : url;
}

/** A fresh view for a mutation's answer, its events kept for the fields below. */
async function freshView(ctx: GraphQLContext, id: string): Promise<InvocationView> {
  const view = await requireInvocation(ctx.db, id);
  ctx.events.prime(id, view.events);
  return view;
}

async function connection(ctx: GraphQLContext, filter: InvocationFilter, args: Args): Promise<Connection> {
  const after = (args.after as string | null | undefined) ?? null;
  const page = await listInvocations(ctx.db, filter, { first: args.first as number | null | undefined, after });
  return { page, filter, after };
}

const TRACE_ID = /^[0-9a-f]{32}$/i;

/** A trace id is 32 hex digits (W3C trace context); anything else is the caller's mistake, not an empty page. */
function checkTraceId(filter: InvocationFilter): InvocationFilter {
  if (filter.traceId !== null && filter.traceId !== undefined && !TRACE_ID.test(filter.traceId)) {
    throw new LedgerError('InvalidParameter', 'traceId must be 32 hexadecimal digits (W3C trace context)');
  }
  return filter;
}

const withoutNulls = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));

export const resolvers = {
  JSON: JSONScalar,
  DateTime: DateTimeScalar,
  Isolation: { THREAD: 'thread', INLINE: 'inline' },
  InvocationType: { SYNC: 'sync', ASYNC: 'async', POLL: 'poll', REPLAY: 'replay' },
  InvocationStatus: {
    QUEUED: 'queued',
    RUNNING: 'running',
    RETRY_SCHEDULED: 'retry_scheduled',
    SUCCEEDED: 'succeeded',
    FAILED: 'failed',
    DEAD_LETTERED: 'dead_lettered',
    CANCELLED: 'cancelled',
  },
  EventType: {
    ACCEPTED: 'accepted',
    STARTED: 'started',
    FAILED: 'failed',
    RETRIED: 'retried',
    SUCCEEDED: 'succeeded',
    DEAD_LETTERED: 'dead_lettered',
    CANCELLED: 'cancelled',
    REDRIVEN: 'redriven',
  },

  Function: {
    hasSecret: (fn: FunctionVersion) => fn.secret !== null,
    url: (fn: FunctionVersion, _: Args, ctx: GraphQLContext) => visibleUrl(fn.url, ctx),
    onSuccess: (fn: FunctionVersion, _: Args, ctx: GraphQLContext) => visibleUrl(fn.onSuccess, ctx),
    onFailure: (fn: FunctionVersion, _: Args, ctx: GraphQLContext) => visibleUrl(fn.onFailure, ctx),
  },

  LedgerEvent: {
    // feed events know their transaction; events read through queries do not
    cursor: (e: LedgerEvent | FeedEvent) => ('txId' in e && e.txId ? formatCursor({ txId: e.txId, position: e.position }) : null),
  },

  Invocation: {
    type: (inv: InvocationState) => inv.invocationType,
    payload: async (inv: InvocationState, _: Args, ctx: GraphQLContext) => (await viewFor(inv, ctx)).payload,
    result: async (inv: InvocationState, _: Args, ctx: GraphQLContext) => (await viewFor(inv, ctx)).result,
    error: async (inv: InvocationState, _: Args, ctx: GraphQLContext) => (await viewFor(inv, ctx)).error,
    events: async (inv: InvocationState | InvocationView, _: Args, ctx: GraphQLContext) => {
      const events: LedgerEvent[] = 'events' in inv ? inv.events : await ctx.events.load(inv.id);
      return events.map((e) => ({ ...e, functionName: inv.functionName }));
    },
    traceId: async (inv: InvocationState | InvocationView, _: Args, ctx: GraphQLContext) => {
      const events: LedgerEvent[] = 'events' in inv ? inv.events : await ctx.events.load(inv.id);
      const accepted = events[0];
      return accepted?.type === 'accepted' ? (accepted.data.traceparent?.split('-')[1] ?? null) : null;
    },
  },

  InvocationConnection: {
    edges: (c: Connection) => c.page.items,
    // a plain PageInfo value (shared with other connections); hasPreviousPage costs a
    // query, so it is a thunk that graphql-js's default resolver calls only when asked
    pageInfo: (c: Connection) => ({
      hasNextPage: c.page.hasNextPage,
      hasPreviousPage: (_: Args, ctx: GraphQLContext) => (c.after ? hasInvocationsBefore(ctx.db, c.filter, c.after) : false),
      startCursor: c.page.items[0]?.cursor ?? null,
      endCursor: c.page.items.at(-1)?.cursor ?? null,
    }),
    totalCount: (c: Connection, _: Args, ctx: GraphQLContext) => countInvocations(ctx.db, c.filter),
  },

  Query: {
    invocation: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const view = await getInvocation(ctx.db, args.id as string);
      if (view) ctx.events.prime(view.id, view.events);
      return view;
    },
    invocations: (_: unknown, args: Args, ctx: GraphQLContext) =>
      connection(ctx, checkTraceId((args.filter as InvocationFilter | null) ?? {}), args),
    deadLetters: (_: unknown, args: Args, ctx: GraphQLContext) =>
      connection(ctx, { functionName: args.functionName as string | null, status: 'dead_lettered' }, args),
    functions: (_: unknown, __: Args, ctx: GraphQLContext) => listFunctions(ctx.db),
    function: (_: unknown, args: Args, ctx: GraphQLContext) => getFunction(ctx.db, args.name as string),
    functionHistory: (_: unknown, args: Args, ctx: GraphQLContext) =>
      functionHistory(ctx.db, args.name as string, { until: (args.until as Date | null) ?? undefined, limit: (args.first as number | null) ?? undefined }),
    functionStats: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const name = args.name as string;
      if (!(await getFunction(ctx.db, name))) throw new LedgerError('FunctionNotFound', `Function not found: ${name}`);
      const since = (args.since as Date | null | undefined) ?? new Date(Date.now() - 24 * 60 * 60 * 1000);
      return functionStats(ctx.db, name, since);
    },
  },

  Mutation: {
    createFunction: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) => {
      // null means "the default" when creating
      const { name, ...config } = withoutNulls(args.input);
      return createManagedFunction(ctx.db, changeContext(ctx), name as string, config as never, null, { checks: ctx.checks }).then((r) => r.fn);
    },
    // forgetFunction: this process's invokes see the change at once, not after the 1 s function cache
    updateFunction: async (_: unknown, args: { name: string; input: Record<string, unknown> }, ctx: GraphQLContext) => {
      const { fn } = await changeFunction(ctx.db, changeContext(ctx), args.name, 'config_updated', args.input, { checks: ctx.checks });
      ctx.invoke.forgetFunction(args.name);
      return fn;
    },
    deleteFunction: async (_: unknown, args: { name: string }, ctx: GraphQLContext) => {
      await deleteManagedFunction(ctx.db, changeContext(ctx), args.name);
      ctx.invoke.forgetFunction(args.name);
      return true;
    },

    invoke: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const fn = await ctx.invoke.resolveFunction(args.functionName as string);
      checkPayload(args.payload, SYNC_PAYLOAD_LIMIT);
      const done = await ctx.invoke.invokeSync(fn, args.payload ?? null, {
        idempotencyKey: checkIdempotencyKey(args.idempotencyKey),
        chainDepth: chainDepthOf(ctx.request.headers),
        signal: ctx.request.signal,
      });
      return freshView(ctx, done.invocationId);
    },
    invokeAsync: async (_: unknown, args: Args, ctx: GraphQLContext) => {
      const fn = await ctx.invoke.resolveFunction(args.functionName as string);
      checkPayload(args.payload, ASYNC_PAYLOAD_LIMIT);
      const accepted = await ctx.invoke.invokeAsync(fn, args.payload ?? null, {
        idempotencyKey: checkIdempotencyKey(args.idempotencyKey),
        chainDepth: chainDepthOf(ctx.request.headers),
      });
      return freshView(ctx, accepted.invocationId);
    },
    redrive: async (_: unknown, args: { invocationId: string }, ctx: GraphQLContext) => {
      await redrive(ctx.db, [args.invocationId], 'graphql');
      return freshView(ctx, args.invocationId);
    },
    cancelInvocation: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
      await cancel(ctx.db, [args.id], 'cancelled through GraphQL');
      return freshView(ctx, args.id);
    },
  },

  Subscription: {
    invocationEvents: {
      subscribe: async (_: unknown, args: Args, ctx: GraphQLContext) => {
        const invocationId = (args.invocationId as string | null | undefined) ?? null;
        if (invocationId && !(await getInvocation(ctx.db, invocationId))) {
          throw new LedgerError('InvocationNotFound', `Invocation not found: ${invocationId}`);
        }
        // an SSE client that reconnects (EventSource does it by itself) says where it was;
        // that wins over the `after` of the original request it repeats
        const from = ctx.request.headers.get('last-event-id') || ((args.after as string | null | undefined) ?? null);
        const sub = ctx.feed.subscribe(
          { invocationId, functionName: (args.functionName as string | null | undefined) ?? null },
          { after: from ? parseCursor(from) : null, signal: ctx.request.signal, onDropped: onFeedDropped(ctx.request) },
        );
        return attachFeed(ctx.request, sub);
      },
      resolve: (e: FeedEvent) => e,
    },
  },
};
