// What the queue poller reads and keeps: the enabled mappings with their queue's
// settings, a mapping's concurrency in the receiving transaction, and the in-flight
// batch rows (pruned at their lease's end, extended by the heartbeat).
import { sql } from 'kysely';
import type { Executor } from '../schema.ts';
import { toMapping, type EventSourceMapping, type MappingRow } from './mappings.ts';

export interface PollableMapping extends EventSourceMapping {
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  /** latest version of the function; null when it was deleted */
  functionVersion: number | null;
}

export async function listPollableMappings(db: Executor): Promise<PollableMapping[]> {
  const { rows } = await sql<MappingRow & { visibility_timeout_seconds: number; max_receive_count: number; latest_version: number | null }>`
    select m.*, q.visibility_timeout_seconds, q.max_receive_count,
      case when f.deleted_at is null then f.latest_version end as latest_version
    from ledger.event_source_mappings m
    join ledger.message_queues q on q.name = m.queue_name
    join ledger.functions f on f.name = m.function_name
    where m.enabled
    order by m.created_at, m.id`.execute(db);
  return rows.map((r) => ({
    ...toMapping(r),
    visibilityTimeoutSeconds: r.visibility_timeout_seconds,
    maxReceiveCount: r.max_receive_count,
    functionVersion: r.latest_version,
  }));
}

/**
 * In the receiving transaction: the mapping's current maximumConcurrency and batches in
 * flight, or null when it was deleted or disabled since it was listed. With
 * maximumConcurrency the mapping row is locked, so two workers cannot both take the last
 * slot; without, nothing is locked and receivers only meet at the messages (SKIP LOCKED).
 */
export async function mappingForReceive(
  tx: Executor,
  id: string,
  lock: boolean,
): Promise<{ maximumConcurrency: number | null; inFlight: number } | null> {
  const { rows } = await sql<{ enabled: boolean; maximum_concurrency: number | null }>`
    select enabled, maximum_concurrency from ledger.event_source_mappings where id = ${id}::uuid
    ${lock ? sql`for no key update` : sql``}`.execute(tx);
  const r = rows[0];
  if (!r || !r.enabled) return null;
  if (r.maximum_concurrency === null) return { maximumConcurrency: null, inFlight: 0 };
  // a limit set since the mapping was listed: count under the lock after all
  if (!lock) return mappingForReceive(tx, id, true);
  // a statement of its own: its snapshot, taken after the lock was granted, sees the
  // batch rows of the transactions that held the lock before us
  const { rows: counted } = await sql<{ n: number }>`
    select count(*)::int as n from ledger.message_batches where mapping_id = ${id}::uuid and expires_at > now()`.execute(tx);
  return { maximumConcurrency: r.maximum_concurrency, inFlight: counted[0]?.n ?? 0 };
}

/** A batch whose worker died stops counting at its lease's end; its row goes here. */
export async function pruneExpiredBatches(db: Executor): Promise<number> {
  const res = await sql`delete from ledger.message_batches where expires_at < now()`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}

/** Heartbeat: batches still running stay counted against maximumConcurrency. */
export async function extendBatches(db: Executor, invocationIds: readonly string[], graceMs: number): Promise<void> {
  if (invocationIds.length === 0) return;
  await sql`
    update ledger.message_batches set expires_at = greatest(expires_at, now() + make_interval(secs => ${graceMs / 1000}))
    where invocation_id = any(${invocationIds}::uuid[])`.execute(db);
}
