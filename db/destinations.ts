// The destination outbox (`ledger.destination_deliveries`): one row per destination an
// invocation's terminal state goes to, written in the transaction of that terminal
// event; URL rows are then claimed and POSTed by any worker (apps/worker/destinations.ts).
import { sql } from 'kysely';
import type { FunctionErrorData } from './lifecycle.ts';
import type { Executor } from './schema.ts';

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface NewDelivery {
  invocationId: string;
  invokeCount: number;
  condition: string;
  destination: string;
  record: unknown;
  status: DeliveryStatus;
  targetInvocationId: string | null;
  lastError: string | null;
}

export interface DestinationDeliveryRow {
  id: string;
  invocation_id: string;
  condition: string;
  destination: string;
  record: unknown;
  status: DeliveryStatus;
  attempts: number;
  last_error: string | null;
  last_status_code: number | null;
  target_invocation_id: string | null;
  next_attempt_at: Date;
  created_at: Date;
  delivered_at: Date | null;
}

/**
 * The key deliveries are isolated by: a URL's scheme and authority, lower-cased (the same
 * expression in SQL and here, so the worker's per-target bookkeeping matches its claims).
 */
export const TARGET_SQL = sql<string>`lower(coalesce(substring(destination from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'), destination))`;
export function targetOf(destination: string): string {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(destination);
  return (m ? m[0] : destination).toLowerCase();
}

/** In the terminal event's transaction; a row already there (same invocation, count, destination) is kept. */
export async function insertDeliveries(tx: Executor, rows: readonly NewDelivery[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    insert into ledger.destination_deliveries (invocation_id, invoke_count, condition, destination, record, status,
      attempts, target_invocation_id, last_error, delivered_at)
    select id, cnt, cond, dest, rec, st, case when st = 'pending' then 0 else 1 end, tgt, err,
           case when st = 'delivered' then now() end
    from unnest(${rows.map((r) => r.invocationId)}::uuid[], ${rows.map((r) => r.invokeCount)}::int[],
      ${rows.map((r) => r.condition)}::text[], ${rows.map((r) => r.destination)}::text[],
      ${rows.map((r) => JSON.stringify(r.record))}::jsonb[], ${rows.map((r) => r.status)}::text[],
      ${rows.map((r) => r.targetInvocationId)}::uuid[], ${rows.map((r) => r.lastError)}::text[])
      as t(id, cnt, cond, dest, rec, st, tgt, err)
    on conflict (invocation_id, invoke_count, destination) do nothing`.execute(tx);
}

/** The last recorded error of each invocation (for records of dead letters without an attempt of their own). */
export async function lastErrors(tx: Executor, ids: readonly string[]): Promise<Map<string, FunctionErrorData>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ invocation_id: string; error: FunctionErrorData }>`
    select distinct on (invocation_id) invocation_id, data -> 'error' as error from ledger.events
    where invocation_id = any(${ids}::uuid[]) and type = 'failed' order by invocation_id, seq desc`.execute(tx);
  return new Map(rows.map((r) => [r.invocation_id, r.error]));
}

/** Each invocation's chain depth (absent: 0) and trace context, from its `accepted` event. */
export async function chainDepths(
  tx: Executor,
  ids: readonly string[],
): Promise<Map<string, { depth: number; trace?: { traceparent: string; tracestate?: string } }>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ invocation_id: string; depth: number | null; traceparent: string | null; tracestate: string | null }>`
    select invocation_id, (data ->> 'chainDepth')::int as depth, data ->> 'traceparent' as traceparent, data ->> 'tracestate' as tracestate
    from ledger.events
    where invocation_id = any(${ids}::uuid[]) and seq = 1`.execute(tx);
  return new Map(
    rows.map((r) => [
      r.invocation_id,
      { depth: r.depth ?? 0, ...(r.traceparent ? { trace: { traceparent: r.traceparent, ...(r.tracestate ? { tracestate: r.tracestate } : {}) } } : {}) },
    ]),
  );
}

/** Deliveries, newest first; filter by the invocation that caused them and/or status. */
export async function listDeliveries(
  db: Executor,
  filter: { invocationId?: string; status?: DeliveryStatus; limit?: number } = {},
): Promise<DestinationDeliveryRow[]> {
  const { rows } = await sql<DestinationDeliveryRow>`
    select * from ledger.destination_deliveries
    where (${filter.invocationId ?? null}::uuid is null or invocation_id = ${filter.invocationId ?? null}::uuid)
      and (${filter.status ?? null}::text is null or status = ${filter.status ?? null}::text)
    order by id desc limit ${filter.limit ?? 100}`.execute(db);
  return rows;
}

export interface DeliveryClaim {
  /** rows to take at most */
  limit: number;
  /** rows of one target to take at most, unless `room` says otherwise for it */
  perTarget: number;
  /** targets with less room (in flight here already) or none (backing off) */
  room: ReadonlyMap<string, number>;
  /** how long a claimed row is hidden from other workers (a worker dying mid-POST leaves it to them after) */
  holdSeconds: number;
  /** also return the trace context stored with the causing invocation's `accepted` (tracing on) */
  withTraceContext?: boolean;
}

/**
 * Takes due pending deliveries (SKIP LOCKED), oldest due first, at most `perTarget` (or
 * its `room`) per target, so one slow target never fills a claim; counts the attempt.
 */
export async function claimDueDeliveries(
  db: Executor,
  c: DeliveryClaim,
): Promise<(DestinationDeliveryRow & { target: string; traceparent?: string | null; tracestate?: string | null })[]> {
  if (c.limit <= 0) return [];
  const targets = [...c.room.keys()];
  const caps = targets.map((t) => c.room.get(t) as number);
  const { rows } = await sql<DestinationDeliveryRow & { target: string; traceparent?: string | null; tracestate?: string | null }>`
    with due as (
      select id, next_attempt_at, ${TARGET_SQL} as target from ledger.destination_deliveries
      where status = 'pending' and next_attempt_at <= now()
        and not (${TARGET_SQL} = any(${targets.filter((_, i) => caps[i] === 0)}::text[]))
      order by next_attempt_at
      limit ${Math.max(c.limit * 4, 100)}
      for update skip locked
    ), ranked as (
      select d.id, d.target, d.next_attempt_at, row_number() over (partition by d.target order by d.next_attempt_at) as n,
             coalesce(r.cap, ${c.perTarget}::int) as cap
      from due d left join unnest(${targets}::text[], ${caps}::int[]) as r(target, cap) on r.target = d.target
    ), picked as (
      select id, target from ranked where n <= cap order by next_attempt_at limit ${c.limit}
    )
    update ledger.destination_deliveries d
    set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => ${c.holdSeconds})
    from picked where d.id = picked.id
    returning d.*, picked.target${
      c.withTraceContext
        ? sql`, (select e.data ->> 'traceparent' from ledger.events e where e.invocation_id = d.invocation_id and e.seq = 1) as traceparent,
              (select e.data ->> 'tracestate' from ledger.events e where e.invocation_id = d.invocation_id and e.seq = 1) as tracestate`
        : sql``
    }`.execute(db);
  return rows;
}

export interface DeliveryOutcome {
  id: string;
  status: DeliveryStatus;
  error: string | null;
  statusCode: number | null;
  /** when a pending one may be tried again */
  retryInMs: number;
}

export async function recordDeliveryOutcome(db: Executor, o: DeliveryOutcome): Promise<void> {
  await sql`
    update ledger.destination_deliveries
    set status = ${o.status}, last_error = ${o.error}, last_status_code = ${o.statusCode},
        delivered_at = case when ${o.status} = 'delivered' then now() end,
        next_attempt_at = now() + make_interval(secs => ${o.retryInMs / 1000})
    where id = ${o.id}`.execute(db);
}
