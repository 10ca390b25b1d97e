// What a function's attempts printed, in the order their outcomes were recorded: the
// read behind `invoke-ledger logs FUNCTION [--follow]` (docs/observability.md). An
// attempt's log (its last 64 KB) is written with its outcome event, so it appears once the
// attempt has ended.
import { sql } from 'kysely';
import type { Executor } from './schema.ts';

export interface AttemptLogEntry {
  /** the outcome event's position (with recordedAt: the order logs are printed in) */
  position: string;
  recordedAt: Date;
  invocationId: string;
  functionVersion: number;
  attempt: number;
  /** the attempt's outcome event: succeeded or failed */
  outcome: string;
  log: string;
}

/**
 * Attempt logs of `functionName` whose outcome was recorded at or after `since`, oldest
 * first, at most `limit`. Invocations are narrowed by the projection's updated_at (every
 * event moves it), so a redriven invocation's new attempts are found too.
 */
export async function functionLogsSince(db: Executor, functionName: string, since: Date, limit = 1000): Promise<AttemptLogEntry[]> {
  const { rows } = await sql<{ position: string; occurred_at: Date; invocation_id: string; function_version: number; attempt: number; type: string; log: string }>`
    select e.position::text as position, e.occurred_at, e.invocation_id, i.function_version, e.attempt, e.type, l.log
    from ledger.invocations i
    join ledger.events e on e.invocation_id = i.id and e.type in ('succeeded', 'failed') and e.occurred_at >= ${since}
    join ledger.attempt_logs l on l.invocation_id = e.invocation_id and l.attempt = e.attempt
    where i.function_name = ${functionName} and i.updated_at >= ${since}
    order by e.occurred_at, e.position
    limit ${limit}`.execute(db);
  return rows.map((r) => ({
    position: r.position,
    recordedAt: r.occurred_at,
    invocationId: r.invocation_id,
    functionVersion: r.function_version,
    attempt: r.attempt,
    outcome: r.type,
    log: r.log,
  }));
}
