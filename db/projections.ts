// The projections of the events (docs/event-model.md), owned by the writer: what
// ledger.invocations, ledger.queue and ledger.attempt_logs hold for an invocation's state,
// and the statement parts that write them. `db/writer.ts` puts these parts into its one
// append statement, after the events; `rebuildProjections` (db/replay.ts) runs the same
// parts over states folded from the events, to rewrite rows that differ from them. The
// repair's idempotency-key and orphan writes are here too, so that this module, the
// writer and db/queue-rows.ts are the only code that writes projection rows
// (test/architecture/structure.unit.spec.ts).
import { sql, type RawBuilder } from 'kysely';
import type { InvocationState } from './lifecycle.ts';
import type { Executor } from './schema.ts';

// Folding happens before the transaction's clock is known; this marker stands for
// "when the statement runs" and is sent as 'infinity', which ledger.at_statement() turns
// into statement_timestamp(): the same instant as the events' occurred_at.
export const TX_NOW = new Date(8.64e15);

/** An event's time: a Date (milliseconds) that remembers the microseconds the ledger stores. */
export class LedgerTime extends Date {
  constructor(readonly exact: string) {
    super(`${exact.slice(0, 23)}Z`);
  }
}

/** A timestamp as sent: 'infinity' for TX_NOW, an event's time at full precision, else ISO. */
export const ts = (d: Date | null): string | null =>
  d === null ? null : d instanceof LedgerTime ? d.exact : d.getTime() === TX_NOW.getTime() ? 'infinity' : d.toISOString();

/**
 * An array literal for elements that never need quoting: uuids, integers, timestamps
 * as ISO strings and the lifecycle's own words. pg's serializer would run a regex over
 * every element to escape it. Free text (function names, which may spell NULL, worker
 * ids, JSON, logs) keeps pg's escaping.
 */
export function plain(values: readonly (string | number | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // a test, not a replace: no new string per element, and a value that would need
    // quoting (an id that is not a uuid, say) can never shift the arrays out of line
    if (typeof v === 'string' && (NEEDS_QUOTES.test(v) || v.length === 0 || (v.length === 4 && v.toUpperCase() === 'NULL'))) {
      throw new Error(`not a plain array element: ${JSON.stringify(v)}`);
    }
    out += `${i === 0 ? '' : ','}${v === null || v === undefined ? 'NULL' : v}`;
  }
  return `${out}}`;
}
const NEEDS_QUOTES = /[\s,{}"\\]/;

/** How a queue row is written besides what the state says. */
export interface QueueRowOptions {
  /** the lease a running attempt gets, from the statement's time */
  leaseMs: number;
  /**
   * The row's accepted_at: the state's (default), or 'projection' to copy the
   * invocation row's microseconds (a redrive inserts the row again from a state read back
   * in milliseconds).
   */
  acceptedAt?: 'state' | 'projection';
  /** a run_at other than the state's (a rebuild keeps a throttled claim's) */
  runAt?: string;
  /** a lease that a running attempt keeps instead of a new one (rebuild only) */
  leaseUntil?: string | null;
}

/**
 * The projection rows of one statement, as arrays for unnest: one `invocation` per state,
 * and for each either `queue` (not terminal) or `dequeue`.
 */
export class ProjectionRows {
  readonly inv = {
    id: [] as string[], fn: [] as string[], ver: [] as number[], itype: [] as string[], status: [] as string[],
    attempts: [] as number[], failures: [] as number[], lastSeq: [] as number[], lastType: [] as string[],
    idem: [] as (string | null)[], errType: [] as (string | null)[], dlReason: [] as (string | null)[],
    acceptedAt: [] as (string | null)[], startedAt: [] as (string | null)[], finishedAt: [] as (string | null)[],
    updatedAt: [] as (string | null)[],
  };
  readonly q = {
    id: [] as string[], fn: [] as string[], ver: [] as number[], itype: [] as string[], attempt: [] as number[],
    runAt: [] as (string | null)[], acceptedAt: [] as (string | null)[], lockedBy: [] as (string | null)[],
    leaseMs: [] as (number | null)[], leaseUntil: [] as (string | null)[],
  };
  readonly dequeued: string[] = [];
  readonly logs = { id: [] as string[], attempt: [] as number[], text: [] as string[] };

  /** The ledger.invocations row of a state. */
  invocation(state: InvocationState): void {
    const p = this.inv;
    p.id.push(state.id); p.fn.push(state.functionName); p.ver.push(state.functionVersion);
    p.itype.push(state.invocationType); p.status.push(state.status); p.attempts.push(state.attempts);
    p.failures.push(state.failuresSinceRedrive); p.lastSeq.push(state.lastSeq); p.lastType.push(state.lastType);
    p.idem.push(state.idempotencyKey); p.errType.push(state.errorType); p.dlReason.push(state.deadLetterReason);
    p.acceptedAt.push(ts(state.acceptedAt)); p.startedAt.push(ts(state.startedAt));
    p.finishedAt.push(ts(state.finishedAt)); p.updatedAt.push(ts(state.updatedAt));
  }

  /** The ledger.queue row of a state that is not terminal: due at its runAt, or leased while running. */
  queue(state: InvocationState, o: QueueRowOptions): void {
    const q = this.q;
    const running = state.status === 'running';
    q.id.push(state.id); q.fn.push(state.functionName); q.ver.push(state.functionVersion);
    q.itype.push(state.invocationType); q.attempt.push(state.attempts);
    q.runAt.push(o.runAt ?? ts(state.runAt ?? state.updatedAt));
    q.acceptedAt.push(o.acceptedAt === 'projection' ? null : ts(state.acceptedAt));
    q.lockedBy.push(running ? state.workerId : null);
    q.leaseMs.push(running ? o.leaseMs : null);
    q.leaseUntil.push(running ? (o.leaseUntil ?? null) : null);
  }

  /** No queue row: the invocation is terminal. */
  dequeue(id: string): void {
    this.dequeued.push(id);
  }

  /** What an attempt printed. */
  log(id: string, attempt: number, text: string): void {
    this.logs.id.push(id); this.logs.attempt.push(attempt); this.logs.text.push(text);
  }
}

/**
 * How the rows meet rows that exist. 'append' moves an invocation on: the columns its
 * accepted event set stay, started_at is set once (a state read back holds milliseconds,
 * the row microseconds). 'rebuild' replaces every column with what the events say, and
 * keeps a lease the row held.
 */
export type ProjectionPolicy = 'append' | 'rebuild';

/**
 * The data-modifying CTEs `proj, enq, deq, lg` that write `rows`, for a statement's WITH
 * list: the writer puts them after its events, a rebuild runs them alone
 * (`writeProjections`). One statement whatever the number of rows.
 */
export function projectionCtes(rows: ProjectionRows, policy: ProjectionPolicy): RawBuilder<unknown> {
  const { inv: p, q, dequeued, logs } = rows;
  const rebuild = policy === 'rebuild';
  return sql`proj as (
      insert into ledger.invocations as i (id, function_name, function_version, invocation_type, status, attempts,
        failures_since_redrive, last_seq, last_event_type, idempotency_key, error_type, dead_letter_reason,
        accepted_at, started_at, finished_at, updated_at)
      select id, fn, ver, itype, status, attempts, failures, last_seq, last_type, idem, err_type, dl_reason,
        ledger.at_statement(accepted_at), ledger.at_statement(started_at), ledger.at_statement(finished_at),
        ledger.at_statement(updated_at)
      from unnest(${plain(p.id)}::uuid[], ${p.fn}::text[], ${plain(p.ver)}::int[], ${plain(p.itype)}::text[], ${plain(p.status)}::text[],
        ${plain(p.attempts)}::int[], ${plain(p.failures)}::int[], ${plain(p.lastSeq)}::int[], ${plain(p.lastType)}::text[], ${p.idem}::text[],
        ${p.errType}::text[], ${p.dlReason}::text[], ${plain(p.acceptedAt)}::timestamptz[], ${plain(p.startedAt)}::timestamptz[],
        ${plain(p.finishedAt)}::timestamptz[], ${plain(p.updatedAt)}::timestamptz[])
        as t(id, fn, ver, itype, status, attempts, failures, last_seq, last_type, idem, err_type, dl_reason,
             accepted_at, started_at, finished_at, updated_at)
      on conflict (id) do update set
        ${rebuild ? REPLACE_INVOCATION : APPEND_INVOCATION}
    ), enq as (
      insert into ledger.queue (invocation_id, function_name, function_version, invocation_type, attempt, run_at,
        accepted_at, locked_by, lease_expires_at)
      select id, fn, ver, itype, attempt, ledger.at_statement(run_at),
             coalesce(ledger.at_statement(accepted_at), (select i.accepted_at from ledger.invocations i where i.id = t.id)), locked_by,
             case when lease_ms is null then null else ${rebuild ? sql`coalesce(lease_until, ${LEASE_FROM_NOW})` : LEASE_FROM_NOW} end
      from unnest(${plain(q.id)}::uuid[], ${q.fn}::text[], ${plain(q.ver)}::int[], ${plain(q.itype)}::text[], ${plain(q.attempt)}::int[],
        ${plain(q.runAt)}::timestamptz[], ${plain(q.acceptedAt)}::timestamptz[], ${q.lockedBy}::text[], ${plain(q.leaseMs)}::int[]${
          rebuild ? sql`, ${plain(q.leaseUntil)}::timestamptz[]` : sql``})
        as t(id, fn, ver, itype, attempt, run_at, accepted_at, locked_by, lease_ms${rebuild ? sql`, lease_until` : sql``})
      on conflict (invocation_id) do update set
        ${rebuild ? REPLACE_QUEUE : APPEND_QUEUE}
    ), deq as (
      delete from ledger.queue where invocation_id = any(${plain(dequeued)}::uuid[])
    ), lg as (
      insert into ledger.attempt_logs (invocation_id, attempt, log)
      select * from unnest(${plain(logs.id)}::uuid[], ${plain(logs.attempt)}::int[], ${logs.text}::text[])
      on conflict (invocation_id, attempt) do update set log = excluded.log
    )`;
}

const LEASE_FROM_NOW = sql.raw('statement_timestamp() + make_interval(secs => lease_ms / 1000.0)');
const APPEND_INVOCATION = sql.raw(`status = excluded.status, attempts = excluded.attempts, failures_since_redrive = excluded.failures_since_redrive,
        last_seq = excluded.last_seq, last_event_type = excluded.last_event_type, error_type = excluded.error_type,
        dead_letter_reason = excluded.dead_letter_reason, started_at = coalesce(i.started_at, excluded.started_at),
        finished_at = excluded.finished_at, updated_at = excluded.updated_at`);
const REPLACE_INVOCATION = sql.raw(`function_name = excluded.function_name, function_version = excluded.function_version,
        invocation_type = excluded.invocation_type, status = excluded.status, attempts = excluded.attempts,
        failures_since_redrive = excluded.failures_since_redrive, last_seq = excluded.last_seq,
        last_event_type = excluded.last_event_type, idempotency_key = excluded.idempotency_key,
        error_type = excluded.error_type, dead_letter_reason = excluded.dead_letter_reason,
        accepted_at = excluded.accepted_at, started_at = excluded.started_at, finished_at = excluded.finished_at,
        updated_at = excluded.updated_at`);
const APPEND_QUEUE = sql.raw(`attempt = excluded.attempt, run_at = excluded.run_at, locked_by = excluded.locked_by,
        lease_expires_at = excluded.lease_expires_at`);
const REPLACE_QUEUE = sql.raw(`function_name = excluded.function_name, function_version = excluded.function_version,
        invocation_type = excluded.invocation_type, attempt = excluded.attempt, run_at = excluded.run_at,
        accepted_at = excluded.accepted_at, locked_by = excluded.locked_by, lease_expires_at = excluded.lease_expires_at`);

/** Writes `rows` on their own, replacing what differs from the events (a rebuild's repair). One statement. */
export async function writeProjections(tx: Executor, rows: ProjectionRows): Promise<void> {
  await sql`with ${projectionCtes(rows, 'rebuild')} select 1`.execute(tx);
}

/** Removes idempotency key rows naming an invocation whose accepted event does not carry that key. */
export async function deleteKeys(tx: Executor, rows: readonly { function_name: string; key: string; invocation_id: string }[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    delete from ledger.idempotency_keys k
    using unnest(${rows.map((k) => k.function_name)}::text[], ${rows.map((k) => k.key)}::text[], ${rows.map((k) => k.invocation_id)}::uuid[])
      as t(fn, key, id)
    where k.function_name = t.fn and k.key = t.key and k.invocation_id = t.id`.execute(tx);
}

/**
 * Makes each key name its owner, expiring `ttlSeconds` after the owner's accept. Key rows are
 * not locked: an accept may take an expired key over meanwhile, so an existing row is
 * replaced only when it names one of `replaceable` (the rows that were read).
 */
export async function upsertKeyOwners(
  tx: Executor,
  owners: readonly { fn: string; key: string; id: string; acceptedAt: string }[],
  replaceable: readonly string[],
  ttlSeconds: number,
): Promise<void> {
  if (owners.length === 0) return;
  await sql`
    insert into ledger.idempotency_keys as k (function_name, key, invocation_id, expires_at)
    select fn, key, id, accepted_at + make_interval(secs => ${ttlSeconds})
    from unnest(${owners.map((o) => o.fn)}::text[], ${owners.map((o) => o.key)}::text[], ${owners.map((o) => o.id)}::uuid[],
      ${owners.map((o) => o.acceptedAt)}::timestamptz[]) as t(fn, key, id, accepted_at)
    on conflict (function_name, key) do update set invocation_id = excluded.invocation_id, expires_at = excluded.expires_at
      where k.invocation_id = any(${replaceable}::uuid[])`.execute(tx);
}

/**
 * Removes the projection rows among these that no event explains (each delete re-checks
 * its rows, so what was explained meanwhile stays); returns how many.
 */
export async function deleteUnexplained(
  db: Executor,
  o: { invocations: readonly string[]; queue: readonly string[]; keys: readonly { fn: string; key: string; id: string }[] },
): Promise<number> {
  const queueIds = [...o.queue, ...o.invocations];
  const q = await sql`
    delete from ledger.queue q where invocation_id = any(${queueIds}::uuid[])
      and (not exists (select 1 from ledger.invocations i where i.id = q.invocation_id)
           or not exists (select 1 from ledger.events e where e.invocation_id = q.invocation_id and e.seq = 1))`.execute(db);
  const i = await sql`
    delete from ledger.invocations i where id = any(${o.invocations}::uuid[])
      and not exists (select 1 from ledger.events e where e.invocation_id = i.id and e.seq = 1)`.execute(db);
  const k = await sql`
    delete from ledger.idempotency_keys k
    using unnest(${o.keys.map((r) => r.fn)}::text[], ${o.keys.map((r) => r.key)}::text[], ${o.keys.map((r) => r.id)}::uuid[]) as t(fn, key, id)
    where k.function_name = t.fn and k.key = t.key and k.invocation_id = t.id
      and not exists (select 1 from ledger.events e where e.invocation_id = k.invocation_id and e.seq = 1)`.execute(db);
  return Number(q.numAffectedRows ?? 0) + Number(i.numAffectedRows ?? 0) + Number(k.numAffectedRows ?? 0);
}
