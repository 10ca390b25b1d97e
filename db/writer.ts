// The one writer. Every event enters `ledger.events` here, together with the
// projections it implies (`ledger.invocations`, `ledger.queue`, attempt logs), in one
// statement per batch: the events, the projection upserts and the queue changes are
// data-modifying CTEs over arrays passed through unnest, so a batch of any size costs
// one round trip. The lifecycle rules are checked in JS before anything is sent. The
// projection rows and their CTEs come from db/projections.ts, which a rebuild reuses.
import { sql } from 'kysely';
import { PREPARED } from './connection.ts';
import { plain, ProjectionRows, projectionCtes, TX_NOW } from './projections.ts';
import { SequenceConflict } from './errors.ts';
import {
  apply,
  attemptOf,
  isQueued,
  LifecycleViolation,
  whyNotAtEnd,
  type InvocationState,
  type NewEvent,
} from './lifecycle.ts';
import type { Executor } from './schema.ts';

export interface AppendRequest {
  invocationId: string;
  /** seq of the last event the caller saw: 0 for a new invocation */
  expectedSeq: number;
  events: NewEvent[];
  /**
   * The state the caller already holds (from a claim or a previous append). When
   * given, the writer does not read it again; the unique (invocation_id, seq) index
   * still refuses a stale one.
   */
  prior?: InvocationState;
  /** lease length for an attempt this request starts */
  leaseMs?: number;
  /** what the attempt printed, kept with it */
  log?: { attempt: number; text: string };
}

export interface AppendResult {
  invocationId: string;
  state: InvocationState;
}

/** A rejected request inside a batch: the others still commit. */
export interface AppendRejection {
  invocationId: string;
  error: SequenceConflict | LifecycleViolation;
}

export const DEFAULT_LEASE_MS = 5 * 60_000;
/** NOTIFYed by every append: "the ledger moved" (the live feed, idempotent waiters) */
export const EVENTS_CHANNEL = 'ledger_events';
/** NOTIFYed only when an append makes async work due now (accept, redrive): the claim loops */
export const WORK_CHANNEL = 'ledger_work';

/** Appends to one invocation; throws SequenceConflict or LifecycleViolation. */
export async function appendEvents(db: Executor, request: AppendRequest): Promise<AppendResult> {
  const { results, rejected } = await appendBatch(db, [request]);
  if (rejected[0]) throw rejected[0].error;
  return results[0] as AppendResult;
}

/**
 * Appends for many invocations in one statement. Requests that break the lifecycle or
 * whose expected seq is stale are returned in `rejected`; the rest commit together.
 * A concurrent writer racing on the same new seq surfaces as SequenceConflict thrown
 * for the whole batch (the database refused it; nothing was written).
 */
export async function appendBatch(
  db: Executor,
  requests: readonly AppendRequest[],
): Promise<{ results: AppendResult[]; rejected: AppendRejection[] }> {
  if (requests.length === 0) return { results: [], rejected: [] };
  if (requests.some((r) => r.expectedSeq > 0 && !r.prior) && !db.isTransaction) {
    // the row locks taken while reading states must last until the write
    return db.transaction().execute((tx) => appendBatch(tx, requests));
  }
  const needsLoad = requests.filter((r) => r.expectedSeq > 0 && !r.prior).map((r) => r.invocationId);
  const loaded = needsLoad.length > 0 ? await loadStates(db, needsLoad) : new Map<string, InvocationState>();

  const planned: { req: AppendRequest; state: InvocationState }[] = [];
  const rejected: AppendRejection[] = [];
  for (const req of requests) {
    const prior = req.expectedSeq === 0 ? undefined : (req.prior ?? loaded.get(req.invocationId));
    const actual = prior?.lastSeq ?? 0;
    if (actual !== req.expectedSeq) {
      rejected.push({ invocationId: req.invocationId, error: new SequenceConflict(req.invocationId, req.expectedSeq, actual) });
      continue;
    }
    try {
      let state = prior;
      for (const e of req.events) state = apply(state, e, req.invocationId, TX_NOW);
      if (!state || req.events.length === 0) throw new LifecycleViolation(req.invocationId, state?.lastType ?? null, 'accepted', 'nothing to append');
      const unfinished = whyNotAtEnd(state);
      if (unfinished !== null) throw new LifecycleViolation(req.invocationId, 'failed', state.pendingAfterFailure ?? 'failed', unfinished);
      // docs/event-model.md A2: nothing claims a sync or poll invocation later, so its attempt starts in its accept
      if (state.invocationType !== 'async' && req.events[0]?.type === 'accepted' && !req.events.some((e) => e.type === 'started')) {
        throw new LifecycleViolation(req.invocationId, 'accepted', req.events[1]?.type ?? 'started', `a ${state.invocationType} invocation is accepted with its started`);
      }
      planned.push({ req, state });
    } catch (e) {
      if (!(e instanceof LifecycleViolation)) throw e;
      rejected.push({ invocationId: req.invocationId, error: e });
    }
  }
  if (planned.length === 0) return { results: [], rejected };

  // the events' occurred_at and every projection timestamp are this statement's time
  const txNow = await writeStatement(db, planned);
  const results = planned.map(({ req, state }) => ({ invocationId: req.invocationId, state: resolveNow(state, txNow) }));
  return { results, rejected };
}

/**
 * Puts the statement's time where the fold wrote TX_NOW. In place: every planned state is
 * a new object from `apply`, not the caller's, and this runs twice per attempt (a profile of
 * the drain had the copy it used to make among the worker's larger costs).
 */
function resolveNow(state: InvocationState, now: Date): InvocationState {
  const marker = TX_NOW.getTime();
  if (state.acceptedAt.getTime() === marker) state.acceptedAt = now;
  if (state.startedAt !== null && state.startedAt.getTime() === marker) state.startedAt = now;
  if (state.finishedAt !== null && state.finishedAt.getTime() === marker) state.finishedAt = now;
  if (state.updatedAt.getTime() === marker) state.updatedAt = now;
  if (state.runAt !== null && state.runAt.getTime() === marker) state.runAt = now;
  return state;
}

async function writeStatement(
  db: Executor,
  planned: readonly { req: AppendRequest; state: InvocationState }[],
): Promise<Date> {
  // events
  const eInv: string[] = [];
  const eSeq: number[] = [];
  const eType: string[] = [];
  const eAttempt: (number | null)[] = [];
  const eData: string[] = [];
  // ledger.invocations, ledger.queue, ledger.attempt_logs (db/projections.ts)
  const rows = new ProjectionRows();
  // sync attempts, `started`, outcomes and retries due later wake no claim loop: the
  // worker that schedules a retry wakes itself at its runAt, and polling covers the rest
  let workDue = false;
  const now = Date.now();

  for (const { req, state } of planned) {
    let seq = req.expectedSeq;
    for (const e of req.events) {
      eInv.push(req.invocationId);
      eSeq.push(++seq);
      eType.push(e.type);
      eAttempt.push(attemptOf(e));
      eData.push(JSON.stringify(e.data));
    }
    rows.invocation(state);
    if (isQueued(state)) {
      // a prior state read back holds acceptedAt in milliseconds: the row a redrive inserts
      // again copies the projection's microseconds. Any other append to an unfinished
      // invocation updates an existing row, which keeps its own.
      rows.queue(state, { leaseMs: req.leaseMs ?? DEFAULT_LEASE_MS, acceptedAt: req.events.some((e) => e.type === 'redriven') ? 'projection' : 'state' });
      if (state.status !== 'running' && state.invocationType === 'async' && (state.runAt === null || state.runAt.getTime() === TX_NOW.getTime() || state.runAt.getTime() <= now)) workDue = true;
    } else if (req.expectedSeq > 0) {
      rows.dequeue(state.id);
    }
    if (req.log) rows.log(req.invocationId, req.log.attempt, req.log.text);
  }

  const result = await sql<{ occurred_ms: number }>`${sql.raw(PREPARED)}
    with ev as (
      insert into ledger.events (invocation_id, seq, type, attempt, data)
      select * from unnest(${plain(eInv)}::uuid[], ${plain(eSeq)}::int[], ${plain(eType)}::text[], ${plain(eAttempt)}::int[], ${eData}::jsonb[])
    ), ${projectionCtes(rows, 'append')}, wake as (
      select pg_notify(${EVENTS_CHANNEL}, '') as events,
             case when ${workDue}::boolean then pg_notify(${WORK_CHANNEL}, '') end as work
    )
    -- one row, not one per event: nothing needs them back. Epoch milliseconds, because a
    -- float8 costs the caller a parseFloat where a timestamptz costs a regex
    select (extract(epoch from statement_timestamp()) * 1000)::float8 as occurred_ms from wake
  `
    .execute(db)
    .catch((e: unknown) => {
      // the partition's index reports it: events_yYYYYmMM_invocation_id_seq_key (migrations/0020)
      if ((e as { code?: string }).code === '23505' && /events_\w*invocation_id_seq_key|invocations_pkey/.test(String((e as { constraint?: string }).constraint))) {
        const first = planned[0] as { req: AppendRequest };
        throw new SequenceConflict(first.req.invocationId, first.req.expectedSeq, null);
      }
      throw e;
    });
  return new Date((result.rows[0] as { occurred_ms: number }).occurred_ms);
}

interface StateRow {
  id: string;
  function_name: string;
  function_version: number;
  invocation_type: string;
  status: string;
  attempts: number;
  failures_since_redrive: number;
  last_seq: number;
  last_event_type: string;
  idempotency_key: string | null;
  error_type: string | null;
  dead_letter_reason: string | null;
  accepted_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
  run_at: Date | null;
  locked_by: string | null;
}

export function stateFromRow(r: StateRow): InvocationState {
  return {
    id: r.id,
    functionName: r.function_name,
    functionVersion: r.function_version,
    invocationType: r.invocation_type as InvocationState['invocationType'],
    status: r.status as InvocationState['status'],
    attempts: r.attempts,
    failuresSinceRedrive: r.failures_since_redrive,
    lastSeq: r.last_seq,
    lastType: r.last_event_type as InvocationState['lastType'],
    pendingAfterFailure: null,
    idempotencyKey: r.idempotency_key,
    errorType: r.error_type,
    deadLetterReason: r.dead_letter_reason as InvocationState['deadLetterReason'],
    acceptedAt: r.accepted_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    updatedAt: r.updated_at,
    runAt: r.run_at,
    workerId: r.locked_by,
  };
}

/** Current states, row-locked so that concurrent writers to one invocation queue up. */
export async function loadStates(db: Executor, ids: readonly string[]): Promise<Map<string, InvocationState>> {
  const { rows } = await sql<StateRow>`
    select i.*, q.run_at, q.locked_by
    from ledger.invocations i left join ledger.queue q on q.invocation_id = i.id
    where i.id = any(${ids}::uuid[])
    for update of i`.execute(db);
  return new Map(rows.map((r) => [r.id, stateFromRow(r)]));
}
