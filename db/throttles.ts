// Throttle counts shared by every process (migrations/0032_throttles.sql,
// docs/observability.md#throttles): each process adds what it counted, per minute.
import { sql } from 'kysely';
import type { Executor } from './schema.ts';

export interface ThrottleCount {
  /** the start of the minute the throttles happened in */
  minute: Date;
  functionName: string;
  invocationType: 'sync' | 'async';
  reason: string;
  count: number;
}

/** Adds counts to the shared table, one statement for all of them. */
export async function addThrottleCounts(db: Executor, counts: readonly ThrottleCount[]): Promise<void> {
  const rows = counts.filter((c) => c.count > 0);
  if (rows.length === 0) return;
  await sql`
    insert into ledger.throttle_counts as t (minute, function_name, invocation_type, reason, count)
    select date_trunc('minute', m), f, ty, r, sum(n)
    from unnest(${rows.map((c) => c.minute.toISOString())}::timestamptz[], ${rows.map((c) => c.functionName)}::text[],
      ${rows.map((c) => c.invocationType)}::text[], ${rows.map((c) => c.reason)}::text[], ${rows.map((c) => c.count)}::bigint[]) as x(m, f, ty, r, n)
    group by 1, 2, 3, 4
    on conflict (minute, function_name, invocation_type, reason) do update set count = t.count + excluded.count`.execute(db);
}

export interface ThrottlePoint {
  start: Date;
  functionName: string;
  invocationType: 'sync' | 'async';
  reason: string;
  count: number;
}

/** Throttles per bucket, function, type and reason in [since, until); buckets start at `since`. */
export async function throttlesOverTime(
  db: Executor,
  req: { since: Date; until?: Date | undefined; bucketSeconds: number; functionName?: string | null | undefined },
): Promise<ThrottlePoint[]> {
  const until = req.until ?? new Date();
  const fn = req.functionName ?? null;
  const { rows } = await sql<{ start: Date; function_name: string; invocation_type: 'sync' | 'async'; reason: string; count: string }>`
    select date_bin(make_interval(secs => ${req.bucketSeconds}), minute, ${req.since}::timestamptz) as start,
           function_name, invocation_type, reason, sum(count)::bigint as count
    from ledger.throttle_counts
    where minute >= ${req.since} and minute < ${until}
      and (${fn}::text is null or function_name = ${fn}::text)
    group by 1, 2, 3, 4
    order by 1, 2, 3, 4`.execute(db);
  return rows.map((r) => ({ start: r.start, functionName: r.function_name, invocationType: r.invocation_type, reason: r.reason, count: Number(r.count) }));
}
