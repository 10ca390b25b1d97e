// Leases: a started attempt holds its queue row until timeoutMs + grace. Heartbeats
// extend the lease of long attempts (operational state, not an event); the reaper turns
// an expired lease into `failed` (WorkerLost) and its retry or dead letter.
import { recordOutcomes } from '../../db/attempts.ts';
import { lockExpiredLeases, type ExpiredRow } from '../../db/claims.ts';
import { leaseExpiredOutcome } from '../../db/decisions.ts';
import { missingVersion, type FunctionVersionCache } from '../../db/functions.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import { retryPolicyOf } from '../../db/retry-policy.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { stateFromRow } from '../../db/writer.ts';
import type { FinishedInvocation } from './destinations.ts';


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
    const rows = await lockExpiredLeases(tx, o.limit ?? 100);
    if (rows.length === 0) return [];
    const items = await Promise.all(
      rows.map(async (row) => {
        const state = stateFromRow(row);
        const fn = (await o.versions.get(row.function_name, row.function_version)) ?? missingVersion(row);
        return { row, state, fn };
      }),
    );
    const now = new Date();
    const lost = (row: ExpiredRow, state: InvocationState) => leaseExpiredOutcome(state, { lockedBy: row.locked_by, expiredAt: row.lease_expires_at }, now);
    const { results, rejected } = await recordOutcomes(
      tx,
      items.map(({ row, state, fn }) => ({
        state,
        policy: retryPolicyOf(fn, row.retry_policy),
        outcome: lost(row, state),
      })),
      now,
    );
    if (rejected[0]) throw rejected[0].error;
    const byId = new Map(results.map((r) => [r.invocationId, r.state]));
    const finished: FinishedInvocation[] = items.map(({ row, state, fn }) => ({
      state: byId.get(state.id) as InvocationState,
      fn,
      payload: row.payload,
      error: lost(row, state).error,
    }));
    if (o.onTerminal) await o.onTerminal(tx, finished.filter((f) => f.state.status === 'dead_lettered'));
    return items.map(({ row, state }) => ({ state: byId.get(state.id) as InvocationState, lostBy: row.locked_by as string }));
  });
}
