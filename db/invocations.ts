// Invocation commands (accept, redrive, cancel) and the read model of one invocation.
// Both edges (HTTP and GraphQL) and the worker (destinations) call these.
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { PREPARED } from './connection.ts';
import { cancelEvents, redriveEvents } from './decisions.ts';
import { LedgerError, SequenceConflict } from './errors.ts';
import type { FunctionVersion } from './functions.ts';
import {
  isLoopStopped,
  TERMINAL_STATUSES,
  type FunctionErrorData,
  type InvocationRetryPolicy,
  type InvocationState,
  type InvocationType,
  type LedgerEvent,
  type NewEvent,
  type ScheduleInputRecord,
  type StreamBatchSource,
} from './lifecycle.ts';
import type { Db, Executor } from './schema.ts';
import { appendBatch, loadStates, stateFromRow } from './writer.ts';

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;

export interface AcceptRequest {
  fn: FunctionVersion;
  invocationType: InvocationType;
  payload: unknown;
  idempotencyKey?: string | null;
  /** sync: the attempt starts in the same transaction, held by this worker id */
  startedBy?: string;
  /** invocations before this one in its chain (docs/worker.md, recursive loops); 0 or absent from outside */
  chainDepth?: number;
  /** async: at this depth the invocation is accepted and dead-lettered as RecursiveInvocationLoop (0: no limit) */
  maxChainDepth?: number;
  /** lease of that attempt */
  leaseMs?: number;
  /** W3C trace context to store with `accepted`, so attempts in any process join the trace */
  trace?: { traceparent?: string; tracestate?: string };
  /** the alias it was invoked through (recorded in `accepted`; fn is the version the alias picked) */
  alias?: string;
  /** the version number the caller named (`name:3`; recorded in `accepted`); absent when unqualified or through an alias */
  qualifier?: string;
  /** a replay invocation (docs/replay.md): its run and the original; recorded in `accepted` */
  replay?: { replayId: string; of: string };
  /** async: retry limits of its own, in place of the function's (a schedule tick's RetryPolicy) */
  retryPolicy?: InvocationRetryPolicy;
  /** a schedule tick: the input template each attempt's event is rendered from (docs/schedules.md) */
  scheduleInput?: ScheduleInputRecord;
  /** a stream batch: where its records are (recorded in `accepted`) */
  stream?: StreamBatchSource;
}

export interface Accepted {
  invocationId: string;
  /** true when an earlier invocation with the same idempotency key was returned */
  duplicate: boolean;
  /** the new state (undefined for duplicates: read it with getInvocation) */
  state?: InvocationState;
}

/**
 * Accepts many invocations in one transaction: idempotency keys first (the first
 * invocation for a key within 24 h wins and nothing new is written for the others),
 * then the `accepted` (and for sync, `started`) events of the rest in one append.
 * Returns one result per request, in order.
 */
export async function acceptInvocations(db: Db | Executor, requests: readonly AcceptRequest[]): Promise<Accepted[]> {
  if (requests.length === 0) return [];
  const run = async (tx: Executor): Promise<Accepted[]> => {
    // Time-ordered ids (UUIDv7): new invocations land at the right edge of the events and
    // invocations indexes, so appends touch a hot, cached part of them however big the
    // history grows, instead of random leaves of a multi-GB index.
    const ids = requests.map(() => uuidv7());
    const out: (Accepted | undefined)[] = new Array(requests.length);
    const keyed = new Map<string, number>(); // "fn\0key" → index of the first request using it
    const keyIdx: number[] = [];
    requests.forEach((r, i) => {
      if (!r.idempotencyKey) return;
      const k = `${r.fn.name}\u0000${r.idempotencyKey}`;
      const first = keyed.get(k);
      if (first === undefined) {
        keyed.set(k, i);
        keyIdx.push(i);
      } else {
        out[i] = { invocationId: ids[first] as string, duplicate: true };
      }
    });
    if (keyIdx.length > 0) {
      const claimed = await claimIdempotencyKeys(tx, keyIdx.map((i) => ({ fn: (requests[i] as AcceptRequest).fn.name, key: (requests[i] as AcceptRequest).idempotencyKey as string, id: ids[i] as string })));
      for (const i of keyIdx) {
        const r = requests[i] as AcceptRequest;
        const owner = claimed.get(`${r.fn.name}\u0000${r.idempotencyKey}`);
        if (owner && owner !== ids[i]) out[i] = { invocationId: owner, duplicate: true };
      }
      // duplicates inside this batch point at a first request that itself lost to an earlier invocation
      requests.forEach((r, i) => {
        const o = out[i];
        if (!o?.duplicate || !r.idempotencyKey) return;
        const first = keyed.get(`${r.fn.name}\u0000${r.idempotencyKey}`) as number;
        if (out[first]?.duplicate) out[i] = { ...(out[first] as Accepted) };
      });
    }
    const fresh = requests.map((r, i) => ({ r, i })).filter(({ i }) => !out[i]);
    const { results, rejected } = await appendBatch(
      tx,
      fresh.map(({ r, i }) => {
        const events: NewEvent[] = [
          {
            type: 'accepted',
            data: {
              functionName: r.fn.name,
              functionVersion: r.fn.version,
              invocationType: r.invocationType,
              payload: r.payload ?? null,
              idempotencyKey: r.idempotencyKey ?? null,
              ...(r.chainDepth ? { chainDepth: r.chainDepth } : {}),
              ...(r.trace?.traceparent ? { traceparent: r.trace.traceparent } : {}),
              ...(r.trace?.tracestate ? { tracestate: r.trace.tracestate } : {}),
              ...(r.alias ? { alias: r.alias } : {}),
              ...(r.qualifier ? { qualifier: r.qualifier } : {}),
              ...(r.replay ? { replay: { replayId: r.replay.replayId, of: r.replay.of } } : {}),
              ...(r.retryPolicy ? { retryPolicy: { maxRetries: r.retryPolicy.maxRetries, maxEventAgeSeconds: r.retryPolicy.maxEventAgeSeconds } } : {}),
              ...(r.scheduleInput ? { scheduleInput: r.scheduleInput } : {}),
              ...(r.stream ? { stream: { ...r.stream } } : {}),
            },
          },
        ];
        if (r.invocationType === 'async' && isLoopStopped(r.chainDepth ?? 0, r.maxChainDepth ?? 0)) {
          events.push({ type: 'dead_lettered', data: { reason: 'RecursiveInvocationLoop' } });
        } else if (r.startedBy) events.push({ type: 'started', data: { attempt: 1, workerId: r.startedBy } });
        return { invocationId: ids[i] as string, expectedSeq: 0, events, ...(r.leaseMs ? { leaseMs: r.leaseMs } : {}) };
      }),
    );
    if (rejected[0]) throw rejected[0].error;
    const byId = new Map(results.map((res) => [res.invocationId, res.state]));
    for (const { i } of fresh) out[i] = { invocationId: ids[i] as string, duplicate: false, state: byId.get(ids[i] as string) };
    return out as Accepted[];
  };
  // Without idempotency keys the whole accept is one append statement, atomic on its own:
  // no BEGIN/COMMIT round trips on the hot path.
  const needsTransaction = !db.isTransaction && requests.some((r) => r.idempotencyKey);
  return needsTransaction ? (db as Db).transaction().execute(run) : run(db);
}

/** Takes each (function, key) unless an unexpired owner exists; returns the owner of every key. */
async function claimIdempotencyKeys(
  tx: Executor,
  keys: { fn: string; key: string; id: string }[],
): Promise<Map<string, string>> {
  const { rows } = await sql<{ function_name: string; key: string; invocation_id: string }>`
    with wanted as (
      select * from unnest(${keys.map((k) => k.fn)}::text[], ${keys.map((k) => k.key)}::text[], ${keys.map((k) => k.id)}::uuid[])
        as t(function_name, key, invocation_id)
    ), claimed as (
      insert into ledger.idempotency_keys (function_name, key, invocation_id, expires_at)
      select function_name, key, invocation_id, now() + make_interval(secs => ${IDEMPOTENCY_TTL_SECONDS}) from wanted
      on conflict (function_name, key) do update
        set invocation_id = excluded.invocation_id, expires_at = excluded.expires_at
        where ledger.idempotency_keys.expires_at < now()
      returning function_name, key, invocation_id
    )
    select function_name, key, invocation_id from claimed
    union all
    select k.function_name, k.key, k.invocation_id from ledger.idempotency_keys k
    join wanted w using (function_name, key)
    where not exists (select 1 from claimed c where c.function_name = k.function_name and c.key = k.key)`.execute(tx);
  const owners = new Map(rows.map((r) => [`${r.function_name}\u0000${r.key}`, r.invocation_id]));
  // A key inserted by a concurrent transaction that committed while our insert waited on it
  // is invisible to the statement above (its snapshot is older); a new statement sees it.
  const unseen = keys.filter((k) => !owners.has(`${k.fn}\u0000${k.key}`));
  if (unseen.length > 0) {
    const { rows: late } = await sql<{ function_name: string; key: string; invocation_id: string }>`
      select k.function_name, k.key, k.invocation_id from ledger.idempotency_keys k
      join unnest(${unseen.map((k) => k.fn)}::text[], ${unseen.map((k) => k.key)}::text[]) as w(function_name, key) using (function_name, key)`.execute(tx);
    for (const r of late) owners.set(`${r.function_name}\u0000${r.key}`, r.invocation_id);
  }
  return owners;
}

export interface InvocationView extends InvocationState {
  payload: unknown;
  result: unknown;
  error: FunctionErrorData | null;
  events: LedgerEvent[];
}

/** An events row as selected (position, invocation_id, seq, type, attempt, data, occurred_at). */
export interface EventRowRaw {
  position: string;
  invocation_id: string;
  seq: number;
  type: string;
  attempt: number | null;
  data: unknown;
  occurred_at: Date;
}

export const toLedgerEvent = (r: EventRowRaw): LedgerEvent =>
  ({
    position: r.position,
    invocationId: r.invocation_id,
    seq: r.seq,
    type: r.type,
    attempt: r.attempt,
    data: r.data,
    occurredAt: r.occurred_at,
  }) as LedgerEvent;

/** Payload, last result and last error come from the events; the rest from the projection. */
export function viewOf(state: InvocationState, events: LedgerEvent[]): InvocationView {
  let payload: unknown = null;
  let result: unknown = null;
  let error: FunctionErrorData | null = null;
  for (const e of events) {
    if (e.type === 'accepted') payload = e.data.payload;
    else if (e.type === 'succeeded') {
      result = e.data.result;
      error = null;
    } else if (e.type === 'failed') error = e.data.error;
    else if (e.type === 'redriven') result = null;
  }
  if (state.status === 'succeeded') error = null;
  return { ...state, payload, result, error, events };
}

export async function eventsOf(db: Executor, ids: readonly string[]): Promise<Map<string, LedgerEvent[]>> {
  // One id, the common case (a timeline, a GraphQL invocation): a named statement whose
  // generic plan prunes ledger.events' partitions by the id at run time. `= any($1)` is
  // not pruned at run time and reads every month (docs/benchmarks.md, the partitioned
  // layout against the unpartitioned one).
  const { rows } =
    ids.length === 1
      ? await sql<EventRowRaw>`${sql.raw(PREPARED)}
          select position, invocation_id, seq, type, attempt, data, occurred_at from ledger.events
          where invocation_id = ${ids[0]}::uuid order by seq`.execute(db)
      : await sql<EventRowRaw>`
          select position, invocation_id, seq, type, attempt, data, occurred_at from ledger.events
          where invocation_id = any(${ids}::uuid[]) order by invocation_id, seq`.execute(db);
  const out = new Map<string, LedgerEvent[]>(ids.map((id) => [id, []]));
  for (const r of rows) out.get(r.invocation_id)?.push(toLedgerEvent(r));
  return out;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function getInvocation(db: Executor, id: string): Promise<InvocationView | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<Parameters<typeof stateFromRow>[0]>`
    select i.*, q.run_at, q.locked_by from ledger.invocations i
    left join ledger.queue q on q.invocation_id = i.id where i.id = ${id}::uuid`.execute(db);
  if (!rows[0]) return null;
  const events = (await eventsOf(db, [id])).get(id) ?? [];
  return viewOf(stateFromRow(rows[0]), events);
}

export async function requireInvocation(db: Executor, id: string): Promise<InvocationView> {
  const view = await getInvocation(db, id);
  if (!view) throw new LedgerError('InvocationNotFound', `Invocation not found: ${id}`);
  return view;
}

/** The last 4 KB of what an attempt printed (X-Amz-Log-Result). */
export async function attemptLogTail(db: Executor, id: string, attempt: number, bytes = 4096): Promise<string> {
  const { rows } = await sql<{ log: string }>`
    select log from ledger.attempt_logs where invocation_id = ${id}::uuid and attempt = ${attempt}`.execute(db);
  const buf = Buffer.from(rows[0]?.log ?? '', 'utf8');
  return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
}

export interface AttemptLogText {
  attempt: number;
  /** what the attempt printed: its last 64 KB */
  log: string;
}

/** The stored log of every attempt of these invocations, by invocation, oldest attempt first. */
export async function attemptLogsOf(db: Executor, ids: readonly string[]): Promise<Map<string, AttemptLogText[]>> {
  const valid = ids.filter((id) => UUID.test(id));
  const out = new Map<string, AttemptLogText[]>(ids.map((id) => [id, []]));
  if (valid.length === 0) return out;
  const { rows } = await sql<{ invocation_id: string; attempt: number; log: string }>`
    select invocation_id, attempt, log from ledger.attempt_logs
    where invocation_id = any(${valid}::uuid[]) order by invocation_id, attempt`.execute(db);
  for (const r of rows) out.get(r.invocation_id)?.push({ attempt: r.attempt, log: r.log });
  return out;
}

async function transition(db: Db, ids: readonly string[], events: NewEvent[], what: string): Promise<InvocationState[]> {
  for (const id of ids) if (!UUID.test(id)) throw new LedgerError('InvocationNotFound', `Invocation not found: ${id}`);
  return db.transaction().execute(async (tx) => {
    const states = await loadStates(tx, ids);
    for (const id of ids) if (!states.has(id)) throw new LedgerError('InvocationNotFound', `Invocation not found: ${id}`);
    const { results, rejected } = await appendBatch(
      tx,
      ids.map((id) => {
        const prior = states.get(id) as InvocationState;
        return { invocationId: id, expectedSeq: prior.lastSeq, prior, events };
      }),
    );
    if (rejected[0]) {
      const err = rejected[0].error;
      if (err instanceof SequenceConflict) throw err;
      throw new LedgerError('LifecycleViolation', `cannot ${what} ${rejected[0].invocationId}: ${err.message}`);
    }
    return results.map((r) => r.state);
  });
}

/** `redriven`: a dead letter is queued again with a fresh retry budget. */
export function redrive(db: Db, ids: readonly string[], by: string): Promise<InvocationState[]> {
  return transition(db, ids, redriveEvents(by), 'redrive');
}

/** `cancelled`: only queued or retry-scheduled invocations. */
export function cancel(db: Db, ids: readonly string[], reason: string): Promise<InvocationState[]> {
  return transition(db, ids, cancelEvents(reason), 'cancel');
}


/** Which of these invocations have ended (one query for any number of waiters). */
export async function finishedAmong(db: Executor, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<{ id: string }>`
    select id from ledger.invocations
    where id = any(${ids}::uuid[]) and status = any(${[...TERMINAL_STATUSES]}::text[])`.execute(db);
  return rows.map((r) => r.id);
}
