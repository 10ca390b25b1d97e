// Read models over the projections for the query side of the edges: pages of
// invocations (keyset on accepted_at desc, id desc), dead letters, function stats.
// Nothing here writes; every list is bounded by the caller's page size.
import { sql, type SqlBool, type Expression } from 'kysely';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { LedgerError } from './errors.ts';
import type { InvocationState, InvocationStatus, InvocationType } from './lifecycle.ts';
import type { Executor } from './schema.ts';
import { stateFromRow } from './writer.ts';

export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;

export interface InvocationFilter {
  functionName?: string | null;
  status?: InvocationStatus | null;
  type?: InvocationType | null;
  acceptedAfter?: Date | null;
  acceptedBefore?: Date | null;
  errorType?: string | null;
  idempotencyKey?: string | null;
  /** the W3C trace id in the `accepted` event's traceparent (32 hex digits; docs/observability.md) */
  traceId?: string | null;
}

export interface PageRequest {
  first?: number | null;
  after?: string | null;
}

export interface InvocationPage {
  items: { cursor: string; node: InvocationState }[];
  hasNextPage: boolean;
}

/** Position of a row in the (accepted_at desc, id desc) order; opaque to clients. */
interface Keyset {
  /** accepted_at as PostgreSQL prints it in UTC with microseconds: JS Dates would lose them */
  at: string;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

const KEYSET_SHAPE = [AT, UUID] as const;

function encodeKeyset(k: Keyset): string {
  return encodeCursor([k.at, k.id]);
}

function decodeKeyset(cursor: string): Keyset {
  const [at, id] = decodeCursor(cursor, KEYSET_SHAPE) as [string, string];
  return { at, id };
}

export function pageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
    throw new LedgerError('InvalidParameter', `first must be between 0 and ${MAX_PAGE_SIZE}, got ${first}`);
  }
  return first;
}

const UNFINISHED: ReadonlySet<string> = new Set(['queued', 'running', 'retry_scheduled']);

function conditions(filter: InvocationFilter, after: Keyset | null): Expression<SqlBool>[] {
  const where: Expression<SqlBool>[] = [];
  if (filter.functionName) where.push(sql<SqlBool>`i.function_name = ${filter.functionName}`);
  if (filter.status) where.push(sql<SqlBool>`i.status = ${filter.status}`);
  // the implied conditions the indexes are written for (migrations/0034): dead letters by
  // their reason, unfinished invocations by their queue row
  if (filter.status === 'dead_lettered') where.push(sql<SqlBool>`i.dead_letter_reason is not null`);
  else if (filter.status && UNFINISHED.has(filter.status)) where.push(sql<SqlBool>`i.id in (select invocation_id from ledger.queue)`);
  if (filter.type) where.push(sql<SqlBool>`i.invocation_type = ${filter.type}`);
  if (filter.acceptedAfter) where.push(sql<SqlBool>`i.accepted_at >= ${filter.acceptedAfter}`);
  if (filter.acceptedBefore) where.push(sql<SqlBool>`i.accepted_at < ${filter.acceptedBefore}`);
  if (filter.errorType) where.push(sql<SqlBool>`i.error_type = ${filter.errorType}`);
  if (filter.idempotencyKey) where.push(sql<SqlBool>`i.idempotency_key = ${filter.idempotencyKey}`);
  // the expression and predicate of migrations/0037's index, word for word. `= any(array(…))`,
  // not `in (…)`: the few ids are found first, where `in` let the planner walk every
  // invocation newest first looking for them (2 s instead of 0.2 ms on 300,000; 0037)
  if (filter.traceId) {
    where.push(sql<SqlBool>`i.id = any(array(
      select e.invocation_id from ledger.events e
      where e.type = 'accepted' and e.data ? 'traceparent'
        and split_part(e.data ->> 'traceparent', '-', 2) = ${filter.traceId.toLowerCase()}))`);
  }
  if (after) where.push(sql<SqlBool>`(i.accepted_at, i.id) < (${after.at}::timestamptz, ${after.id}::uuid)`);
  return where;
}

const and = (where: Expression<SqlBool>[]) => (where.length === 0 ? sql`true` : sql.join(where, sql` and `));

/**
 * One page of invocations, newest first. Reads one row past the page to know whether
 * another page follows; one query whatever the filter.
 */
export async function listInvocations(db: Executor, filter: InvocationFilter, page: PageRequest = {}): Promise<InvocationPage> {
  const first = pageSize(page.first);
  const after = page.after ? decodeKeyset(page.after) : null;
  if (first === 0) return { items: [], hasNextPage: false };
  const { rows } = await sql<Parameters<typeof stateFromRow>[0] & { cursor_at: string }>`
    select i.*, q.run_at, q.locked_by,
           to_char(i.accepted_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at
    from ledger.invocations i left join ledger.queue q on q.invocation_id = i.id
    where ${and(conditions(filter, after))}
    order by i.accepted_at desc, i.id desc
    limit ${first + 1}`.execute(db);
  const items = rows.slice(0, first).map((r) => ({ cursor: encodeKeyset({ at: r.cursor_at, id: r.id }), node: stateFromRow(r) }));
  return { items, hasNextPage: rows.length > first };
}

/** How many invocations match the filter (asked only when a client selects totalCount). */
export async function countInvocations(db: Executor, filter: InvocationFilter): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from ledger.invocations i where ${and(conditions(filter, null))}`.execute(db);
  return rows[0]?.n ?? 0;
}

/** Whether anything newer than the cursor's row matches (Relay's hasPreviousPage for `after`). */
export async function hasInvocationsBefore(db: Executor, filter: InvocationFilter, cursor: string): Promise<boolean> {
  const k = decodeKeyset(cursor);
  const { rows } = await sql<{ any: boolean }>`
    select exists (
      select 1 from ledger.invocations i
      where ${and(conditions(filter, null))} and (i.accepted_at, i.id) >= (${k.at}::timestamptz, ${k.id}::uuid)
    ) as any`.execute(db);
  return rows[0]?.any ?? false;
}

export interface FunctionStats {
  functionName: string;
  since: Date;
  invocations: number;
  queued: number;
  running: number;
  retryScheduled: number;
  succeeded: number;
  failed: number;
  deadLettered: number;
  cancelled: number;
  /** attempts that ended in `failed` (retried ones included) */
  failedAttempts: number;
  /** succeeded / (succeeded + failed + dead lettered); null while nothing has finished */
  successRate: number | null;
  p50DurationMs: number | null;
  p95DurationMs: number | null;
  p99DurationMs: number | null;
}

/**
 * Outcome counts of the invocations accepted since `since`, and the percentiles of the
 * attempt durations (`succeeded`/`failed` events' durationMs) recorded since then.
 */
export async function functionStats(db: Executor, functionName: string, since: Date): Promise<FunctionStats> {
  const { rows } = await sql<{
    invocations: number; queued: number; running: number; retry_scheduled: number; succeeded: number;
    failed: number; dead_lettered: number; cancelled: number;
  }>`
    select count(*)::int as invocations,
           count(*) filter (where status = 'queued')::int as queued,
           count(*) filter (where status = 'running')::int as running,
           count(*) filter (where status = 'retry_scheduled')::int as retry_scheduled,
           count(*) filter (where status = 'succeeded')::int as succeeded,
           count(*) filter (where status = 'failed')::int as failed,
           count(*) filter (where status = 'dead_lettered')::int as dead_lettered,
           count(*) filter (where status = 'cancelled')::int as cancelled
    from ledger.invocations
    where function_name = ${functionName} and accepted_at >= ${since}`.execute(db);
  const { rows: durations } = await sql<{ failed_attempts: number; p: (number | null)[] | null }>`
    select count(*) filter (where e.type = 'failed')::int as failed_attempts,
           percentile_cont(array[0.5, 0.95, 0.99]) within group (order by (e.data->>'durationMs')::float8) as p
    from ledger.invocations i join ledger.events e on e.invocation_id = i.id
    where i.function_name = ${functionName} and i.accepted_at >= ${since}
      and e.type in ('succeeded', 'failed') and e.occurred_at >= ${since}`.execute(db);
  const c = rows[0] as NonNullable<(typeof rows)[0]>;
  const d = durations[0];
  const finished = c.succeeded + c.failed + c.dead_lettered;
  const p = (i: number) => {
    const v = d?.p?.[i];
    return v === null || v === undefined ? null : Math.round(v * 1000) / 1000;
  };
  return {
    functionName,
    since,
    invocations: c.invocations,
    queued: c.queued,
    running: c.running,
    retryScheduled: c.retry_scheduled,
    succeeded: c.succeeded,
    failed: c.failed,
    deadLettered: c.dead_lettered,
    cancelled: c.cancelled,
    failedAttempts: d?.failed_attempts ?? 0,
    successRate: finished === 0 ? null : c.succeeded / finished,
    p50DurationMs: p(0),
    p95DurationMs: p(1),
    p99DurationMs: p(2),
  };
}
