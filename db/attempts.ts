// What an attempt's outcome writes: `succeeded`, or `failed` followed by its decision
// (`retried` with the backoff of ledger.md §2, or `dead_lettered`). Shared by the sync
// path of the API and by the async worker, so both record outcomes the same way.
import type { FunctionVersion } from './functions.ts';
import { retryDelayMs, type FunctionErrorData, type InvocationState, type NewEvent } from './lifecycle.ts';
import { appendBatch, type AppendRejection, type AppendResult } from './writer.ts';
import type { Executor } from './schema.ts';

export type Outcome =
  | { ok: true; result: unknown; durationMs: number; log?: string }
  | { ok: false; error: FunctionErrorData; durationMs: number; log?: string };

type RetryPolicy = Pick<FunctionVersion, 'maxRetries' | 'retryBaseDelayMs' | 'retryMaxDelayMs' | 'maxEventAgeSeconds'>;

/**
 * The events an outcome appends to a running invocation. Pure: `now` and `random`
 * are inputs so that the property tests can pin them.
 */
export function outcomeEvents(
  state: InvocationState,
  policy: RetryPolicy,
  outcome: Outcome,
  now: Date,
  random: number = Math.random(),
): NewEvent[] {
  const attempt = state.attempts;
  if (outcome.ok) {
    return [{ type: 'succeeded', data: { attempt, result: outcome.result ?? null, durationMs: outcome.durationMs } }];
  }
  if (state.invocationType !== 'async') {
    return [{ type: 'failed', data: { attempt, error: outcome.error, willRetry: false, durationMs: outcome.durationMs } }];
  }
  const failures = state.failuresSinceRedrive + 1;
  if (failures > policy.maxRetries) {
    return [
      { type: 'failed', data: { attempt, error: outcome.error, willRetry: false, durationMs: outcome.durationMs } },
      { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
    ];
  }
  const delayMs = retryDelayMs(failures, policy.retryBaseDelayMs, policy.retryMaxDelayMs, random);
  const runAt = new Date(now.getTime() + delayMs);
  if (runAt.getTime() > state.acceptedAt.getTime() + policy.maxEventAgeSeconds * 1000) {
    return [
      { type: 'failed', data: { attempt, error: outcome.error, willRetry: false, durationMs: outcome.durationMs } },
      { type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } },
    ];
  }
  return [
    { type: 'failed', data: { attempt, error: outcome.error, willRetry: true, durationMs: outcome.durationMs } },
    { type: 'retried', data: { attempt: attempt + 1, runAt: runAt.toISOString(), delayMs } },
  ];
}

export interface FinishedAttempt {
  /** the running state, as returned by the append that started the attempt */
  state: InvocationState;
  policy: RetryPolicy;
  outcome: Outcome;
}

/** Records many outcomes in one statement. */
export async function recordOutcomes(
  db: Executor,
  finished: readonly FinishedAttempt[],
  now: Date = new Date(),
): Promise<{ results: AppendResult[]; rejected: AppendRejection[] }> {
  return appendBatch(
    db,
    finished.map(({ state, policy, outcome }) => ({
      invocationId: state.id,
      expectedSeq: state.lastSeq,
      prior: state,
      events: outcomeEvents(state, policy, outcome, now),
      ...(outcome.log ? { log: { attempt: state.attempts, text: outcome.log } } : {}),
    })),
  );
}
