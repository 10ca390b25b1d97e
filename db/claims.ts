// The worker's two locking reads of ledger.queue: due async work to start, and expired
// leases to record as lost (docs/worker.md). Both lock the queue row first, in a
// materialized CTE so the LIMIT applies before anything is joined, then the projection
// row (SKIP LOCKED: one that cancel/redrive holds is left for the next round), so no one
// races the append that follows in the same transaction.
import { sql } from 'kysely';
import type { InvocationRetryPolicy, ScheduleInputRecord } from './lifecycle.ts';
import type { Executor } from './schema.ts';
import type { stateFromRow } from './writer.ts';

type StateRow = Parameters<typeof stateFromRow>[0];

/** An invocation row with its queue row and what its `accepted` event carries for the attempt. */
export type DueRow = StateRow & {
  payload: unknown;
  /** its own retry limits (a schedule tick's RetryPolicy), null: its function's */
  retry_policy: InvocationRetryPolicy | null;
  /** a schedule tick: what each attempt's event is rendered from */
  schedule_input: ScheduleInputRecord | null;
  chain_depth: number | null;
  traceparent: string | null;
  tracestate: string | null;
  /** the alias or version number the caller named (context.invokedFunctionArn) */
  qualifier: string | null;
  /** its function's reservedConcurrency, null when it has none */
  reserved: number | null;
  /** the statement's clock: one `now` for every decision of the claim */
  db_now: Date;
};

/** Locks up to `limit` due async invocations, oldest due first. Run inside the claim's transaction. */
export async function lockDueAsync(tx: Executor, limit: number): Promise<DueRow[]> {
  // Right after a burst of accepts the statistics still say the queue is tiny, and the
  // planner would bitmap-scan every runnable row before the LIMIT (hundreds of ms).
  // The partial index in run_at order with the LIMIT first is right at any size.
  await sql`set local enable_bitmapscan = off`.execute(tx);
  const { rows } = await sql<DueRow>`
    with picked as materialized (
      select q.invocation_id, q.run_at, q.locked_by from ledger.queue q
      where q.locked_by is null and q.run_at <= now() and q.invocation_type = 'async'
      order by q.run_at
      limit ${limit}
      for update skip locked
    )
    select i.*, p.run_at, p.locked_by, e.data -> 'payload' as payload, (e.data ->> 'chainDepth')::int as chain_depth,
           e.data -> 'retryPolicy' as retry_policy, e.data -> 'scheduleInput' as schedule_input,
           e.data ->> 'traceparent' as traceparent, e.data ->> 'tracestate' as tracestate,
           coalesce(e.data ->> 'alias', e.data ->> 'qualifier') as qualifier, c.reserved, now() as db_now
    from picked p
    join ledger.invocations i on i.id = p.invocation_id
    join ledger.events e on e.invocation_id = p.invocation_id and e.seq = 1
    left join ledger.function_concurrency c on c.name = i.function_name
    order by p.run_at
    for update of i skip locked`.execute(tx);
  return rows;
}

/** A leased invocation whose lease ran out, with its payload for the destinations. */
export type ExpiredRow = StateRow & { payload: unknown; retry_policy: InvocationRetryPolicy | null; lease_expires_at: Date };

/** Locks up to `limit` invocations whose lease expired, oldest expiry first. Run inside the reaper's transaction. */
export async function lockExpiredLeases(tx: Executor, limit: number): Promise<ExpiredRow[]> {
  const { rows } = await sql<ExpiredRow>`
    with expired as materialized (
      select q.invocation_id from ledger.queue q
      join ledger.invocations i on i.id = q.invocation_id
      where q.locked_by is not null and q.lease_expires_at < now() and q.invocation_type in ('async', 'sync', 'poll', 'replay')
      order by q.lease_expires_at
      limit ${limit}
      for update of q, i skip locked
    )
    select i.*, q.run_at, q.locked_by, q.lease_expires_at, e.data -> 'payload' as payload, e.data -> 'retryPolicy' as retry_policy
    from expired x
    join ledger.invocations i on i.id = x.invocation_id
    join ledger.queue q on q.invocation_id = x.invocation_id
    join ledger.events e on e.invocation_id = x.invocation_id and e.seq = 1`.execute(tx);
  return rows;
}
