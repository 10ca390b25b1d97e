// Invocations of past months for retention tests: ids are UUIDv7 of that time (as the
// accept path makes them, only earlier), every event in that month, written as the owner
// in one statement per batch; the projections are then rebuilt from them as verify expects.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';

/** `count` finished invocations (accepted, started, succeeded) of function `fn`, accepted from `from` on, one a second. */
export async function writePastInvocations(
  owner: pg.Client,
  o: { fn: string; from: Date; count: number; acceptedOnly?: boolean; randomIds?: boolean },
): Promise<string[]> {
  const ids: string[] = [];
  const times: string[] = [];
  for (let i = 0; i < o.count; i++) {
    const at = o.from.getTime() + i * 1000;
    ids.push(o.randomIds ? randomUUID() : uuidv7({ msecs: at }));
    times.push(new Date(at).toISOString());
  }
  for (let i = 0; i < ids.length; i += 5_000) {
    await owner.query(
      `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
       select id, s.seq, s.type, s.attempt, s.data, at + s.seq * interval '1 millisecond'
       from unnest($1::uuid[], $2::timestamptz[]) with ordinality as x(id, at, n)
       cross join lateral (values
         (1, 'accepted', null::int, jsonb_build_object('functionName', $3::text, 'functionVersion', 1, 'invocationType', 'async',
                                                       'payload', jsonb_build_object('n', x.n), 'idempotencyKey', null)),
         (2, 'started', 1, jsonb_build_object('attempt', 1, 'workerId', 'history')),
         (3, 'succeeded', 1, jsonb_build_object('attempt', 1, 'result', jsonb_build_object('n', x.n, 'ratio', 0.125), 'durationMs', 3)))
         as s(seq, type, attempt, data)
       where s.seq <= $4`,
      [ids.slice(i, i + 5_000), times.slice(i, i + 5_000), o.fn, o.acceptedOnly ? 1 : 3],
    );
  }
  return ids;
}

/** The first instant of the UTC month `k` months from now's (negative: past). */
export const monthStart = (k: number, now = new Date()) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1));

export const partitionOf = (d: Date) => `events_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, '0')}`;

/** Every column of a table's events, in position order, as one digest: equal digests, equal events. */
export async function eventsDigest(owner: pg.Client, table: string, where = 'true'): Promise<{ n: number; md5: string }> {
  const { rows } = await owner.query(
    `select count(*)::int as n, md5(coalesce(string_agg(concat_ws('|', position, tx_id, invocation_id, seq, type, attempt, data::text,
            to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')), E'\\n' order by position), '')) as md5
     from ${table} where ${where}`,
  );
  return rows[0] as { n: number; md5: string };
}
