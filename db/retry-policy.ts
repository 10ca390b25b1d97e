// The retry limits an async invocation runs under (docs/worker.md#retries): its own, when
// its `accepted` event carries them (a schedule tick carries its schedule's RetryPolicy,
// docs/schedules.md#retries-and-the-attempt-number), else its function version's. Every
// decision that reads a limit (db/decisions.ts: the retry or dead letter after a failure,
// the event-age check of a claim, the reaper; and verify) takes it from here.
import type { RetryPolicy } from './decisions.ts';
import type { InvocationRetryPolicy } from './lifecycle.ts';

/**
 * The limits of one invocation: `own` (its accepted event's `retryPolicy`, as read from
 * the ledger) replaces the function's retry count and event age; the backoff between
 * attempts stays the function's.
 */
export function retryPolicyOf(fn: RetryPolicy, own: InvocationRetryPolicy | null | undefined): RetryPolicy {
  if (!own) return fn;
  return { maxRetries: own.maxRetries, maxEventAgeSeconds: own.maxEventAgeSeconds, retryBaseDelayMs: fn.retryBaseDelayMs, retryMaxDelayMs: fn.retryMaxDelayMs };
}
