// Replaying the ledger: folding every invocation's events from scratch. `verifyLedger`
// compares the replay with the live projections; `rebuildProjections` replaces them
// with it. Both page through invocations so that memory stays flat on big ledgers.
import { sql } from 'kysely';
import { fold, isQueued, whyNotAtEnd, type InvocationState, type LedgerEvent } from './lifecycle.ts';
import { toLedgerEvent, type EventRowRaw } from './invocations.ts';
import type { Db, Executor } from './schema.ts';
import { stateFromRow } from './writer.ts';

const PAGE = 2_000;
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** Invocation ids in pages, each with its events in seq order. */
async function* replayPages(db: Executor): AsyncGenerator<Map<string, LedgerEvent[]>> {
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows: ids } = await sql<{ invocation_id: string }>`
      select distinct invocation_id from ledger.events
      where invocation_id > ${after}::uuid order by invocation_id limit ${PAGE}`.execute(db);
    if (ids.length === 0) return;
    const list = ids.map((r) => r.invocation_id);
    after = list[list.length - 1] as string;
    const { rows } = await sql<EventRowRaw>`
      select invocation_id, seq, type, attempt, data, occurred_at, position from ledger.events
      where invocation_id = any(${list}::uuid[]) order by invocation_id, seq`.execute(db);
    const page = new Map<string, LedgerEvent[]>(list.map((id) => [id, []]));
    for (const r of rows) {
      page.get(r.invocation_id)?.push(toLedgerEvent(r));
    }
    yield page;
  }
}

export interface VerifyProblem {
  invocationId: string;
  problem: string;
}

const PROJECTED: (keyof InvocationState)[] = [
  'functionName', 'functionVersion', 'invocationType', 'status', 'attempts', 'failuresSinceRedrive', 'lastSeq',
  'lastType', 'idempotencyKey', 'errorType', 'deadLetterReason', 'acceptedAt', 'startedAt', 'finishedAt', 'updatedAt',
];

const same = (a: unknown, b: unknown) =>
  a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : a === b;

/**
 * Checks every invocation: seq contiguous from 1, `accepted` first, every transition
 * allowed by the lifecycle (so only `redriven` after a terminal event), attempt numbers
 * consistent, and the projection equal to the replay. Returns the problems found.
 */
export async function verifyLedger(db: Db): Promise<VerifyProblem[]> {
  const problems: VerifyProblem[] = [];
  for await (const page of replayPages(db)) {
    const ids = [...page.keys()];
    const { rows } = await sql<Parameters<typeof stateFromRow>[0]>`
      select i.*, q.run_at, q.locked_by, q.invocation_id is not null as queued
      from ledger.invocations i left join ledger.queue q on q.invocation_id = i.id
      where i.id = any(${ids}::uuid[])`.execute(db);
    const live = new Map(rows.map((r) => [r.id, { state: stateFromRow(r), queued: (r as unknown as { queued: boolean }).queued }]));
    for (const [id, events] of page) {
      let replayed: InvocationState | undefined;
      try {
        replayed = fold(events);
      } catch (e) {
        problems.push({ invocationId: id, problem: (e as Error).message });
        continue;
      }
      if (!replayed) continue;
      for (const e of events) {
        const a = (e.data as { attempt?: number }).attempt;
        if (e.attempt !== (a ?? null)) problems.push({ invocationId: id, problem: `seq ${e.seq}: attempt column ${e.attempt} ≠ data ${a}` });
      }
      const unfinished = whyNotAtEnd(replayed);
      if (unfinished !== null) problems.push({ invocationId: id, problem: `ends unfinished: ${unfinished}` });
      const row = live.get(id);
      if (!row) {
        problems.push({ invocationId: id, problem: 'has events but no projection row' });
        continue;
      }
      for (const k of PROJECTED) {
        if (!same(row.state[k], replayed[k])) {
          problems.push({ invocationId: id, problem: `projection ${k} = ${String(row.state[k])}, replay = ${String(replayed[k])}` });
        }
      }
      if (row.queued !== isQueued(replayed)) {
        problems.push({ invocationId: id, problem: `queue row ${row.queued ? 'present' : 'missing'} for status ${replayed.status}` });
      }
    }
  }
  const { rows: orphans } = await sql<{ id: string }>`
    select id from ledger.invocations i
    where not exists (select 1 from ledger.events e where e.invocation_id = i.id and e.seq = 1) limit 100`.execute(db);
  for (const o of orphans) problems.push({ invocationId: o.id, problem: 'projection row without events' });
  return problems;
}

/**
 * Recomputes ledger.invocations, ledger.queue and ledger.idempotency_keys from the
 * events alone, in one transaction. Leases are operational, not events: a running
 * attempt gets a fresh lease, after which a dead worker's attempt is recovered as usual.
 */
export async function rebuildProjections(db: Db, leaseMs = 5 * 60_000): Promise<{ invocations: number }> {
  return db.transaction().execute(async (tx) => {
    await sql`lock table ledger.invocations, ledger.queue, ledger.idempotency_keys in exclusive mode`.execute(tx);
    await sql`delete from ledger.queue`.execute(tx);
    await sql`delete from ledger.idempotency_keys`.execute(tx);
    await sql`delete from ledger.invocations`.execute(tx);
    let count = 0;
    for await (const page of replayPages(tx)) {
      const states = [...page.values()].map((events) => fold(events)).filter((s): s is InvocationState => !!s);
      count += states.length;
      await insertStates(tx, states, leaseMs);
    }
    return { invocations: count };
  });
}

async function insertStates(tx: Executor, states: InvocationState[], leaseMs: number): Promise<void> {
  const col = <T>(f: (s: InvocationState) => T) => states.map(f);
  await sql`
    insert into ledger.invocations (id, function_name, function_version, invocation_type, status, attempts,
      failures_since_redrive, last_seq, last_event_type, idempotency_key, error_type, dead_letter_reason,
      accepted_at, started_at, finished_at, updated_at)
    select * from unnest(${col((s) => s.id)}::uuid[], ${col((s) => s.functionName)}::text[],
      ${col((s) => s.functionVersion)}::int[], ${col((s) => s.invocationType)}::text[], ${col((s) => s.status)}::text[],
      ${col((s) => s.attempts)}::int[], ${col((s) => s.failuresSinceRedrive)}::int[], ${col((s) => s.lastSeq)}::int[],
      ${col((s) => s.lastType)}::text[], ${col((s) => s.idempotencyKey)}::text[], ${col((s) => s.errorType)}::text[],
      ${col((s) => s.deadLetterReason)}::text[], ${col((s) => s.acceptedAt)}::timestamptz[],
      ${col((s) => s.startedAt)}::timestamptz[], ${col((s) => s.finishedAt)}::timestamptz[],
      ${col((s) => s.updatedAt)}::timestamptz[])`.execute(tx);
  const queued = states.filter(isQueued);
  const q = <T>(f: (s: InvocationState) => T) => queued.map(f);
  await sql`
    insert into ledger.queue (invocation_id, function_name, function_version, invocation_type, attempt, run_at,
      accepted_at, locked_by, lease_expires_at)
    select id, fn, ver, itype, attempt, run_at, accepted_at, locked_by,
           case when locked_by is null then null else now() + make_interval(secs => ${leaseMs / 1000}) end
    from unnest(${q((s) => s.id)}::uuid[], ${q((s) => s.functionName)}::text[], ${q((s) => s.functionVersion)}::int[],
      ${q((s) => s.invocationType)}::text[], ${q((s) => s.attempts)}::int[],
      ${q((s) => s.runAt ?? s.updatedAt)}::timestamptz[], ${q((s) => s.acceptedAt)}::timestamptz[],
      ${q((s) => (s.status === 'running' ? s.workerId : null))}::text[])
      as t(id, fn, ver, itype, attempt, run_at, accepted_at, locked_by)`.execute(tx);
  const keyed = states.filter((s) => s.idempotencyKey !== null);
  await sql`
    insert into ledger.idempotency_keys (function_name, key, invocation_id, expires_at)
    select distinct on (fn, key) fn, key, id, accepted_at + interval '24 hours'
    from unnest(${keyed.map((s) => s.functionName)}::text[], ${keyed.map((s) => s.idempotencyKey)}::text[],
      ${keyed.map((s) => s.id)}::uuid[], ${keyed.map((s) => s.acceptedAt)}::timestamptz[]) as t(fn, key, id, accepted_at)
    order by fn, key, accepted_at desc
    on conflict (function_name, key) do update set invocation_id = excluded.invocation_id, expires_at = excluded.expires_at
    where ledger.idempotency_keys.expires_at < excluded.expires_at`.execute(tx);
}
