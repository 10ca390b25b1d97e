// Read models for watching the ledger: invocation statistics over time, what is running
// and waiting right now, dead letters grouped by cause, and how far queues lag behind.
// Nothing here writes. The console and GraphQL read these (docs/graphql.md).
import { sql } from 'kysely';
import { LedgerError } from './errors.ts';
import type { DeadLetterReason } from './lifecycle.ts';
import type { Executor } from './schema.ts';

/** Buckets one statistics read may return per series (a week in 10-minute buckets). */
export const MAX_STATS_BUCKETS = 1_008;

export interface StatsRequest {
  since: Date;
  /** default now */
  until?: Date;
  bucketSeconds: number;
  /** one function only; every function and their total otherwise */
  functionName?: string | null;
}

export interface StatsPoint {
  /** start of the bucket; buckets are aligned on `since` */
  start: Date;
  /** `accepted` events */
  accepted: number;
  /** attempts that ended `succeeded` */
  succeeded: number;
  /** attempts that ended `failed` (retried ones included) */
  failedAttempts: number;
  deadLettered: number;
  /** failed / (succeeded + failed) attempts; null when no attempt ended in the bucket */
  errorRate: number | null;
  p50DurationMs: number | null;
  p95DurationMs: number | null;
  p99DurationMs: number | null;
}

export interface StatsSeries {
  /** null: every function together */
  functionName: string | null;
  /** only the buckets in which something happened, oldest first */
  points: StatsPoint[];
}

export interface InvocationStats {
  since: Date;
  until: Date;
  bucketSeconds: number;
  total: StatsSeries;
  /** one series per function that had events in the range, busiest first */
  functions: StatsSeries[];
}

interface StatsRow {
  start: Date;
  function_name: string | null;
  is_total: boolean;
  accepted: number;
  succeeded: number;
  failed_attempts: number;
  dead_lettered: number;
  p: (number | null)[] | null;
}

const round3 = (v: number | null | undefined) => (v === null || v === undefined ? null : Math.round(v * 1000) / 1000);

/** A range of whole buckets that one read may return (at most MAX_STATS_BUCKETS). */
function assertBuckets(since: Date, until: Date, bucketSeconds: number): void {
  if (!Number.isInteger(bucketSeconds) || bucketSeconds < 1) {
    throw new LedgerError('InvalidParameter', `bucketSeconds must be a whole number of seconds ≥ 1, got ${bucketSeconds}`);
  }
  if (!(until.getTime() > since.getTime())) throw new LedgerError('InvalidParameter', 'until must be after since');
  const buckets = Math.ceil((until.getTime() - since.getTime()) / 1000 / bucketSeconds);
  if (buckets > MAX_STATS_BUCKETS) {
    throw new LedgerError('InvalidParameter', `${buckets} buckets asked for; at most ${MAX_STATS_BUCKETS} (widen bucketSeconds or narrow the range)`);
  }
}

/**
 * What happened per bucket of time, per function and in total, read from the events
 * (attempt durations are the `durationMs` of `succeeded`/`failed`). One statement.
 */
export async function invocationStats(db: Executor, req: StatsRequest): Promise<InvocationStats> {
  const until = req.until ?? new Date();
  const { since, bucketSeconds } = req;
  assertBuckets(since, until, bucketSeconds);
  const fn = req.functionName ?? null;
  const { rows } = await sql<StatsRow>`
    with ev as (
      select i.function_name, e.type, e.occurred_at, (e.data ->> 'durationMs')::float8 as duration_ms
      from ledger.events e join ledger.invocations i on i.id = e.invocation_id
      where e.occurred_at >= ${since} and e.occurred_at < ${until}
        and e.type in ('accepted', 'succeeded', 'failed', 'dead_lettered')
        and (${fn}::text is null or i.function_name = ${fn}::text)
        -- live traffic only: a replay run has its own report (docs/replay.md)
        and i.invocation_type <> 'replay'
    )
    select date_bin(make_interval(secs => ${bucketSeconds}), occurred_at, ${since}::timestamptz) as start,
           function_name,
           grouping(function_name) = 1 as is_total,
           count(*) filter (where type = 'accepted')::int as accepted,
           count(*) filter (where type = 'succeeded')::int as succeeded,
           count(*) filter (where type = 'failed')::int as failed_attempts,
           count(*) filter (where type = 'dead_lettered')::int as dead_lettered,
           percentile_cont(array[0.5, 0.95, 0.99]::float8[]) within group (order by duration_ms)
             filter (where type in ('succeeded', 'failed')) as p
    from ev
    group by grouping sets ((1, function_name), (1))
    order by 1`.execute(db);

  const total: StatsSeries = { functionName: fn, points: [] };
  const byFunction = new Map<string, { series: StatsSeries; accepted: number }>();
  for (const r of rows) {
    const ended = r.succeeded + r.failed_attempts;
    const point: StatsPoint = {
      start: r.start,
      accepted: r.accepted,
      succeeded: r.succeeded,
      failedAttempts: r.failed_attempts,
      deadLettered: r.dead_lettered,
      errorRate: ended === 0 ? null : r.failed_attempts / ended,
      p50DurationMs: round3(r.p?.[0]),
      p95DurationMs: round3(r.p?.[1]),
      p99DurationMs: round3(r.p?.[2]),
    };
    if (r.is_total) {
      total.points.push(point);
      continue;
    }
    const name = r.function_name as string;
    let entry = byFunction.get(name);
    if (!entry) byFunction.set(name, (entry = { series: { functionName: name, points: [] }, accepted: 0 }));
    entry.series.points.push(point);
    entry.accepted += r.accepted + ended;
  }
  const functions = [...byFunction.values()]
    .sort((a, b) => b.accepted - a.accepted || (a.series.functionName as string).localeCompare(b.series.functionName as string))
    .map((e) => e.series);
  return { since, until, bucketSeconds, total, functions };
}

export interface OldestDue {
  invocationId: string;
  functionName: string;
  /** when it became due (its run_at) */
  dueSince: Date;
  waitingSeconds: number;
}

export interface Activity {
  at: Date;
  /** attempts holding a lease now (sync, async and poll) */
  runningAttempts: number;
  /** async invocations due and waiting for a worker */
  dueInvocations: number;
  /** async invocations waiting for a retry or throttle backoff to pass */
  scheduledInvocations: number;
  oldestDue: OldestDue | null;
}

/** What the queue table says right now (the same reading as the worker's queue gauges). */
export async function currentActivity(db: Executor): Promise<Activity> {
  const { rows } = await sql<{ at: Date; running: number; due: number; scheduled: number }>`
    select now() as at,
           count(*) filter (where locked_by is not null)::int as running,
           count(*) filter (where locked_by is null and run_at <= now())::int as due,
           count(*) filter (where locked_by is null and run_at > now())::int as scheduled
    from ledger.queue where (invocation_type = 'async' or locked_by is not null) and invocation_type <> 'replay'`.execute(db);
  const { rows: oldest } = await sql<{ invocation_id: string; function_name: string; run_at: Date; waiting: number }>`
    select invocation_id, function_name, run_at, extract(epoch from now() - run_at)::float8 as waiting
    from ledger.queue
    where locked_by is null and run_at <= now() and invocation_type = 'async'
    order by run_at limit 1`.execute(db);
  const c = rows[0] as NonNullable<(typeof rows)[0]>;
  const o = oldest[0];
  return {
    at: c.at,
    runningAttempts: c.running,
    dueInvocations: c.due,
    scheduledInvocations: c.scheduled,
    oldestDue: o ? { invocationId: o.invocation_id, functionName: o.function_name, dueSince: o.run_at, waitingSeconds: o.waiting } : null,
  };
}

export interface DeadLetterGroup {
  functionName: string;
  /** the last failed attempt's errorType; null when none failed (e.g. EventAgeExceeded before a try) */
  errorType: string | null;
  count: number;
  reasons: DeadLetterReason[];
  oldestAt: Date;
  newestAt: Date;
}

/** Invocations dead-lettered now (not redriven since), by function and error type, largest first. */
export async function deadLetterGroups(db: Executor, limit = 200): Promise<DeadLetterGroup[]> {
  const { rows } = await sql<{ function_name: string; error_type: string | null; n: number; reasons: DeadLetterReason[]; oldest: Date; newest: Date }>`
    select function_name, error_type, count(*)::int as n,
           array_agg(distinct dead_letter_reason order by dead_letter_reason) filter (where dead_letter_reason is not null) as reasons,
           min(finished_at) as oldest, max(finished_at) as newest
    from ledger.invocations where status = 'dead_lettered' and dead_letter_reason is not null -- its index (migrations/0034)
    group by function_name, error_type
    order by n desc, function_name, error_type nulls first
    limit ${limit}`.execute(db);
  return rows.map((r) => ({
    functionName: r.function_name,
    errorType: r.error_type,
    count: r.n,
    reasons: r.reasons ?? [],
    oldestAt: r.oldest,
    newestAt: r.newest,
  }));
}

/**
 * SQS's ApproximateAgeOfOldestMessage: seconds since the oldest message not yet deleted
 * or dead-lettered was sent, per queue (absent: the queue holds no such message).
 */
export async function oldestMessageAges(db: Executor, queueNames: readonly string[]): Promise<Map<string, number>> {
  if (queueNames.length === 0) return new Map();
  const { rows } = await sql<{ queue_name: string; age: number }>`
    select queue_name, extract(epoch from now() - min(sent_at))::float8 as age
    from ledger.messages
    where queue_name = any(${queueNames}::text[]) and dead_lettered_at is null
    group by queue_name`.execute(db);
  return new Map(rows.map((r) => [r.queue_name, Math.max(0, r.age)]));
}

export interface DeadLetterReasonPoint {
  /** start of the bucket; buckets are aligned on `since` */
  start: Date;
  functionName: string;
  reason: DeadLetterReason;
  count: number;
}

/**
 * `dead_lettered` events per bucket, function and reason. The ledger records no event for
 * a throttle (a sync 429 or an async claim pushed back over reservedConcurrency writes
 * nothing, docs/worker.md); what it records of throttling is the dead letter it can end
 * in: `ZeroReservedConcurrency`, or `EventAgeExceeded` after waiting too long.
 */
export async function deadLettersByReason(db: Executor, req: StatsRequest): Promise<DeadLetterReasonPoint[]> {
  const until = req.until ?? new Date();
  const { since, bucketSeconds } = req;
  assertBuckets(since, until, bucketSeconds);
  const fn = req.functionName ?? null;
  const { rows } = await sql<{ start: Date; function_name: string; reason: DeadLetterReason; count: number }>`
    select date_bin(make_interval(secs => ${bucketSeconds}), e.occurred_at, ${since}::timestamptz) as start,
           i.function_name, e.data ->> 'reason' as reason, count(*)::int as count
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id
    where e.occurred_at >= ${since} and e.occurred_at < ${until}
      and e.type = 'dead_lettered'
      and (${fn}::text is null or i.function_name = ${fn}::text)
      and i.invocation_type <> 'replay'
    group by 1, 2, 3
    order by 1, 2, 3`.execute(db);
  return rows.map((r) => ({ start: r.start, functionName: r.function_name, reason: r.reason, count: r.count }));
}

/** The queue table by state, for the worker's gauges (docs/observability.md). */
export interface QueueDepth {
  /** async work waiting for a worker */
  due: number;
  /** async work waiting for its retry or throttle backoff */
  scheduled: number;
  /** leased attempts of any kind but replays */
  running: number;
  /** seconds the oldest due async invocation has waited */
  oldest: number;
}

export async function queueDepth(db: Executor): Promise<QueueDepth> {
  const { rows } = await sql<QueueDepth>`
    select count(*) filter (where locked_by is null and run_at <= now())::int as due,
           count(*) filter (where locked_by is null and run_at > now())::int as scheduled,
           count(*) filter (where locked_by is not null)::int as running,
           coalesce(extract(epoch from now() - min(run_at) filter (where locked_by is null and run_at <= now())), 0)::float8 as oldest
    from ledger.queue where (invocation_type = 'async' or locked_by is not null) and invocation_type <> 'replay'`.execute(db);
  return rows[0] as QueueDepth;
}

/** How far one enabled event source mapping is behind its queue. */
export interface MappingLag {
  queue: string;
  function: string;
  /** visible messages waiting */
  visible: number;
  /** age in seconds of the oldest visible message (0: caught up) */
  lag: number;
}

export async function mappingLags(db: Executor): Promise<MappingLag[]> {
  const { rows } = await sql<MappingLag>`
    select m.queue_name as queue, m.function_name as function,
           count(q.id) filter (where q.visible_at <= now())::int as visible,
           coalesce(extract(epoch from now() - min(q.sent_at) filter (where q.visible_at <= now())), 0)::float8 as lag
    from ledger.event_source_mappings m
    left join ledger.messages q on q.queue_name = m.queue_name and q.dead_lettered_at is null
    where m.enabled
    group by m.queue_name, m.function_name`.execute(db);
  return rows;
}
