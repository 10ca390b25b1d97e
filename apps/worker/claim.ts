// Claiming due async work: one SKIP LOCKED statement picks a batch, and one append starts
// the attempts (or dead-letters what may not run) in the same transaction.
import { sql } from 'kysely';
import type { FunctionVersion, FunctionVersionCache } from '../../db/functions.ts';
import type { InvocationState, NewEvent } from '../../db/lifecycle.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { lockFreeSlots } from '../../db/concurrency.ts';
import { appendBatch, stateFromRow, type AppendRequest } from '../../db/writer.ts';
import type { FinishedInvocation } from './destinations.ts';

/** A started attempt this worker now holds. */
export interface ClaimedAttempt {
  /** the running state, as the started append returned it */
  state: InvocationState;
  fn: FunctionVersion;
  payload: unknown;
  leaseMs: number;
}

export interface ClaimOptions {
  workerId: string;
  limit: number;
  versions: FunctionVersionCache;
  /** lease = timeoutMs + leaseGraceMs */
  leaseGraceMs: number;
  /** throttled (over reservedConcurrency) work waits at most this long before it is tried again */
  throttleMaxDelayMs: number;
  /** the completion hook for what the claim dead-letters (destinations), in the claim's transaction */
  onTerminal?: (tx: Executor, finished: FinishedInvocation[]) => Promise<void>;
  random?: () => number;
}

export interface ClaimResult {
  /** rows the claim picked, whatever became of them */
  picked: number;
  started: ClaimedAttempt[];
  deadLettered: InvocationState[];
  /** throttled: pushed back without an event, with the earliest new due time */
  throttled: { functionName: string; runAt: Date }[];
}

type ClaimRow = Parameters<typeof stateFromRow>[0] & { payload: unknown; reserved: number | null; db_now: Date };

/**
 * Picks up to `limit` due async invocations, oldest due first. The queue rows are locked
 * first, in a materialized CTE so the LIMIT applies before anything is joined; then the
 * projection rows (SKIP LOCKED: one that cancel/redrive holds is simply left for the next
 * claim), so no one races the append on the same invocation.
 */
export async function claimDueInvocations(db: Db, o: ClaimOptions): Promise<ClaimResult> {
  return db.transaction().execute(async (tx) => {
    // Right after a burst of accepts the statistics still say the queue is tiny, and the
    // planner would bitmap-scan every runnable row before the LIMIT (hundreds of ms).
    // The partial index in run_at order with the LIMIT first is right at any size.
    await sql`set local enable_bitmapscan = off`.execute(tx);
    const { rows } = await sql<ClaimRow>`
      with picked as materialized (
        select q.invocation_id, q.run_at, q.locked_by from ledger.queue q
        where q.locked_by is null and q.run_at <= now() and q.invocation_type = 'async'
        order by q.run_at
        limit ${o.limit}
        for update skip locked
      )
      select i.*, p.run_at, p.locked_by, e.data -> 'payload' as payload, c.reserved, now() as db_now
      from picked p
      join ledger.invocations i on i.id = p.invocation_id
      join ledger.events e on e.invocation_id = p.invocation_id and e.seq = 1
      left join ledger.function_concurrency c on c.name = i.function_name
      order by p.run_at
      for update of i skip locked`.execute(tx);
    const result: ClaimResult = { picked: rows.length, started: [], deadLettered: [], throttled: [] };
    if (rows.length === 0) return result;
    const now = (rows[0] as ClaimRow).db_now;
    const random = o.random ?? Math.random;

    // function versions are immutable: cached by (name, version) for the process
    const fns = new Map<string, FunctionVersion | null>();
    await Promise.all(
      [...new Set(rows.map((r) => `${r.function_name}\u0000${r.function_version}`))].map(async (k) => {
        const [name, version] = k.split('\u0000') as [string, string];
        fns.set(k, await o.versions.get(name, Number(version)));
      }),
    );

    const toStart: { row: ClaimRow; state: InvocationState; fn: FunctionVersion }[] = [];
    const toDeadLetter: { row: ClaimRow; state: InvocationState; fn: FunctionVersion; reason: 'EventAgeExceeded' | 'ZeroReservedConcurrency' }[] = [];
    const limited = new Map<string, { row: ClaimRow; state: InvocationState; fn: FunctionVersion }[]>();
    for (const row of rows) {
      const state = stateFromRow(row);
      const fn = fns.get(`${row.function_name}\u0000${row.function_version}`) ?? missingVersion(row);
      if (now.getTime() - state.acceptedAt.getTime() > fn.maxEventAgeSeconds * 1000) {
        toDeadLetter.push({ row, state, fn, reason: 'EventAgeExceeded' });
      } else if (row.reserved === 0) {
        toDeadLetter.push({ row, state, fn, reason: 'ZeroReservedConcurrency' });
      } else if (row.reserved !== null) {
        let list = limited.get(row.function_name);
        if (!list) limited.set(row.function_name, (list = []));
        list.push({ row, state, fn });
      } else {
        toStart.push({ row, state, fn });
      }
    }

    const throttled: { id: string; runAt: Date; functionName: string }[] = [];
    if (limited.size > 0) {
      const slots = await lockFreeSlots(tx, [...limited.keys()]);
      for (const [name, list] of limited) {
        const free = slots.get(name) ?? 0;
        list.forEach((item, i) => {
          if (i < free) return toStart.push(item);
          // throttled: not an attempt, so no event and no retry spent; back off with age
          const ageMs = now.getTime() - item.state.acceptedAt.getTime();
          const deadline = item.state.acceptedAt.getTime() + item.fn.maxEventAgeSeconds * 1000 + 1;
          const delay = Math.min(o.throttleMaxDelayMs, Math.max(50, ageMs / 2)) * (0.5 + random() / 2);
          throttled.push({ id: item.state.id, functionName: name, runAt: new Date(Math.min(now.getTime() + delay, deadline)) });
        });
      }
    }

    const requests: AppendRequest[] = [];
    for (const { state, fn } of toStart) {
      requests.push({
        invocationId: state.id,
        expectedSeq: state.lastSeq,
        prior: state,
        leaseMs: fn.timeoutMs + o.leaseGraceMs,
        events: [{ type: 'started', data: { attempt: state.attempts + 1, workerId: o.workerId } }],
      });
    }
    for (const { state, reason } of toDeadLetter) {
      const event: NewEvent = { type: 'dead_lettered', data: { reason } };
      requests.push({ invocationId: state.id, expectedSeq: state.lastSeq, prior: state, events: [event] });
    }
    const { results, rejected } = await appendBatch(tx, requests);
    if (rejected.length > 0) {
      // cannot happen while we hold the row locks; surface it rather than run blind
      throw rejected[0]?.error;
    }
    const byId = new Map(results.map((r) => [r.invocationId, r.state]));
    for (const { row, state, fn } of toStart) {
      result.started.push({ state: byId.get(state.id) as InvocationState, fn, payload: row.payload, leaseMs: fn.timeoutMs + o.leaseGraceMs });
    }
    const finished: FinishedInvocation[] = [];
    for (const { row, state, fn } of toDeadLetter) {
      const final = byId.get(state.id) as InvocationState;
      result.deadLettered.push(final);
      finished.push({ state: final, fn, payload: row.payload });
    }
    if (throttled.length > 0) {
      await sql`
        update ledger.queue q set run_at = t.run_at
        from unnest(${throttled.map((t) => t.id)}::uuid[], ${throttled.map((t) => t.runAt.toISOString())}::timestamptz[]) as t(id, run_at)
        where q.invocation_id = t.id`.execute(tx);
      result.throttled = throttled.map((t) => ({ functionName: t.functionName, runAt: t.runAt }));
    }
    if (finished.length > 0 && o.onTerminal) await o.onTerminal(tx, finished);
    return result;
  });
}


/** Versions are never deleted; if one is missing anyway, the attempt fails with defaults. */
export function missingVersion(row: { function_name: string; function_version: number }): FunctionVersion {
  return {
    name: row.function_name,
    version: row.function_version,
    createdAt: new Date(0),
    runtime: 'MODULE',
    handler: null,
    url: null,
    timeoutMs: 3_000,
    memoryMb: 256,
    maxRetries: 2,
    retryBaseDelayMs: 60_000,
    retryMaxDelayMs: 900_000,
    maxEventAgeSeconds: 21_600,
    reservedConcurrency: null,
    onSuccess: null,
    onFailure: null,
    isolation: 'thread',
    secret: null,
    codeHash: null,
  };
}
