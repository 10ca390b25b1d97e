// Leases: a started attempt holds its queue row until timeoutMs + grace. Heartbeats
// extend the lease of long attempts (operational state, not an event); the reaper turns
// an expired lease into `failed` (WorkerLost) and its retry or dead letter.
import { sql } from 'kysely';
import { recordOutcomes } from '../../db/attempts.ts';
import type { FunctionVersionCache } from '../../db/functions.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { stateFromRow } from '../../db/writer.ts';
import type { FinishedInvocation } from './destinations.ts';
import { missingVersion } from './claim.ts';

export const WORKER_LOST = 'WorkerLost';

/** Extends the leases this worker holds to at least now() + graceMs. One statement. */
export async function extendLeases(db: Executor, workerId: string, ids: readonly string[], graceMs: number): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await sql`
    update ledger.queue set lease_expires_at = greatest(lease_expires_at, now() + make_interval(secs => ${graceMs / 1000}))
    where invocation_id = any(${ids}::uuid[]) and locked_by = ${workerId}`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}

type ExpiredRow = Parameters<typeof stateFromRow>[0] & { payload: unknown; lease_expires_at: Date };

export interface Reaped {
  state: InvocationState;
  lostBy: string;
}

/**
 * Records every expired lease (up to `limit`) as a lost attempt: `failed` with
 * errorType WorkerLost naming the worker, then retried or dead-lettered like any failure
 * (a sync invocation's failure is terminal). Any worker may run it; SKIP LOCKED keeps
 * reapers apart, and the projection row lock keeps it apart from cancel/redrive.
 */
export async function reapExpiredLeases(
  db: Db,
  o: { versions: FunctionVersionCache; limit?: number; onTerminal?: (tx: Executor, finished: FinishedInvocation[]) => Promise<void> },
): Promise<Reaped[]> {
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<ExpiredRow>`
      with expired as materialized (
        select q.invocation_id from ledger.queue q
        join ledger.invocations i on i.id = q.invocation_id
        where q.locked_by is not null and q.lease_expires_at < now() and q.invocation_type in ('async', 'sync', 'poll')
        order by q.lease_expires_at
        limit ${o.limit ?? 100}
        for update of q, i skip locked
      )
      select i.*, q.run_at, q.locked_by, q.lease_expires_at, e.data -> 'payload' as payload
      from expired x
      join ledger.invocations i on i.id = x.invocation_id
      join ledger.queue q on q.invocation_id = x.invocation_id
      join ledger.events e on e.invocation_id = x.invocation_id and e.seq = 1`.execute(tx);
    if (rows.length === 0) return [];
    const items = await Promise.all(
      rows.map(async (row) => {
        const state = stateFromRow(row);
        const fn = (await o.versions.get(row.function_name, row.function_version)) ?? missingVersion(row);
        return { row, state, fn };
      }),
    );
    const now = new Date();
    const lost = (row: ExpiredRow, state: InvocationState) => ({
      errorType: WORKER_LOST,
      errorMessage: `Worker ${row.locked_by} lost attempt ${state.attempts}: its lease expired at ${row.lease_expires_at.toISOString()}`,
      trace: [],
    });
    const { results, rejected } = await recordOutcomes(
      tx,
      items.map(({ row, state, fn }) => ({
        state,
        policy: fn,
        outcome: { ok: false as const, error: lost(row, state), durationMs: Math.max(0, now.getTime() - state.updatedAt.getTime()) },
      })),
      now,
    );
    if (rejected[0]) throw rejected[0].error;
    const byId = new Map(results.map((r) => [r.invocationId, r.state]));
    const finished: FinishedInvocation[] = items.map(({ row, state, fn }) => ({
      state: byId.get(state.id) as InvocationState,
      fn,
      payload: row.payload,
      error: lost(row, state),
    }));
    if (o.onTerminal) await o.onTerminal(tx, finished.filter((f) => f.state.status === 'dead_lettered'));
    return items.map(({ row, state }) => ({ state: byId.get(state.id) as InvocationState, lostBy: row.locked_by as string }));
  });
}
