// The limits a failure is decided by: an invocation's own replace its function's retry count
// and event age, never its backoff; and outcomeEvents decides by them.
import { describe, expect, it } from 'vitest';
import { outcomeEvents } from './decisions.ts';
import type { InvocationState } from './lifecycle.ts';
import { retryPolicyOf } from './retry-policy.ts';

const fn = { maxRetries: 2, retryBaseDelayMs: 1_000, retryMaxDelayMs: 8_000, maxEventAgeSeconds: 21_600 };
const acceptedAt = new Date('2026-11-30T00:00:00Z');
const running = (failuresSinceRedrive: number): InvocationState => ({
  id: 'i', functionName: 'f', functionVersion: 1, invocationType: 'async', status: 'running', attempts: failuresSinceRedrive + 1,
  failuresSinceRedrive, lastSeq: 2, lastType: 'started', pendingAfterFailure: null, idempotencyKey: null, errorType: null,
  deadLetterReason: null, acceptedAt, startedAt: acceptedAt, finishedAt: null, updatedAt: acceptedAt, runAt: null, workerId: 'w',
});
const failure = { ok: false as const, error: { errorType: 'Error', errorMessage: 'x', trace: [] }, durationMs: 1 };

describe('retryPolicyOf', () => {
  it("is the function's without one of its own", () => {
    expect(retryPolicyOf(fn, null)).toEqual(fn);
    expect(retryPolicyOf(fn, undefined)).toEqual(fn);
  });

  it("takes the invocation's retries and age, and the function's backoff", () => {
    expect(retryPolicyOf(fn, { maxRetries: 185, maxEventAgeSeconds: 60 })).toEqual({ maxRetries: 185, maxEventAgeSeconds: 60, retryBaseDelayMs: 1_000, retryMaxDelayMs: 8_000 });
  });

  it('decides a failure by the invocation\'s limits: 0 retries dead-letters at once; 185 retries beyond the function\'s 2', () => {
    const now = new Date(acceptedAt.getTime() + 1_000);
    expect(outcomeEvents(running(0), retryPolicyOf(fn, { maxRetries: 0, maxEventAgeSeconds: 86_400 }), failure, now, 0).map((e) => e.type)).toEqual(['failed', 'dead_lettered']);
    expect(outcomeEvents(running(2), fn, failure, now, 0).at(-1)).toEqual({ type: 'dead_lettered', data: { reason: 'RetriesExhausted' } });
    expect(outcomeEvents(running(2), retryPolicyOf(fn, { maxRetries: 185, maxEventAgeSeconds: 86_400 }), failure, now, 0).at(-1)?.type).toBe('retried');
    // a retry 60 s after acceptance would be too old for a 60 s limit
    const late = new Date(acceptedAt.getTime() + 59_800);
    expect(outcomeEvents(running(0), retryPolicyOf(fn, { maxRetries: 185, maxEventAgeSeconds: 60 }), failure, late, 0).at(-1)).toEqual({ type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } });
  });
});
