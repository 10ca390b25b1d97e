// Recording an attempt's outcome: made storable, then appended with the events
// db/decisions.ts outcomeEvents decides (`succeeded`, or `failed` and its retry or dead
// letter). Shared by the sync path of the API and by the async worker, so both record
// outcomes the same way.
import { outcomeEvents, type Outcome, type RetryPolicy } from './decisions.ts';
import type { InvocationState } from './lifecycle.ts';
import { storableText, whyNotStorableJson } from './storable.ts';
import { appendBatch, type AppendRejection, type AppendResult } from './writer.ts';
import type { Executor } from './schema.ts';

export type { Outcome, RetryPolicy } from './decisions.ts';

/** A result that cannot be kept (not JSON, or not storable): the runtimes' name for it. */
export const INVALID_RESULT = 'Runtime.InvalidResult';
/** The database refused an attempt's outcome although it passed the checks (docs/guarantees.md). */
export const OUTCOME_NOT_STORED = 'OutcomeNotStored';

/**
 * The outcome as the ledger can store it, and as the sync caller is answered: a result
 * PostgreSQL cannot hold (docs/http-api.md#limits) becomes a function error of its own
 * attempt; error text and the log keep what they can, with U+FFFD for the rest.
 */
export function storableOutcome<O extends Outcome>(outcome: O): O {
  const log = outcome.log === undefined ? {} : { log: storableText(outcome.log) };
  if (outcome.ok) {
    const why = whyNotStorableJson(outcome.result);
    if (why === null) return { ...outcome, ...log };
    const { result: _dropped, ...rest } = outcome;
    return {
      ...rest,
      ...log,
      ok: false,
      error: { errorType: INVALID_RESULT, errorMessage: `The function's result cannot be stored: ${why}`, trace: [] },
    } as unknown as O;
  }
  const e = outcome.error;
  const trace = Array.isArray(e.trace) ? e.trace.map((l) => storableText(String(l))) : [];
  return { ...outcome, ...log, error: { errorType: storableText(String(e.errorType)), errorMessage: storableText(String(e.errorMessage)), trace } };
}

/**
 * What is recorded instead of an outcome the database refused on its own (the group
 * commit isolated it): a failure of the same attempt that says so, without the result
 * and the log that may have been at fault.
 */
export function outcomeNotStored(outcome: Outcome, error: unknown): Outcome & { ok: false; log: string } {
  const reason = storableText(String((error as Error | null)?.message ?? error)).slice(0, 500);
  return {
    ok: false,
    error: { errorType: OUTCOME_NOT_STORED, errorMessage: `The attempt's outcome could not be stored: ${reason}`, trace: [] },
    durationMs: outcome.durationMs,
    log: '',
  };
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
