// The operational columns of a ledger.queue row that no event sets: a heartbeat extends
// a lease, a throttled claim pushes a row's run_at back (docs/worker.md). They are part of
// the writer's projection: besides db/writer.ts this is the only module that writes
// ledger.queue rows in normal operation (test/architecture/structure.unit.spec.ts).
import { sql } from 'kysely';
import type { Executor } from './schema.ts';

/**
 * How long past its timeout an attempt's lease lasts before the reaper counts it lost, and
 * the lease heartbeats keep renewing (WORKER_LEASE_GRACE_MS, docs/worker.md). Sync, async,
 * poll and broker attempts all default to it.
 */
export const DEFAULT_LEASE_GRACE_MS = 30_000;

/** Extends the leases this worker holds to at least now() + graceMs. One statement. */
export async function extendLeases(db: Executor, workerId: string, ids: readonly string[], graceMs: number): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await sql`
    update ledger.queue set lease_expires_at = greatest(lease_expires_at, now() + make_interval(secs => ${graceMs / 1000}))
    where invocation_id = any(${ids}::uuid[]) and locked_by = ${workerId}`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}

/** Throttled work (over its reservedConcurrency) is not an attempt: no event, only a later run_at. */
export async function deferThrottled(tx: Executor, rows: readonly { id: string; runAt: Date }[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    update ledger.queue q set run_at = t.run_at
    from unnest(${rows.map((t) => t.id)}::uuid[], ${rows.map((t) => t.runAt.toISOString())}::timestamptz[]) as t(id, run_at)
    where q.invocation_id = t.id`.execute(tx);
}
