// What follows, decided in one place (docs/architecture.md#decisions). Given an
// invocation's state, its limits and the clock, these functions say which events come
// next: at a claim (start, dead-letter, or wait for a concurrency slot), after an
// attempt's outcome (succeeded; or failed, then retried or dead-lettered), at a lease's
// expiry, on redrive and on cancel. Pure: no SQL, no clock of their own (`now` and
// `random` are inputs), so the property tests pin them. The callers (apps/worker/claim.ts,
// apps/worker/leases.ts, db/attempts.ts, db/invocations.ts) read rows, call these, and
// hand the events to the writer; db/lifecycle.ts stays the judge of whether they may follow.
import type { FunctionVersion } from './functions.ts';
import { retryDelayMs, type DeadLetterReason, type FunctionErrorData, type InvocationState, type NewEvent } from './lifecycle.ts';

export type Outcome =
  | { ok: true; result: unknown; durationMs: number; log?: string }
  | { ok: false; error: FunctionErrorData; durationMs: number; log?: string };

/** the limits a failure is decided by: the function's, or the invocation's own (db/retry-policy.ts) */
export type RetryPolicy = Pick<FunctionVersion, 'maxRetries' | 'retryBaseDelayMs' | 'retryMaxDelayMs' | 'maxEventAgeSeconds'>;

/** The errorType of an attempt whose worker's lease expired (docs/worker.md#leases). */
export const WORKER_LOST = 'WorkerLost';

/** Whether `at` is past the invocation's maximum event age (docs/worker.md#retries): the one age check. */
export function pastEventAge(state: Pick<InvocationState, 'acceptedAt'>, policy: Pick<RetryPolicy, 'maxEventAgeSeconds'>, at: Date): boolean {
  return at.getTime() > state.acceptedAt.getTime() + policy.maxEventAgeSeconds * 1000;
}

export type ClaimDecision =
  /** run it now: append `started` */
  | { kind: 'start' }
  /** it may not run: append `dead_lettered` with this reason */
  | { kind: 'dead_letter'; reason: 'EventAgeExceeded' | 'ZeroReservedConcurrency' }
  /** it needs one of its function's reserved concurrency slots: start it if one is free, else throttle */
  | { kind: 'needs_slot' };

/**
 * What a claim does with a due async invocation: too old to run (checked at the claim's
 * `now`) or its function reserved zero concurrency is a dead letter; a function with
 * reserved concurrency needs a free slot; anything else starts.
 */
export function claimDecision(state: InvocationState, policy: RetryPolicy, reservedConcurrency: number | null, now: Date): ClaimDecision {
  if (pastEventAge(state, policy, now)) return { kind: 'dead_letter', reason: 'EventAgeExceeded' };
  if (reservedConcurrency === 0) return { kind: 'dead_letter', reason: 'ZeroReservedConcurrency' };
  if (reservedConcurrency !== null) return { kind: 'needs_slot' };
  return { kind: 'start' };
}

/** The events that start the next attempt on `workerId`. */
export function startEvents(state: InvocationState, workerId: string): NewEvent[] {
  return [{ type: 'started', data: { attempt: state.attempts + 1, workerId } }];
}

/** The event that dead-letters an invocation that may not run. */
export function deadLetterEvents(reason: DeadLetterReason): NewEvent[] {
  return [{ type: 'dead_lettered', data: { reason } }];
}

/**
 * When throttled work (no free slot: not an attempt, so no event and no retry spent) is
 * due again: backing off with its age, up to `maxDelayMs`, jittered by `random` (0–1),
 * and never later than just past its maximum event age, so the claim then dead-letters it.
 */
export function throttledRunAt(state: InvocationState, policy: RetryPolicy, now: Date, maxDelayMs: number, random: number): Date {
  const ageMs = now.getTime() - state.acceptedAt.getTime();
  const deadline = state.acceptedAt.getTime() + policy.maxEventAgeSeconds * 1000 + 1;
  const delay = Math.min(maxDelayMs, Math.max(50, ageMs / 2)) * (0.5 + random / 2);
  return new Date(Math.min(now.getTime() + delay, deadline));
}

/**
 * The events an outcome appends to a running invocation: `succeeded`; or `failed`, and
 * for an async invocation then `retried` with the backoff of docs/worker.md, or
 * `dead_lettered` once its retries are spent (RetriesExhausted) or the retry would run
 * past its maximum event age (EventAgeExceeded). A sync failure is terminal.
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
  const failed = (willRetry: boolean): NewEvent => ({ type: 'failed', data: { attempt, error: outcome.error, willRetry, durationMs: outcome.durationMs } });
  if (state.invocationType !== 'async') return [failed(false)];
  const failures = state.failuresSinceRedrive + 1;
  if (failures > policy.maxRetries) return [failed(false), ...deadLetterEvents('RetriesExhausted')];
  const delayMs = retryDelayMs(failures, policy.retryBaseDelayMs, policy.retryMaxDelayMs, random);
  const runAt = new Date(now.getTime() + delayMs);
  if (pastEventAge(state, policy, runAt)) return [failed(false), ...deadLetterEvents('EventAgeExceeded')];
  return [failed(true), { type: 'retried', data: { attempt: attempt + 1, runAt: runAt.toISOString(), delayMs } }];
}

/**
 * The outcome recorded for an attempt whose lease expired at `expiredAt` without one: a
 * WorkerLost failure naming the worker, decided then like any failure (outcomeEvents).
 */
export function leaseExpiredOutcome(
  state: InvocationState,
  lease: { lockedBy: string | null; expiredAt: Date },
  now: Date,
): Outcome & { ok: false } {
  return {
    ok: false,
    error: {
      errorType: WORKER_LOST,
      errorMessage: `Worker ${lease.lockedBy} lost attempt ${state.attempts}: its lease expired at ${lease.expiredAt.toISOString()}`,
      trace: [],
    },
    durationMs: Math.max(0, now.getTime() - state.updatedAt.getTime()),
  };
}

/** `redriven`: a dead letter queued again with a fresh retry budget. */
export function redriveEvents(by: string): NewEvent[] {
  return [{ type: 'redriven', data: { by } }];
}

/** `cancelled`: allowed while queued or retry-scheduled (db/lifecycle.ts judges). */
export function cancelEvents(reason: string): NewEvent[] {
  return [{ type: 'cancelled', data: { reason } }];
}
