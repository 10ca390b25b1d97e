// A ledger's history for the retention benchmarks (docs/retention.md): finished invocations
// of the two past months (two thirds in the month two back, a third in last month), three
// events each, time-ordered UUIDv7 ids, written as the owner with INSERT … SELECT, with their
// projections. Invocation n of `total` always gets the same id and time, so a history can be
// written in steps ([0, 100k) now, [100k, 1M) later) and still be one history.
import type pg from 'pg';

const CHUNK = 100_000;

export const monthStart = (k: number, now = new Date()) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1));
export const partitionOf = (d: Date) => `events_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, '0')}`;

/** Writes invocations [from, to) of a history of `total` invocations; the month partitions must exist. */
export async function fillHistory(c: pg.Client, o: { total: number; from?: number; to?: number }): Promise<void> {
  const { total } = o;
  const older = Math.floor((total * 2) / 3);
  const spans = [
    { from: 0, to: older, start: monthStart(-2), step: (27 * 86_400_000) / Math.max(1, older) },
    { from: older, to: total, start: monthStart(-1), step: (27 * 86_400_000) / Math.max(1, total - older) },
  ];
  const lo = o.from ?? 0;
  const hi = o.to ?? total;
  for (const s of spans) {
    for (let a = Math.max(s.from, lo); a < Math.min(s.to, hi); a += CHUNK) {
      const b = Math.min(s.to, hi, a + CHUNK) - 1;
      await c.query(
        `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
         select inv.id, e.seq, e.type, e.attempt, e.data, inv.at + e.seq * interval '3 ms'
         from (
           select (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid as id, at, n
           from (select n, $1::timestamptz + (n - $5::int) * $3::float8 * interval '1 ms' as at, md5(n::text) as r from generate_series($2::int, $4::int) as n) x
           cross join lateral lpad(to_hex((extract(epoch from at) * 1000)::bigint), 12, '0') as h
         ) inv
         cross join lateral (values
           (1, 'accepted', null::int, jsonb_build_object('functionName', 'bench', 'functionVersion', 1, 'invocationType', 'async',
                                                         'payload', jsonb_build_object('order', inv.n, 'items', jsonb_build_array('a', 'b', 'c')), 'idempotencyKey', null)),
           (2, 'started', 1, jsonb_build_object('attempt', 1, 'workerId', 'bench-worker-' || (inv.n % 4))),
           (3, 'succeeded', 1, jsonb_build_object('attempt', 1, 'result', jsonb_build_object('ok', true, 'order', inv.n), 'durationMs', 1 + inv.n % 250)))
           as e(seq, type, attempt, data)
         order by inv.at, e.seq`,
        [s.start, a, s.step, b, s.from],
      );
    }
  }
  await c.query(`
    insert into ledger.invocations (id, function_name, function_version, invocation_type, status, attempts, last_seq, last_event_type,
                                    accepted_at, started_at, finished_at, updated_at)
    select invocation_id, 'bench', 1, 'async', 'succeeded', 1, 3, 'succeeded', occurred_at, occurred_at, occurred_at, occurred_at
    from ledger.events where seq = 1 and occurred_at < $1
    on conflict (id) do nothing`, [monthStart(0)]);
  await c.query('vacuum analyze ledger.events');
  await c.query('vacuum analyze ledger.invocations');
}
