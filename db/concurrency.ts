// reservedConcurrency across every process: running attempts are the leased rows of the
// queue table (sync, async and poll alike), counted under the function's concurrency row
// lock so that two claimers cannot both take the last slot. Replays (docs/replay.md) have
// their own limit and do not count here: a replay run cannot take live traffic's slots.
import { sql } from 'kysely';
import type { Executor } from './schema.ts';

/**
 * Free slots per function that has a reservedConcurrency, locking those rows until the
 * transaction ends. Two statements on purpose: in READ COMMITTED the count must take its
 * snapshot after the lock is granted, or it misses attempts started by whoever held the
 * lock before us. Functions without a limit are absent from the result.
 */
export async function lockFreeSlots(tx: Executor, names: readonly string[]): Promise<Map<string, number>> {
  const sorted = [...new Set(names)].sort(); // one lock order everywhere: no deadlocks
  const { rows: locked } = await sql<{ name: string; reserved: number }>`
    select name, reserved from ledger.function_concurrency where name = any(${sorted}::text[]) order by name for update`.execute(tx);
  if (locked.length === 0) return new Map();
  const { rows: running } = await sql<{ function_name: string; running: number }>`
    select function_name, count(*)::int as running from ledger.queue
    where function_name = any(${locked.map((l) => l.name)}::text[]) and locked_by is not null and invocation_type <> 'replay' group by function_name`.execute(tx);
  const runningBy = new Map(running.map((r) => [r.function_name, r.running]));
  return new Map(locked.map((r) => [r.name, Math.max(0, r.reserved - (runningBy.get(r.name) ?? 0))]));
}
