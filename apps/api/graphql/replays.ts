// GraphQL for replay runs (docs/replay.md): startReplay, replay(id) with its progress and
// report, replays, and the link from a replay invocation to its original. Merged by
// ./index.ts; the resolvers only translate to db/replay-runs.ts.
import type { InvocationState, InvocationStatus, LedgerEvent } from '../../../db/lifecycle.ts';
import { getReplay, listReplays, replayProgress, replayReport, startReplay, type ReplayReport, type ReplayRun } from '../../../db/replay-runs.ts';
import type { Principal } from '../auth/authenticator.ts';
import type { GraphQLContext } from './context.ts';

export const replayTypeDefs = /* GraphQL */ `
  """
  A replay run: recorded invocations of a function run again against another version,
  each as an invocation of type REPLAY that links to its original (docs/replay.md).
  """
  type Replay {
    id: ID!
    functionName: String!
    """the target as asked: $LATEST, a version number or an alias"""
    target: String!
    """the version it resolved to when the run started (an alias's own version: each replay through it is routed by its weights)"""
    targetVersion: Int!
    """the selection as asked (from, to, statuses, ids, sample)"""
    selection: JSON!
    """replay invocations of this run running at once, across every worker"""
    concurrency: Int!
    createdBy: String
    createdAt: DateTime!
    progress: ReplayProgress!
    """
    Each original compared with its replay, read from the ledger now: counts by kind of
    difference with the worst \`examples\` of each (default 5, at most 50).
    """
    report(examples: Int): ReplayReport!
  }

  type ReplayProgress {
    total: Int!
    """replay invocations accepted so far"""
    started: Int!
    """replay invocations that have ended"""
    finished: Int!
    done: Boolean!
  }

  enum ReplayDifferenceKind {
    """both succeeded with structurally equal results"""
    SAME
    """both succeeded with different results (see diff)"""
    CHANGED
    """the original succeeded, the replay failed"""
    ERROR_NOW
    """the original failed, the replay succeeded"""
    ERROR_BEFORE
    """both failed with the same errorType"""
    SAME_ERROR
    """both failed with different errorTypes"""
    CHANGED_ERROR
    """the replay has not finished yet"""
    PENDING
  }

  type ReplayReport {
    total: Int!
    finished: Int!
    byKind: [ReplayKindSummary!]!
    """the pairs by the version their replay ran, lowest first (several through a weighted alias)"""
    byVersion: [ReplayVersionSummary!]!
    durations: ReplayDurations!
    """every pair, in the order of the originals, optionally of one kind (at most 1000 from offset)"""
    pairs(kind: ReplayDifferenceKind, offset: Int, first: Int): [ReplayPair!]!
    """the whole report with every pair, as one JSON value (the export)"""
    json: JSON!
  }

  type ReplayVersionSummary {
    version: Int!
    count: Int!
    byKind: [ReplayKindCount!]!
  }

  type ReplayKindCount {
    kind: ReplayDifferenceKind!
    count: Int!
  }

  type ReplayKindSummary {
    kind: ReplayDifferenceKind!
    count: Int!
    """the worst first: most differences, then the largest slowdown"""
    examples: [ReplayPair!]!
  }

  type ReplayDurations {
    """pairs where both durations are known"""
    pairs: Int!
    beforeMedianMs: Float
    afterMedianMs: Float
    """median of after / before"""
    medianRatio: Float
    """the largest slowdowns, worst first"""
    slowest: [ReplayPair!]!
  }

  type ReplayPair {
    ordinal: Int!
    kind: ReplayDifferenceKind!
    payload: JSON
    before: ReplayOutcome!
    after: ReplayOutcome
    """for CHANGED: every difference of the results, by JSON Pointer path"""
    diff: [JsonChange!]!
    """after − before, when both are known"""
    durationChangeMs: Float
  }

  type ReplayOutcome {
    invocationId: ID!
    """the version it ran"""
    version: Int!
    """the alias it was invoked through (a replay whose run targets an alias), else null"""
    alias: String
    status: String!
    result: JSON
    errorType: String
    errorMessage: String
    durationMs: Float
  }

  type JsonChange {
    """CREATE, REMOVE or CHANGE"""
    op: String!
    """JSON Pointer (RFC 6901); / is the whole result"""
    path: String!
    before: JSON
    after: JSON
  }

  """Set on invocations of type REPLAY."""
  type InvocationReplay {
    replayId: ID!
    """the recorded invocation whose payload this one ran"""
    originalInvocationId: ID!
  }

  extend type Invocation {
    """the run and the original, for an invocation of type REPLAY; null otherwise"""
    replay: InvocationReplay
  }

  input StartReplayInput {
    functionName: String!
    """$LATEST (default), a version number, or an alias (each replay routed through it as Lambda routes an invocation)"""
    target: String
    """originals accepted at or after"""
    from: DateTime
    """originals accepted before"""
    to: DateTime
    """default SUCCEEDED, FAILED, DEAD_LETTERED"""
    statuses: [InvocationStatus!]
    """exactly these originals"""
    ids: [ID!]
    """a random sample of this many (default: every match, at most 10000)"""
    sample: Int
    """replay invocations running at once (default 2, at most 64)"""
    concurrency: Int
  }

  extend type Query {
    replay(id: ID!): Replay
    """newest first"""
    replays(functionName: String, first: Int): [Replay!]!
  }

  extend type Mutation {
    """Starts a replay run; the workers run it. Nothing is written when the selection or target is refused."""
    startReplay(input: StartReplayInput!): Replay!
  }
`;

type Args = Record<string, unknown>;
const KIND_IN = { SAME: 'same', CHANGED: 'changed', ERROR_NOW: 'error_now', ERROR_BEFORE: 'error_before', SAME_ERROR: 'same_error', CHANGED_ERROR: 'changed_error', PENDING: 'pending' };

/** One report per run and request, however many fields ask for it. */
function reportFor(run: ReplayRun, ctx: GraphQLContext, examples: number): Promise<ReplayReport> {
  const cache = ((ctx as { replayReports?: Map<string, Promise<ReplayReport>> }).replayReports ??= new Map());
  const key = `${run.id}\u0000${examples}`;
  let hit = cache.get(key);
  if (!hit) {
    hit = replayReport(ctx.db, run.id, { examples, withPairs: true });
    cache.set(key, hit);
  }
  return hit;
}

export const replayResolvers = {
  ReplayDifferenceKind: KIND_IN,

  Replay: {
    progress: async (run: ReplayRun, _: Args, ctx: GraphQLContext) => (await replayProgress(ctx.db, [run.id])).get(run.id),
    report: (run: ReplayRun, args: { examples?: number | null }, ctx: GraphQLContext) =>
      reportFor(run, ctx, Math.min(50, Math.max(0, args.examples ?? 5))),
  },

  ReplayReport: {
    pairs: (r: ReplayReport, args: { kind?: string | null; offset?: number | null; first?: number | null }) => {
      const of = (r.pairs ?? []).filter((p) => !args.kind || p.kind === args.kind);
      const offset = Math.max(0, args.offset ?? 0);
      return of.slice(offset, offset + Math.min(1000, Math.max(0, args.first ?? 100)));
    },
    json: (r: ReplayReport) => r,
  },

  Invocation: {
    replay: async (inv: InvocationState, _: Args, ctx: GraphQLContext) => {
      if (inv.invocationType !== 'replay') return null;
      const events: LedgerEvent[] = 'events' in inv ? (inv as { events: LedgerEvent[] }).events : await ctx.events.load(inv.id);
      const first = events[0];
      const link = first?.type === 'accepted' ? first.data.replay : undefined;
      return link ? { replayId: link.replayId, originalInvocationId: link.of } : null;
    },
  },

  Query: {
    replay: (_: unknown, args: { id: string }, ctx: GraphQLContext) => getReplay(ctx.db, args.id),
    replays: (_: unknown, args: { functionName?: string | null; first?: number | null }, ctx: GraphQLContext) =>
      listReplays(ctx.db, { functionName: args.functionName ?? null, first: args.first ?? null }),
  },

  Mutation: {
    startReplay: (_: unknown, args: { input: Record<string, unknown> }, ctx: GraphQLContext) => {
      const i = args.input;
      const principal = (ctx as { principal?: Principal }).principal;
      return startReplay(ctx.db, {
        selection: {
          functionName: i.functionName as string,
          from: (i.from as Date | null | undefined) ?? null,
          to: (i.to as Date | null | undefined) ?? null,
          statuses: (i.statuses as InvocationStatus[] | null | undefined) ?? null,
          ids: (i.ids as string[] | null | undefined) ?? null,
          sample: (i.sample as number | null | undefined) ?? null,
        },
        target: (i.target as string | null | undefined) ?? null,
        concurrency: (i.concurrency as number | null | undefined) ?? null,
        createdBy: principal ? `key:${principal.name ?? principal.keyId}` : null,
      });
    },
  },
};
