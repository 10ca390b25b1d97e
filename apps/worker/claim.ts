// Claiming due async work: one SKIP LOCKED statement picks a batch, and one append starts
// the attempts (or dead-letters what may not run) in the same transaction. What becomes
// of each row is db/decisions.ts's call; this file only reads, asks and appends.
import { lockDueAsync, type DueRow } from '../../db/claims.ts';
import { missingVersion, type FunctionVersion, type FunctionVersionCache } from '../../db/functions.ts';
import { claimDecision, deadLetterEvents, startEvents, throttledRunAt, type RetryPolicy } from '../../db/decisions.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import { retryPolicyOf } from '../../db/retry-policy.ts';
import { tickEvent } from '../../db/schedules/context.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { lockFreeSlots } from '../../db/concurrency.ts';
import { deferThrottled } from '../../db/queue-rows.ts';
import { appendBatch, stateFromRow, type AppendRequest } from '../../db/writer.ts';
import type { FinishedInvocation } from './destinations.ts';

/** A started attempt this worker now holds. */
export interface ClaimedAttempt {
  /** the running state, as the started append returned it */
  state: InvocationState;
  fn: FunctionVersion;
  /** the limits its failure is decided by: its own (a schedule tick's) or its function's */
  policy: RetryPolicy;
  /** the event this attempt receives (a schedule tick's is rendered for the attempt) */
  payload: unknown;
  leaseMs: number;
  /** its depth in a chain of invocations (docs/worker.md), handed to the handler's context */
  chainDepth: number;
  /** the trace context stored with `accepted` (docs/observability.md) */
  trace?: { traceparent: string; tracestate?: string };
  /** the alias or version number the caller named (`accepted`), for the handler's context; null: unqualified */
  qualifier: string | null;
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

type ClaimRow = DueRow;

/**
 * Picks up to `limit` due async invocations, oldest due first. The queue rows are locked
 * first, in a materialized CTE so the LIMIT applies before anything is joined; then the
 * projection rows (SKIP LOCKED: one that cancel/redrive holds is simply left for the next
 * claim), so no one races the append on the same invocation.
 */
export async function claimDueInvocations(db: Db, o: ClaimOptions): Promise<ClaimResult> {
  return db.transaction().execute(async (tx) => {
    const rows = await lockDueAsync(tx, o.limit);
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

    type Picked = { row: ClaimRow; state: InvocationState; fn: FunctionVersion; policy: RetryPolicy };
    const toStart: Picked[] = [];
    const toDeadLetter: (Picked & { reason: 'EventAgeExceeded' | 'ZeroReservedConcurrency' })[] = [];
    const limited = new Map<string, Picked[]>();
    for (const row of rows) {
      const state = stateFromRow(row);
      const fn = fns.get(`${row.function_name}\u0000${row.function_version}`) ?? missingVersion(row);
      const policy = retryPolicyOf(fn, row.retry_policy);
      const decision = claimDecision(state, policy, row.reserved, now);
      if (decision.kind === 'dead_letter') {
        toDeadLetter.push({ row, state, fn, policy, reason: decision.reason });
      } else if (decision.kind === 'needs_slot') {
        let list = limited.get(row.function_name);
        if (!list) limited.set(row.function_name, (list = []));
        list.push({ row, state, fn, policy });
      } else {
        toStart.push({ row, state, fn, policy });
      }
    }

    const throttled: { id: string; runAt: Date; functionName: string }[] = [];
    if (limited.size > 0) {
      const slots = await lockFreeSlots(tx, [...limited.keys()]);
      for (const [name, list] of limited) {
        const free = slots.get(name) ?? 0;
        list.forEach((item, i) => {
          if (i < free) return toStart.push(item);
          throttled.push({ id: item.state.id, functionName: name, runAt: throttledRunAt(item.state, item.policy, now, o.throttleMaxDelayMs, random()) });
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
        events: startEvents(state, o.workerId),
      });
    }
    for (const { state, reason } of toDeadLetter) {
      requests.push({ invocationId: state.id, expectedSeq: state.lastSeq, prior: state, events: deadLetterEvents(reason) });
    }
    const { results, rejected } = await appendBatch(tx, requests);
    if (rejected.length > 0) {
      // cannot happen while we hold the row locks; surface it rather than run blind
      throw rejected[0]?.error;
    }
    const byId = new Map(results.map((r) => [r.invocationId, r.state]));
    for (const { row, state, fn, policy } of toStart) {
      const started = byId.get(state.id) as InvocationState;
      result.started.push({
        state: started,
        fn,
        policy,
        // EventBridge Scheduler substitutes the context attributes per attempt (docs/schedules.md)
        payload: row.schedule_input ? tickEvent(row.schedule_input, started.attempts) : row.payload,
        leaseMs: fn.timeoutMs + o.leaseGraceMs,
        chainDepth: row.chain_depth ?? 0,
        qualifier: row.qualifier,
        ...(row.traceparent ? { trace: { traceparent: row.traceparent, ...(row.tracestate ? { tracestate: row.tracestate } : {}) } } : {}),
      });
    }
    const finished: FinishedInvocation[] = [];
    for (const { row, state, fn } of toDeadLetter) {
      const final = byId.get(state.id) as InvocationState;
      result.deadLettered.push(final);
      finished.push({ state: final, fn, payload: row.payload });
    }
    if (throttled.length > 0) {
      await deferThrottled(tx, throttled);
      result.throttled = throttled.map((t) => ({ functionName: t.functionName, runAt: t.runAt }));
    }
    if (finished.length > 0 && o.onTerminal) await o.onTerminal(tx, finished);
    return result;
  });
}

