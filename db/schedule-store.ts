// Schedules in the database (migration 0023; docs/schedules.md): create, update, delete
// and read definitions, each change recorded in ledger.changes in its own transaction, and
// `decideDueTicks`, the scheduler's one step: lock a due schedule (SKIP LOCKED), decide its
// due ticks with the pure planner (db/schedules/misfire.ts), and for each tick that fires
// accept its invocation and write its tick row in the same transaction.
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { appendChange } from './changes.ts';
import { LedgerError } from './errors.ts';
import { isAliasName, getAlias, pickAliasVersion } from './control-plane.ts';
import { FUNCTION_NAME, getFunction, type FunctionVersion } from './functions.ts';
import { acceptInvocations } from './invocations.ts';
import type { Db, Executor } from './schema.ts';
import { executionIdFor, formatScheduledTime, idempotencyKeyFor, substituteContextAttributes, tickEvent, type TickInput } from './schedules/context.ts';
import { ScheduleValidationError } from './schedules/expression.ts';
import { checkFlexibleTimeWindow, FLEXIBLE_TIME_WINDOW_OFF, flexibleOffsetMs, type FlexibleTimeWindow } from './schedules/flexible.ts';
import { checkMisfirePolicy, DEFAULT_MISFIRE_POLICY, planDueTicks, type MisfirePolicy, type TickSkipReason } from './schedules/misfire.ts';
import { checkScheduleForWrite, compileSchedule, nextTicks, ticksBetween, type Schedule } from './schedules/ticks.ts';

export const SCHEDULE_NAME = /^[0-9a-zA-Z_.-]{1,64}$/;
export const DEFAULT_GROUP = 'default';
/** the region and account in the ARNs this service writes (as FUNCTION_ARN_PREFIX) */
export const SCHEDULE_ARN_PREFIX = 'arn:aws:scheduler:local:000000000000:schedule/';
/** EventBridge Scheduler's limit on Target.Input */
export const MAX_INPUT_LENGTH = 8192;
const QUALIFIER = /^(\$LATEST|[1-9]\d{0,8})$/;

export interface RetryPolicy {
  /** 0–185 (default 185) */
  maximumRetryAttempts: number;
  /** 60–86400 (default 86400) */
  maximumEventAgeInSeconds: number;
}

export interface ScheduleInput {
  name: string;
  groupName?: string | null;
  description?: string | null;
  expression: string;
  timezone?: string | null;
  startDate?: Date | null;
  endDate?: Date | null;
  state?: 'ENABLED' | 'DISABLED' | null;
  flexibleTimeWindow?: { mode: string; maximumWindowInMinutes?: number | null } | null;
  target: {
    functionName: string;
    /** a version number or $LATEST; null: latest */
    qualifier?: string | null;
    input?: string | null;
    roleArn?: string | null;
    retryPolicy?: Partial<RetryPolicy> | null;
    deadLetterArn?: string | null;
  };
  misfirePolicy?: { mode: string; maxCatchUp?: number | null } | null;
  actionAfterCompletion?: 'NONE' | 'DELETE' | null;
}

export interface ScheduleView {
  id: string;
  arn: string;
  name: string;
  groupName: string;
  description: string | null;
  expression: string;
  timezone: string;
  startDate: Date | null;
  endDate: Date | null;
  state: 'ENABLED' | 'DISABLED';
  flexibleTimeWindow: FlexibleTimeWindow;
  target: {
    functionName: string;
    qualifier: string | null;
    input: string | null;
    roleArn: string | null;
    retryPolicy: RetryPolicy;
    deadLetterArn: string | null;
  };
  misfirePolicy: MisfirePolicy;
  actionAfterCompletion: 'NONE' | 'DELETE';
  activeSince: Date;
  decidedThrough: Date;
  nextFireAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

interface ScheduleRow {
  id: string;
  group_name: string;
  name: string;
  description: string | null;
  expression: string;
  timezone: string;
  start_date: Date | null;
  end_date: Date | null;
  state: 'ENABLED' | 'DISABLED';
  flexible_window_minutes: number | null;
  target_function: string;
  target_qualifier: string | null;
  target_input: string | null;
  target_role_arn: string | null;
  max_retry_attempts: number;
  max_event_age_seconds: number;
  dead_letter_arn: string | null;
  misfire_mode: 'skip' | 'once' | 'all';
  max_catch_up: number | null;
  action_after_completion: 'NONE' | 'DELETE';
  active_since: Date;
  decided_through: Date;
  next_fire_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export const scheduleArn = (group: string, name: string): string => `${SCHEDULE_ARN_PREFIX}${group}/${name}`;

function toView(r: ScheduleRow): ScheduleView {
  return {
    id: r.id,
    arn: scheduleArn(r.group_name, r.name),
    name: r.name,
    groupName: r.group_name,
    description: r.description,
    expression: r.expression,
    timezone: r.timezone,
    startDate: r.start_date,
    endDate: r.end_date,
    state: r.state,
    flexibleTimeWindow: r.flexible_window_minutes === null ? FLEXIBLE_TIME_WINDOW_OFF : { mode: 'FLEXIBLE', maximumWindowInMinutes: r.flexible_window_minutes },
    target: {
      functionName: r.target_function,
      qualifier: r.target_qualifier,
      input: r.target_input,
      roleArn: r.target_role_arn,
      retryPolicy: { maximumRetryAttempts: r.max_retry_attempts, maximumEventAgeInSeconds: r.max_event_age_seconds },
      deadLetterArn: r.dead_letter_arn,
    },
    misfirePolicy: r.misfire_mode === 'all' ? { mode: 'all', maxCatchUp: r.max_catch_up as number } : { mode: r.misfire_mode },
    actionAfterCompletion: r.action_after_completion,
    activeSince: r.active_since,
    decidedThrough: r.decided_through,
    nextFireAt: r.next_fire_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** What the change ledger keeps of a definition: everything a user set, nothing derived. */
function definitionOf(v: ScheduleView): Record<string, unknown> {
  return {
    id: v.id,
    description: v.description,
    expression: v.expression,
    timezone: v.timezone,
    startDate: v.startDate?.toISOString() ?? null,
    endDate: v.endDate?.toISOString() ?? null,
    state: v.state,
    flexibleTimeWindow: v.flexibleTimeWindow,
    target: v.target,
    misfirePolicy: v.misfirePolicy,
    actionAfterCompletion: v.actionAfterCompletion,
  };
}

/** The schedule as the tick computations see it. */
export function compiledOf(v: Pick<ScheduleView, 'id' | 'expression' | 'timezone' | 'startDate' | 'endDate' | 'activeSince' | 'flexibleTimeWindow'>): Schedule {
  return compileSchedule({
    id: v.id,
    expression: v.expression,
    timezone: v.timezone,
    startDate: v.startDate,
    endDate: v.endDate,
    activeSince: v.activeSince,
    flexibleTimeWindow: v.flexibleTimeWindow,
  });
}

const invalid = (field: string, reason: string, value: unknown) => new ScheduleValidationError(field, reason, value);

interface Checked {
  groupName: string;
  description: string | null;
  state: 'ENABLED' | 'DISABLED';
  flexible: FlexibleTimeWindow;
  misfire: MisfirePolicy;
  retry: RetryPolicy;
  qualifier: string | null;
  action: 'NONE' | 'DELETE';
}

/** Everything that does not need the clock: names, target, input, policies. */
function checkInput(input: ScheduleInput): Checked {
  if (typeof input.name !== 'string' || !SCHEDULE_NAME.test(input.name)) throw invalid('Name', `must match ${SCHEDULE_NAME.source}`, input.name);
  const groupName = input.groupName ?? DEFAULT_GROUP;
  if (!SCHEDULE_NAME.test(groupName)) throw invalid('GroupName', `must match ${SCHEDULE_NAME.source}`, groupName);
  if (input.description != null && (typeof input.description !== 'string' || input.description.length > 512)) {
    throw invalid('Description', 'must be at most 512 characters', input.description);
  }
  const state = input.state ?? 'ENABLED';
  if (state !== 'ENABLED' && state !== 'DISABLED') throw invalid('State', 'must be ENABLED or DISABLED', state);
  const flexible = input.flexibleTimeWindow ? checkFlexibleTimeWindow(input.flexibleTimeWindow) : FLEXIBLE_TIME_WINDOW_OFF;
  const misfire = input.misfirePolicy ? checkMisfirePolicy(input.misfirePolicy) : DEFAULT_MISFIRE_POLICY;
  const action = input.actionAfterCompletion ?? 'NONE';
  if (action !== 'NONE' && action !== 'DELETE') throw invalid('ActionAfterCompletion', 'must be NONE or DELETE', action);
  const t = input.target;
  if (!t || typeof t !== 'object') throw invalid('Target', 'is required', t);
  if (typeof t.functionName !== 'string' || !FUNCTION_NAME.test(t.functionName)) throw invalid('Target.Arn', 'must name a function (a Lambda function ARN or a function name)', t.functionName);
  const qualifier = t.qualifier === '$LATEST' ? null : (t.qualifier ?? null);
  if (qualifier !== null && !QUALIFIER.test(qualifier) && !isAliasName(qualifier)) {
    throw invalid('Target.Arn', 'the qualifier must be a version number, $LATEST or an alias name', qualifier);
  }
  const maximumRetryAttempts = t.retryPolicy?.maximumRetryAttempts ?? 185;
  const maximumEventAgeInSeconds = t.retryPolicy?.maximumEventAgeInSeconds ?? 86_400;
  if (!Number.isInteger(maximumRetryAttempts) || maximumRetryAttempts < 0 || maximumRetryAttempts > 185) {
    throw invalid('Target.RetryPolicy.MaximumRetryAttempts', 'must be a whole number 0–185', maximumRetryAttempts);
  }
  if (!Number.isInteger(maximumEventAgeInSeconds) || maximumEventAgeInSeconds < 60 || maximumEventAgeInSeconds > 86_400) {
    throw invalid('Target.RetryPolicy.MaximumEventAgeInSeconds', 'must be a whole number 60–86400', maximumEventAgeInSeconds);
  }
  if (t.input != null) {
    if (typeof t.input !== 'string' || t.input.length === 0 || t.input.length > MAX_INPUT_LENGTH) {
      throw invalid('Target.Input', `must be 1–${MAX_INPUT_LENGTH} characters`, t.input);
    }
    // a function receives JSON: the input must be JSON once the keywords are replaced
    try {
      JSON.parse(substituteContextAttributes(t.input, { scheduleArn: 'arn', scheduledTime: new Date(0), executionId: 'x', attemptNumber: 1 }));
    } catch {
      throw invalid('Target.Input', 'must be JSON once the context attributes are replaced (a function receives a JSON event)', t.input);
    }
  }
  return { groupName, description: input.description ?? null, state, flexible, misfire, retry: { maximumRetryAttempts, maximumEventAgeInSeconds }, qualifier, action };
}

/** The scheduler's clock: the database's now() plus the test offset (ledger.scheduler_clock). */
export async function schedulerNow(db: Executor): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`
    select now() + make_interval(secs => coalesce((select offset_ms from ledger.scheduler_clock), 0) / 1000.0) as now`.execute(db);
  return (rows[0] as { now: Date }).now;
}

/**
 * How far the scheduler is behind, in seconds: the scheduler's now minus the earliest
 * `next_fire_at` that has come (0 when nothing is due). What /metrics reports as
 * ledger_schedule_oldest_due_seconds (docs/schedules.md, "Watching the scheduler").
 */
export async function scheduleOldestDueSeconds(db: Executor): Promise<number> {
  const { rows } = await sql<{ s: number }>`
    with clock as (
      select now() + make_interval(secs => coalesce((select offset_ms from ledger.scheduler_clock), 0) / 1000.0) as now
    )
    select coalesce(extract(epoch from (select now from clock) - min(next_fire_at)), 0)::float8 as s
    from ledger.schedules where next_fire_at <= (select now from clock)`.execute(db);
  return Math.max(0, rows[0]?.s ?? 0);
}

/** Moves the scheduler's clock: the database's clock plus `offsetMs` (tests; docs/schedules.md). */
export async function setSchedulerClockOffset(db: Executor, offsetMs: number): Promise<void> {
  await sql`update ledger.scheduler_clock set offset_ms = ${Math.round(offsetMs)}`.execute(db);
}

/** The fire time of the first tick after `after`, or null when the schedule has none left. */
function nextFireAfter(schedule: Schedule, after: Date): Date | null {
  const [next] = nextTicks(schedule, after, 1);
  if (!next) return null;
  return new Date(next.getTime() + flexibleOffsetMs(schedule.id, next, schedule.flexibleTimeWindow));
}

export interface Actor {
  actor: string;
  requestId?: string | undefined;
}

export async function createSchedule(db: Db, input: ScheduleInput, by: Actor): Promise<ScheduleView> {
  const c = checkInput(input);
  return db.transaction().execute(async (tx) => {
    const now = await schedulerNow(tx);
    const id = uuidv7();
    const compiled = compileSchedule({
      id,
      expression: input.expression,
      timezone: input.timezone ?? null,
      startDate: input.startDate ?? null,
      endDate: input.endDate ?? null,
      activeSince: now,
      flexibleTimeWindow: c.flexible,
    });
    checkScheduleForWrite(compiled, now);
    // ticks after this instant belong to the schedule: for a rate() without StartDate the
    // anchor itself (now, rounded up to the second) is the first
    const decidedThrough = new Date(now.getTime() - 1);
    const { rows } = await sql<ScheduleRow>`
      insert into ledger.schedules (id, group_name, name, description, expression, timezone, start_date, end_date, state,
        flexible_window_minutes, target_function, target_qualifier, target_input, target_role_arn, max_retry_attempts,
        max_event_age_seconds, dead_letter_arn, misfire_mode, max_catch_up, action_after_completion, active_since,
        decided_through, next_fire_at)
      values (${id}, ${c.groupName}, ${input.name}, ${c.description}, ${compiled.expression.text}, ${compiled.timezone},
        ${compiled.startDate}, ${compiled.endDate}, ${c.state},
        ${c.flexible.mode === 'FLEXIBLE' ? c.flexible.maximumWindowInMinutes : null}, ${input.target.functionName}, ${c.qualifier},
        ${input.target.input ?? null}, ${input.target.roleArn ?? null}, ${c.retry.maximumRetryAttempts}, ${c.retry.maximumEventAgeInSeconds},
        ${input.target.deadLetterArn ?? null}, ${c.misfire.mode}, ${c.misfire.mode === 'all' ? c.misfire.maxCatchUp : null}, ${c.action},
        ${now}, ${decidedThrough}, ${nextFireAfter(compiled, decidedThrough) ?? now})
      on conflict (group_name, name) do nothing
      returning *`.execute(tx);
    // next_fire_at = now when no tick is left: the scheduler completes it (ActionAfterCompletion)
    const row = rows[0];
    if (!row) throw new LedgerError('ScheduleExists', `Schedule ${input.name} already exists in group ${c.groupName}.`);
    const view = toView(row);
    await appendChange(tx, { resourceType: 'schedule', resourceName: `${c.groupName}/${input.name}`, action: 'created', actor: by.actor, requestId: by.requestId, data: { before: null, after: definitionOf(view) } });
    return view;
  });
}

async function lockSchedule(tx: Executor, groupName: string, name: string): Promise<ScheduleRow> {
  const { rows } = await sql<ScheduleRow>`
    select * from ledger.schedules where group_name = ${groupName} and name = ${name} for update`.execute(tx);
  if (!rows[0]) throw new LedgerError('ScheduleNotFound', `Schedule ${name} does not exist in group ${groupName}.`);
  return rows[0];
}

/**
 * Replaces a definition, as UpdateSchedule does (what is not given takes its default).
 * Ticks of the old definition that came due since the scheduler last decided are recorded
 * as skipped (`disabled` if it was disabled, `end_date` if the new EndDate lies before them,
 * `updated` otherwise); the new one applies from now.
 */
export async function updateSchedule(db: Db, input: ScheduleInput, by: Actor): Promise<ScheduleView> {
  checkInput(input);
  return db.transaction().execute((tx) => updateInTx(tx, input, by));
}

/**
 * Enables or disables a schedule and nothing else, in one transaction with the read of its
 * definition, so an update committed meanwhile is not overwritten. As any update, a rate()
 * without StartDate counts from it; the state it already has records nothing.
 */
export async function setScheduleState(db: Db, groupName: string | null | undefined, name: string, state: 'ENABLED' | 'DISABLED', by: Actor): Promise<ScheduleView> {
  if (state !== 'ENABLED' && state !== 'DISABLED') throw invalid('State', 'must be ENABLED or DISABLED', state);
  return db.transaction().execute(async (tx) => {
    const old = toView(await lockSchedule(tx, groupName ?? DEFAULT_GROUP, name));
    if (old.state === state) return old;
    return updateInTx(tx, { ...inputOf(old), state }, by);
  });
}

/** A schedule's definition as the input that would write it again. */
function inputOf(v: ScheduleView): ScheduleInput {
  return {
    name: v.name,
    groupName: v.groupName,
    description: v.description,
    expression: v.expression,
    timezone: v.timezone,
    startDate: v.startDate,
    endDate: v.endDate,
    state: v.state,
    flexibleTimeWindow: v.flexibleTimeWindow,
    target: { ...v.target },
    misfirePolicy: v.misfirePolicy,
    actionAfterCompletion: v.actionAfterCompletion,
  };
}

async function updateInTx(tx: Executor, input: ScheduleInput, by: Actor): Promise<ScheduleView> {
  const c = checkInput(input);
  {
    const now = await schedulerNow(tx);
    const old = toView(await lockSchedule(tx, c.groupName, input.name));
    // a rate() without StartDate counts from this update, as a new definition
    const compiled = compileSchedule({
      id: old.id,
      expression: input.expression,
      timezone: input.timezone ?? null,
      startDate: input.startDate ?? null,
      endDate: input.endDate ?? null,
      activeSince: now,
      flexibleTimeWindow: c.flexible,
    });
    checkScheduleForWrite(compiled, now);
    const missed = ticksBetween(compiledOf(old), old.decidedThrough, now, 10_000);
    // a tick the new EndDate lies before is skipped for that (ticksAfter: a tick at EndDate still runs)
    const reasonOf = (t: Date): TickSkipReason =>
      old.state === 'DISABLED' ? 'disabled' : compiled.endDate && t.getTime() > compiled.endDate.getTime() ? 'end_date' : 'updated';
    await recordSkipped(tx, old, missed.map((t) => ({ scheduledTime: t, reason: reasonOf(t) })), now, by.actor);
    const decidedThrough = new Date(Math.max(now.getTime() - 1, old.decidedThrough.getTime(), ...missed.map((t) => t.getTime())));
    const { rows } = await sql<ScheduleRow>`
      update ledger.schedules set description = ${c.description}, expression = ${compiled.expression.text}, timezone = ${compiled.timezone},
        start_date = ${compiled.startDate}, end_date = ${compiled.endDate}, state = ${c.state},
        flexible_window_minutes = ${c.flexible.mode === 'FLEXIBLE' ? c.flexible.maximumWindowInMinutes : null},
        target_function = ${input.target.functionName}, target_qualifier = ${c.qualifier}, target_input = ${input.target.input ?? null},
        target_role_arn = ${input.target.roleArn ?? null}, max_retry_attempts = ${c.retry.maximumRetryAttempts},
        max_event_age_seconds = ${c.retry.maximumEventAgeInSeconds}, dead_letter_arn = ${input.target.deadLetterArn ?? null},
        misfire_mode = ${c.misfire.mode}, max_catch_up = ${c.misfire.mode === 'all' ? c.misfire.maxCatchUp : null},
        action_after_completion = ${c.action}, active_since = ${now}, decided_through = ${decidedThrough},
        next_fire_at = ${nextFireAfter(compiled, decidedThrough) ?? now}, updated_at = statement_timestamp()
      where id = ${old.id}
      returning *`.execute(tx);
    const view = toView(rows[0] as ScheduleRow);
    await appendChange(tx, { resourceType: 'schedule', resourceName: `${c.groupName}/${input.name}`, action: 'updated', actor: by.actor, requestId: by.requestId, data: { before: definitionOf(old), after: definitionOf(view) } });
    return view;
  }
}

export async function deleteSchedule(db: Db, groupName: string | null | undefined, name: string, by: Actor): Promise<ScheduleView> {
  const group = groupName ?? DEFAULT_GROUP;
  return db.transaction().execute(async (tx) => {
    const old = toView(await lockSchedule(tx, group, name));
    await removeSchedule(tx, old, 'deleted', by);
    return old;
  });
}

async function removeSchedule(tx: Executor, old: ScheduleView, action: string, by: Actor): Promise<void> {
  await sql`delete from ledger.schedules where id = ${old.id}`.execute(tx);
  await appendChange(tx, { resourceType: 'schedule', resourceName: `${old.groupName}/${old.name}`, action, actor: by.actor, requestId: by.requestId, data: { before: definitionOf(old), after: null } });
}

export async function getSchedule(db: Executor, groupName: string | null | undefined, name: string): Promise<ScheduleView | null> {
  const { rows } = await sql<ScheduleRow>`
    select * from ledger.schedules where group_name = ${groupName ?? DEFAULT_GROUP} and name = ${name}`.execute(db);
  return rows[0] ? toView(rows[0]) : null;
}

export async function requireSchedule(db: Executor, groupName: string | null | undefined, name: string): Promise<ScheduleView> {
  const s = await getSchedule(db, groupName, name);
  if (!s) throw new LedgerError('ScheduleNotFound', `Schedule ${name} does not exist in group ${groupName ?? DEFAULT_GROUP}.`);
  return s;
}

export interface ScheduleFilter {
  groupName?: string | null;
  namePrefix?: string | null;
  state?: 'ENABLED' | 'DISABLED' | null;
  /** names after this one (the page token) */
  after?: string | null;
  limit?: number;
}

/** By group and name. */
export async function listSchedules(db: Executor, f: ScheduleFilter = {}): Promise<ScheduleView[]> {
  const limit = Math.min(Math.max(f.limit ?? 100, 1), 1000);
  const { rows } = await sql<ScheduleRow>`
    select * from ledger.schedules
    where (${f.groupName ?? null}::text is null or group_name = ${f.groupName ?? null})
      and (${f.namePrefix ?? null}::text is null or starts_with(name, ${f.namePrefix ?? null}))
      and (${f.state ?? null}::text is null or state = ${f.state ?? null})
      and (${f.after ?? null}::text is null or (group_name || '/' || name) > ${f.after ?? null})
    order by group_name || '/' || name
    limit ${limit}`.execute(db);
  return rows.map(toView);
}

/** The next `count` ticks after the scheduler's clock (or `after`), with their fire times. */
export async function upcomingTicks(db: Executor, view: ScheduleView, count: number, after?: Date): Promise<{ scheduledTime: Date; fireAt: Date; flexibleOffsetMs: number }[]> {
  const from = after ?? new Date(Math.max((await schedulerNow(db)).getTime(), view.decidedThrough.getTime()));
  const schedule = compiledOf(view);
  return nextTicks(schedule, from, Math.min(Math.max(count, 1), 1000)).map((t) => {
    const offset = flexibleOffsetMs(view.id, t, view.flexibleTimeWindow);
    return { scheduledTime: t, fireAt: new Date(t.getTime() + offset), flexibleOffsetMs: offset };
  });
}

export interface TickRecord {
  scheduleId: string;
  scheduleName: string;
  groupName: string;
  scheduledTime: Date;
  outcome: 'fired' | 'skipped';
  skipReason: TickSkipReason | null;
  fireAt: Date | null;
  flexibleOffsetMs: number;
  late: boolean;
  invocationId: string | null;
  executionId: string | null;
  decidedAt: Date;
  decidedBy: string;
  recordedAt: Date;
  invocationStatus: string | null;
}

/** A schedule's recorded ticks, by name (deleted schedules too), oldest first. */
export async function listTicks(db: Executor, groupName: string | null | undefined, name: string, limit = 100): Promise<TickRecord[]> {
  const { rows } = await sql<Record<string, unknown>>`
    select t.*, i.status as invocation_status from ledger.schedule_ticks t
    left join ledger.invocations i on i.id = t.invocation_id
    where t.group_name = ${groupName ?? DEFAULT_GROUP} and t.schedule_name = ${name}
    order by t.scheduled_time, t.recorded_at
    limit ${Math.min(Math.max(limit, 1), 10_000)}`.execute(db);
  return rows.map((r) => ({
    scheduleId: r.schedule_id as string,
    scheduleName: r.schedule_name as string,
    groupName: r.group_name as string,
    scheduledTime: r.scheduled_time as Date,
    outcome: r.outcome as 'fired' | 'skipped',
    skipReason: r.skip_reason as TickSkipReason | null,
    fireAt: r.fire_at as Date | null,
    flexibleOffsetMs: r.flexible_offset_ms as number,
    late: r.late as boolean,
    invocationId: r.invocation_id as string | null,
    executionId: r.execution_id as string | null,
    decidedAt: r.decided_at as Date,
    decidedBy: r.decided_by as string,
    recordedAt: r.recorded_at as Date,
    invocationStatus: r.invocation_status as string | null,
  }));
}

async function recordSkipped(tx: Executor, s: ScheduleView, ticks: { scheduledTime: Date; reason: TickSkipReason }[], now: Date, by: string): Promise<void> {
  if (ticks.length === 0) return;
  await sql`
    insert into ledger.schedule_ticks (schedule_id, schedule_name, group_name, scheduled_time, outcome, skip_reason,
      fire_at, flexible_offset_ms, decided_at, decided_by)
    select ${s.id}, ${s.name}, ${s.groupName}, t, 'skipped', r,
      t + make_interval(secs => o / 1000.0), o, ${now}, ${by}
    from unnest(${ticks.map((t) => t.scheduledTime.toISOString())}::timestamptz[], ${ticks.map((t) => t.reason)}::text[],
      ${ticks.map((t) => flexibleOffsetMs(s.id, t.scheduledTime, s.flexibleTimeWindow))}::int[]) as x(t, r, o)`.execute(tx);
}

export interface DecideOptions {
  /** recorded as decided_by: the worker id */
  workerId: string;
  /** schedules looked at in one call (default 20) */
  limit?: number;
  /** see planDueTicks (default 60 s) */
  graceMs?: number;
  /** a schedule whose decision failed (it is tried again a minute later; the others go on) */
  onError?: (error: unknown, schedule: { group: string; name: string }) => void;
}

export interface DecideResult {
  /** schedules looked at */
  schedules: number;
  fired: number;
  skipped: number;
  /** schedules completed (no tick left) and deleted by ActionAfterCompletion DELETE */
  deleted: number;
  /** the earliest next fire time among the schedules decided (the loop may sleep until it) */
  nextFireAt: Date | null;
}

/**
 * The scheduler's step: up to `limit` due schedules, one transaction each. A schedule's row
 * is locked SKIP LOCKED, so concurrent workers share the due schedules instead of waiting
 * on each other; the ticks' primary key makes a second decision of a tick fail (and roll
 * back its invocation) should anything else ever try.
 */
export async function decideDueTicks(db: Db, o: DecideOptions): Promise<DecideResult> {
  const result: DecideResult = { schedules: 0, fired: 0, skipped: 0, deleted: 0, nextFireAt: null };
  const limit = o.limit ?? 20;
  for (let i = 0; i < limit; i++) {
    const step = await db.transaction().execute((tx) => decideOne(tx, o));
    if (!step) break;
    result.schedules++;
    result.fired += step.fired;
    result.skipped += step.skipped;
    if (step.deleted) result.deleted++;
    if (step.next && (!result.nextFireAt || step.next < result.nextFireAt)) result.nextFireAt = step.next;
  }
  return result;
}

async function decideOne(tx: Executor, o: DecideOptions): Promise<{ fired: number; skipped: number; deleted: boolean; next: Date | null } | null> {
  const { rows } = await sql<ScheduleRow & { clock: Date }>`
    with clock as (
      select now() + make_interval(secs => coalesce((select offset_ms from ledger.scheduler_clock), 0) / 1000.0) as clock
    )
    select s.*, clock.clock from ledger.schedules s, clock
    where s.next_fire_at is not null and s.next_fire_at <= clock.clock
    order by s.next_fire_at
    limit 1
    for update of s skip locked`.execute(tx);
  const row = rows[0];
  if (!row) return null;
  // a schedule that cannot be decided must not hold up the others, which come after it in
  // next_fire_at order: its work is rolled back and it is looked at again a minute later
  await sql`savepoint decide_schedule`.execute(tx);
  try {
    return await decideLocked(tx, row, o);
  } catch (e) {
    await sql`rollback to savepoint decide_schedule`.execute(tx);
    await sql`update ledger.schedules set next_fire_at = ${new Date(row.clock.getTime() + RETRY_UNDECIDABLE_MS)} where id = ${row.id}`.execute(tx);
    o.onError?.(e, { group: row.group_name, name: row.name });
    return { fired: 0, skipped: 0, deleted: false, next: null };
  }
}

/** How long a schedule whose decision failed waits before it is tried again. */
const RETRY_UNDECIDABLE_MS = 60_000;

async function decideLocked(tx: Executor, row: ScheduleRow & { clock: Date }, o: DecideOptions): Promise<{ fired: number; skipped: number; deleted: boolean; next: Date | null }> {
  const now = row.clock;
  const view = toView(row);
  const schedule = compiledOf(view);

  // which due ticks are decided now, in scheduled order; a run whose flexible fire time is
  // still ahead stops the walk (it and what follows are decided later)
  type Decided = { scheduledTime: Date; run?: { fireAt: Date; offsetMs: number; late: boolean }; skip?: TickSkipReason };
  const decided: Decided[] = [];
  let pendingFireAt: Date | null = null;
  let more = false;
  if (view.state === 'DISABLED') {
    const due = ticksBetween(schedule, view.decidedThrough, now, 1000);
    for (const t of due) decided.push({ scheduledTime: t, skip: 'disabled' });
    more = due.length === 1000;
  } else {
    const plan = planDueTicks(schedule, { after: view.decidedThrough, now, policy: view.misfirePolicy, ...(o.graceMs !== undefined ? { graceMs: o.graceMs } : {}), pageSize: 1000 });
    const all: Decided[] = [
      ...plan.run.map((r) => ({ scheduledTime: r.scheduledTime, run: { fireAt: r.fireAt, offsetMs: r.flexibleOffsetMs, late: r.late } })),
      ...plan.skipped.map((s) => ({ scheduledTime: s.scheduledTime, skip: s.reason })),
    ].sort((a, b) => a.scheduledTime.getTime() - b.scheduledTime.getTime());
    for (const d of all) {
      if (d.run && d.run.fireAt.getTime() > now.getTime()) {
        pendingFireAt = d.run.fireAt;
        break;
      }
      decided.push(d);
    }
    more = plan.resumeAfter !== null && pendingFireAt === null;
  }

  const runs = decided.filter((d) => d.run);
  const skips = decided.filter((d) => d.skip);
  let fired = 0;
  if (runs.length > 0) {
    const routed = await routeTicks(tx, view.target, runs.length);
    if (!routed) {
      for (const r of runs) skips.push({ scheduledTime: r.scheduledTime, skip: 'target_missing' });
    } else {
      const accepted = await acceptInvocations(
        tx,
        runs.map((r, i) => {
          const input = tickInputOf(view, r.scheduledTime);
          return {
            fn: routed.versions[i] as FunctionVersion,
            ...(routed.alias ? { alias: routed.alias } : {}),
            invocationType: 'async' as const,
            // attempt 1's event; each attempt's is rendered from scheduleInput by the worker
            payload: input ? tickEvent(input, 1) : {},
            idempotencyKey: idempotencyKeyFor(view.id, r.scheduledTime),
            // the schedule's RetryPolicy governs the invocation, not the function's settings
            retryPolicy: { maxRetries: view.target.retryPolicy.maximumRetryAttempts, maxEventAgeSeconds: view.target.retryPolicy.maximumEventAgeInSeconds },
            ...(input ? { scheduleInput: input } : {}),
          };
        }),
      );
      await sql`
        insert into ledger.schedule_ticks (schedule_id, schedule_name, group_name, scheduled_time, outcome, fire_at,
          flexible_offset_ms, late, invocation_id, execution_id, decided_at, decided_by)
        select ${view.id}, ${view.name}, ${view.groupName}, t, 'fired', f, o, l, inv, ex, ${now}, ${o.workerId}
        from unnest(${runs.map((r) => r.scheduledTime.toISOString())}::timestamptz[], ${runs.map((r) => r.run?.fireAt.toISOString())}::timestamptz[],
          ${runs.map((r) => r.run?.offsetMs)}::int[], ${runs.map((r) => r.run?.late)}::boolean[],
          ${accepted.map((a) => a.invocationId)}::uuid[], ${runs.map((r) => executionIdFor(view.id, r.scheduledTime))}::text[])
          as x(t, f, o, l, inv, ex)`.execute(tx);
      fired = runs.length;
    }
  }
  await recordSkipped(tx, view, skips.map((s) => ({ scheduledTime: s.scheduledTime, reason: s.skip as TickSkipReason })), now, o.workerId);

  const last = decided.at(-1);
  const decidedThrough = last ? last.scheduledTime : view.decidedThrough;
  const next = more ? now : (pendingFireAt ?? nextFireAfter(schedule, decidedThrough));
  if (next === null && view.actionAfterCompletion === 'DELETE') {
    // completed: no tick is left (an at() that fired, an EndDate passed)
    await removeSchedule(tx, view, 'deleted', { actor: 'scheduler' });
    return { fired, skipped: skips.length, deleted: true, next: null };
  }
  await sql`update ledger.schedules set decided_through = ${decidedThrough}, next_fire_at = ${next} where id = ${view.id}`.execute(tx);
  return { fired, skipped: skips.length, deleted: false, next };
}

/**
 * The function version each of `n` ticks runs: the target's version or $LATEST, or, for an
 * alias, a version drawn per tick by its weights as an invoke through it is
 * (docs/schedules.md#managing-schedules). Null when the function, version or alias (or a
 * version it routes to) does not exist.
 */
async function routeTicks(tx: Executor, target: ScheduleView['target'], n: number): Promise<{ alias?: string; versions: FunctionVersion[] } | null> {
  const q = target.qualifier;
  if (q === null || QUALIFIER.test(q)) {
    const fn = await getFunction(tx, target.functionName, q === null ? undefined : Number(q));
    return fn ? { versions: Array.from({ length: n }, () => fn) } : null;
  }
  const alias = await getAlias(tx, target.functionName, q).catch((e: unknown) => {
    if (e instanceof LedgerError && e.code === 'FunctionNotFound') return null;
    throw e;
  });
  if (!alias) return null;
  const byVersion = new Map<number, FunctionVersion | null>();
  const versions: FunctionVersion[] = [];
  for (let i = 0; i < n; i++) {
    const v = pickAliasVersion(alias, Math.random());
    if (!byVersion.has(v)) byVersion.set(v, await getFunction(tx, target.functionName, v));
    const fn = byVersion.get(v);
    if (!fn) return null;
    versions.push(fn);
  }
  return { alias: q, versions };
}

/** What every attempt of a tick's invocation renders its event from; null: no Input (the event is {}). */
function tickInputOf(view: ScheduleView, scheduledTime: Date): TickInput | null {
  if (view.target.input === null) return null;
  return { template: view.target.input, scheduleArn: view.arn, scheduledTime: formatScheduledTime(scheduledTime), executionId: executionIdFor(view.id, scheduledTime) };
}

export { formatScheduledTime };

/** The group of the schedules that function files declare (`export const schedule`). */
export const FUNCTIONS_DIR_GROUP = 'functions-dir';

/**
 * Creates the schedule, or replaces it when its definition differs; an unchanged one is
 * left alone, so that a restart neither moves a rate()'s anchor nor writes a change.
 */
export async function upsertSchedule(db: Db, input: ScheduleInput, by: Actor): Promise<'created' | 'updated' | 'unchanged'> {
  const existing = await getSchedule(db, input.groupName, input.name);
  if (!existing) {
    try {
      await createSchedule(db, input, by);
      return 'created';
    } catch (e) {
      // another process starting at the same time created it
      if (e instanceof LedgerError && e.code === 'ScheduleExists') return 'unchanged';
      throw e;
    }
  }
  const c = checkInput(input);
  const compiled = compileSchedule({ id: existing.id, expression: input.expression, timezone: input.timezone ?? null, startDate: input.startDate ?? null, endDate: input.endDate ?? null, activeSince: existing.activeSince, flexibleTimeWindow: c.flexible });
  const wanted: Record<string, unknown> = {
    ...definitionOf(existing),
    description: c.description,
    expression: compiled.expression.text,
    timezone: compiled.timezone,
    startDate: compiled.startDate?.toISOString() ?? null,
    endDate: compiled.endDate?.toISOString() ?? null,
    state: c.state,
    flexibleTimeWindow: c.flexible,
    target: { functionName: input.target.functionName, qualifier: c.qualifier, input: input.target.input ?? null, roleArn: input.target.roleArn ?? null, retryPolicy: c.retry, deadLetterArn: input.target.deadLetterArn ?? null },
    misfirePolicy: c.misfire,
    actionAfterCompletion: c.action,
  };
  if (JSON.stringify(wanted) === JSON.stringify(definitionOf(existing))) return 'unchanged';
  await updateSchedule(db, input, by);
  return 'updated';
}
