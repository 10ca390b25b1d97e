// GraphQL for watching the ledger: statistics over time, what runs and waits now, dead
// letters grouped by cause, queue lag, a function's versions and an invocation's attempt
// logs. Type definitions that extend the schema, merged by ./index.ts; the resolvers only
// translate to the read models of db/.
import { LedgerError } from '../../../db/errors.ts';
import { listFunctionVersions, type FunctionVersion } from '../../../db/functions.ts';
import { attemptLogsOf, type AttemptLogText } from '../../../db/invocations.ts';
import type { InvocationState } from '../../../db/lifecycle.ts';
import { currentActivity, deadLetterGroups, invocationStats, oldestMessageAges } from '../../../db/monitoring.ts';
import { listQueues, type Queue } from '../../../db/queues/queues.ts';
import type { GraphQLContext } from './context.ts';

export const monitoringTypeDefs = /* GraphQL */ `
  extend input InvocationFilter {
    """the Idempotency-Key the invocation was accepted with"""
    idempotencyKey: String
  }

  """What one attempt printed (console.log, context.log, the runtime's error line): its last 64 KB."""
  type AttemptLog {
    attempt: Int!
    log: String!
  }

  extend type Invocation {
    """the stored log of every attempt that printed something, oldest attempt first"""
    attemptLogs: [AttemptLog!]!
  }

  extend type LedgerEvent {
    """how long the attempt ran (succeeded and failed events: data.durationMs); null for other events"""
    durationMs: Float
  }

  extend type Function {
    """every version of this function, newest first (at most 100)"""
    versions: [Function!]!
  }

  """What happened in one bucket of time."""
  type StatsPoint {
    start: DateTime!
    """invocations accepted"""
    accepted: Int!
    """attempts that succeeded"""
    succeeded: Int!
    """attempts that failed (retried ones included)"""
    failedAttempts: Int!
    deadLettered: Int!
    """failedAttempts / (succeeded + failedAttempts); null when no attempt ended"""
    errorRate: Float
    p50DurationMs: Float
    p95DurationMs: Float
    p99DurationMs: Float
  }

  type StatsSeries {
    """null: every function together"""
    functionName: String
    """only the buckets in which something happened, oldest first"""
    points: [StatsPoint!]!
  }

  type InvocationStats {
    since: DateTime!
    until: DateTime!
    bucketSeconds: Int!
    total: StatsSeries!
    """one series per function with events in the range, busiest first"""
    functions: [StatsSeries!]!
  }

  type OldestDueInvocation {
    invocationId: ID!
    functionName: String!
    dueSince: DateTime!
    waitingSeconds: Float!
  }

  """What the queue table says right now."""
  type Activity {
    at: DateTime!
    """attempts holding a lease (sync, async and poll)"""
    runningAttempts: Int!
    """async invocations due and waiting for a worker"""
    dueInvocations: Int!
    """async invocations waiting for a retry or throttle backoff"""
    scheduledInvocations: Int!
    oldestDue: OldestDueInvocation
  }

  """Invocations dead-lettered now, of one function and one error type."""
  type DeadLetterGroup {
    functionName: String!
    """the last failed attempt's errorType; null when no attempt failed"""
    errorType: String
    count: Int!
    reasons: [String!]!
    oldestAt: DateTime!
    newestAt: DateTime!
  }

  extend type Queue {
    """seconds since the oldest message not yet deleted or dead-lettered was sent (SQS ApproximateAgeOfOldestMessage); null when there is none"""
    approximateAgeOfOldestMessageSeconds: Float
  }

  extend type Query {
    """
    Accepted invocations, attempt outcomes, dead letters and attempt durations per bucket
    of bucketSeconds from since (aligned on it) to until (default now), per function and
    in total; at most 1008 buckets.
    """
    invocationStats(since: DateTime!, until: DateTime, bucketSeconds: Int!, functionName: String): InvocationStats!
    activity: Activity!
    """largest first, at most 200 groups"""
    deadLetterGroups: [DeadLetterGroup!]!
  }
`;

type Args = Record<string, unknown>;

/** Ages of every queue a request asks about, read once. */
const queueAges = new WeakMap<GraphQLContext, Promise<Map<string, number>>>();

export const monitoringResolvers = {
  LedgerEvent: {
    durationMs: (e: { data?: unknown }) => {
      const d = (e.data as { durationMs?: unknown } | null | undefined)?.durationMs;
      return typeof d === 'number' ? d : null;
    },
  },

  Invocation: {
    attemptLogs: async (inv: InvocationState, _: Args, ctx: GraphQLContext): Promise<AttemptLogText[]> =>
      (await attemptLogsOf(ctx.db, [inv.id])).get(inv.id) ?? [],
  },

  Function: {
    versions: (fn: FunctionVersion, _: Args, ctx: GraphQLContext) => listFunctionVersions(ctx.db, fn.name),
  },

  Queue: {
    approximateAgeOfOldestMessageSeconds: async (q: Queue, _: Args, ctx: GraphQLContext) => {
      let ages = queueAges.get(ctx);
      if (!ages) {
        // every queue at once: a list of queues asks once, not once per queue
        ages = listQueues(ctx.db).then((all) => oldestMessageAges(ctx.db, all.map((x) => x.name)));
        queueAges.set(ctx, ages);
      }
      return (await ages).get(q.name) ?? null;
    },
  },

  Query: {
    invocationStats: (_: unknown, args: Args, ctx: GraphQLContext) => {
      const since = args.since as Date;
      const until = (args.until as Date | null | undefined) ?? undefined;
      if (!(since instanceof Date)) throw new LedgerError('InvalidParameter', 'since is required');
      return invocationStats(ctx.db, {
        since,
        ...(until ? { until } : {}),
        bucketSeconds: args.bucketSeconds as number,
        functionName: (args.functionName as string | null | undefined) ?? null,
      });
    },
    activity: (_: unknown, __: Args, ctx: GraphQLContext) => currentActivity(ctx.db),
    deadLetterGroups: (_: unknown, __: Args, ctx: GraphQLContext) => deadLetterGroups(ctx.db),
  },
};
