// GraphQL for schedules (docs/schedules.md): type definitions that extend the schema's Query
// and Mutation, and resolvers that translate to db/schedule-store.ts. Merged by ./index.ts.
import {
  createSchedule,
  deleteSchedule,
  listSchedules,
  listTicks,
  requireSchedule,
  upcomingTicks,
  setScheduleState,
  updateSchedule,
  type ScheduleInput,
  type ScheduleView,
} from '../../../db/schedule-store.ts';
import { LedgerError } from '../../../db/errors.ts';
import type { Principal } from '../auth/index.ts';
import type { GraphQLContext } from './context.ts';

export const scheduleTypeDefs = /* GraphQL */ `
  """A schedule with the semantics of Amazon EventBridge Scheduler: it invokes a function at its ticks."""
  type Schedule {
    id: ID!
    arn: String!
    name: String!
    groupName: String!
    description: String
    """at(…), rate(…) or cron(…)"""
    expression: String!
    timezone: String!
    startDate: DateTime
    endDate: DateTime
    """ENABLED or DISABLED"""
    state: String!
    """null: OFF"""
    flexibleWindowMinutes: Int
    targetFunction: String!
    """a version number; null: $LATEST"""
    targetQualifier: String
    input: String
    maximumRetryAttempts: Int!
    maximumEventAgeInSeconds: Int!
    deadLetterArn: String
    """skip, once or all"""
    misfirePolicy: String!
    maxCatchUp: Int
    """NONE or DELETE"""
    actionAfterCompletion: String!
    """when the scheduler looks at it next (the next tick's fire time); null: no tick left"""
    nextFireAt: DateTime
    createdAt: DateTime!
    updatedAt: DateTime!
    """the next ticks, computed (scheduled time and fire time)"""
    upcomingTicks(count: Int = 5): [ComputedTick!]!
  }

  type ComputedTick {
    scheduledTime: DateTime!
    fireAt: DateTime!
    flexibleOffsetMs: Int!
  }

  """A tick in the ledger: fired (with its invocation) or skipped (with the reason)."""
  type ScheduleTick {
    scheduledTime: DateTime!
    """fired or skipped"""
    outcome: String!
    skipReason: String
    fireAt: DateTime
    flexibleOffsetMs: Int!
    late: Boolean!
    invocationId: ID
    invocationStatus: String
    executionId: String
    decidedAt: DateTime!
    decidedBy: String!
  }

  """The ledger's ticks of a schedule and the next ones it will have."""
  type ScheduleTicks {
    recorded: [ScheduleTick!]!
    upcoming: [ComputedTick!]!
  }

  input ScheduleInput {
    name: String!
    groupName: String
    description: String
    expression: String!
    timezone: String
    startDate: DateTime
    endDate: DateTime
    state: String
    """minutes of a FLEXIBLE window; absent: OFF"""
    flexibleWindowMinutes: Int
    targetFunction: String!
    targetQualifier: String
    input: String
    maximumRetryAttempts: Int
    maximumEventAgeInSeconds: Int
    deadLetterArn: String
    misfirePolicy: String
    maxCatchUp: Int
    actionAfterCompletion: String
  }

  extend type Query {
    schedules(groupName: String, namePrefix: String, first: Int = 100): [Schedule!]!
    schedule(name: String!, groupName: String): Schedule!
    """recorded ticks (oldest first) and the next \`upcoming\` computed ones; recorded ticks outlive a deleted schedule"""
    scheduleTicks(name: String!, groupName: String, first: Int = 100, upcoming: Int = 5): ScheduleTicks!
  }

  extend type Mutation {
    createSchedule(input: ScheduleInput!): Schedule!
    """replaces the definition, as UpdateSchedule does"""
    updateSchedule(input: ScheduleInput!): Schedule!
    deleteSchedule(name: String!, groupName: String): Schedule!
    """
    ENABLED or DISABLED, the rest of the definition kept: an updateSchedule with the
    schedule's own definition (recorded in the changes as any update; a rate() without a
    startDate counts from here). Setting the state it has already changes nothing.
    """
    setScheduleState(name: String!, groupName: String, state: String!): Schedule!
  }
`;

type Args = Record<string, unknown>;

function inputOf(i: Args): ScheduleInput {
  const s = (k: string) => (i[k] === undefined || i[k] === null ? null : (i[k] as string));
  const n = (k: string) => (i[k] === undefined || i[k] === null ? undefined : (i[k] as number));
  const retryPolicy: NonNullable<ScheduleInput['target']['retryPolicy']> = {};
  if (n('maximumRetryAttempts') !== undefined) retryPolicy.maximumRetryAttempts = n('maximumRetryAttempts') as number;
  if (n('maximumEventAgeInSeconds') !== undefined) retryPolicy.maximumEventAgeInSeconds = n('maximumEventAgeInSeconds') as number;
  const minutes = n('flexibleWindowMinutes');
  const misfire = s('misfirePolicy');
  return {
    name: i.name as string,
    groupName: s('groupName'),
    description: s('description'),
    expression: i.expression as string,
    timezone: s('timezone'),
    startDate: (i.startDate as Date | null | undefined) ?? null,
    endDate: (i.endDate as Date | null | undefined) ?? null,
    state: s('state') as ScheduleInput['state'],
    flexibleTimeWindow: minutes === undefined ? { mode: 'OFF' } : { mode: 'FLEXIBLE', maximumWindowInMinutes: minutes },
    target: {
      functionName: i.targetFunction as string,
      qualifier: s('targetQualifier'),
      input: s('input'),
      retryPolicy,
      deadLetterArn: s('deadLetterArn'),
    },
    misfirePolicy: misfire === null ? null : { mode: misfire, maxCatchUp: n('maxCatchUp') ?? null },
    actionAfterCompletion: s('actionAfterCompletion') as ScheduleInput['actionAfterCompletion'],
  };
}

/** The input that gives a schedule its own definition again, with another state. */
function actorOf(ctx: GraphQLContext): { actor: string; requestId?: string } {
  const principal = (ctx as { principal?: Principal }).principal;
  const requestId = ctx.request.headers.get('x-request-id');
  return { actor: principal ? principal.keyId : 'anonymous', ...(requestId ? { requestId } : {}) };
}

const out = (v: ScheduleView) => ({
  ...v,
  flexibleWindowMinutes: v.flexibleTimeWindow.mode === 'FLEXIBLE' ? v.flexibleTimeWindow.maximumWindowInMinutes : null,
  targetFunction: v.target.functionName,
  targetQualifier: v.target.qualifier,
  input: v.target.input,
  maximumRetryAttempts: v.target.retryPolicy.maximumRetryAttempts,
  maximumEventAgeInSeconds: v.target.retryPolicy.maximumEventAgeInSeconds,
  deadLetterArn: v.target.deadLetterArn,
  misfirePolicy: v.misfirePolicy.mode,
  maxCatchUp: v.misfirePolicy.mode === 'all' ? v.misfirePolicy.maxCatchUp : null,
  _view: v,
});

export const scheduleResolvers = {
  Schedule: {
    upcomingTicks: (s: { _view: ScheduleView }, a: Args, ctx: GraphQLContext) => upcomingTicks(ctx.db, s._view, Math.min((a.count as number) ?? 5, 100)),
  },
  Query: {
    schedules: async (_: unknown, a: Args, ctx: GraphQLContext) =>
      (await listSchedules(ctx.db, { groupName: (a.groupName as string | null) ?? null, namePrefix: (a.namePrefix as string | null) ?? null, limit: (a.first as number) ?? 100 })).map(out),
    schedule: async (_: unknown, a: Args, ctx: GraphQLContext) => out(await requireSchedule(ctx.db, (a.groupName as string | null) ?? null, a.name as string)),
    scheduleTicks: async (_: unknown, a: Args, ctx: GraphQLContext) => {
      const group = (a.groupName as string | null) ?? null;
      const recorded = await listTicks(ctx.db, group, a.name as string, (a.first as number) ?? 100);
      const count = Math.min((a.upcoming as number) ?? 5, 100);
      const view = count > 0 ? await requireSchedule(ctx.db, group, a.name as string).catch(() => null) : null;
      return { recorded, upcoming: view ? await upcomingTicks(ctx.db, view, count) : [] };
    },
  },
  Mutation: {
    createSchedule: async (_: unknown, a: Args, ctx: GraphQLContext) => out(await createSchedule(ctx.db, inputOf(a.input as Args), actorOf(ctx))),
    updateSchedule: async (_: unknown, a: Args, ctx: GraphQLContext) => out(await updateSchedule(ctx.db, inputOf(a.input as Args), actorOf(ctx))),
    setScheduleState: async (_: unknown, a: Args, ctx: GraphQLContext) => {
      const state = a.state as string;
      if (state !== 'ENABLED' && state !== 'DISABLED') throw new LedgerError('InvalidParameter', 'state must be ENABLED or DISABLED');
      return out(await setScheduleState(ctx.db, (a.groupName as string | null) ?? null, a.name as string, state, actorOf(ctx)));
    },
    deleteSchedule: async (_: unknown, a: Args, ctx: GraphQLContext) => out(await deleteSchedule(ctx.db, (a.groupName as string | null) ?? null, a.name as string, actorOf(ctx))),
  },
};
