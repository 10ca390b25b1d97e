// What follows, decided in one place (db/decisions.ts): each decision is one the
// lifecycle allows (db/lifecycle.ts whyNot), and the claim, outcome and throttle
// decisions keep their documented limits for any state, clock and jitter.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cancelEvents,
  claimDecision,
  deadLetterEvents,
  leaseExpiredOutcome,
  outcomeEvents,
  pastEventAge,
  redriveEvents,
  startEvents,
  throttledRunAt,
  WORKER_LOST,
  type Outcome,
  type RetryPolicy,
} from './decisions.ts';
import { apply, whyNot, whyNotAtEnd, type InvocationState, type NewEvent } from './lifecycle.ts';

const acceptedAt = new Date('2026-11-30T00:00:00Z');
const state = (o: Partial<InvocationState> = {}): InvocationState => ({
  id: 'i', functionName: 'f', functionVersion: 1, invocationType: 'async', status: 'queued', attempts: 0,
  failuresSinceRedrive: 0, lastSeq: 1, lastType: 'accepted', pendingAfterFailure: null, idempotencyKey: null, errorType: null,
  deadLetterReason: null, acceptedAt, startedAt: null, finishedAt: null, updatedAt: acceptedAt, runAt: acceptedAt, workerId: null,
  ...o,
});
const running = (failuresSinceRedrive: number, invocationType: InvocationState['invocationType'] = 'async') =>
  state({ status: 'running', lastSeq: 2, lastType: 'started', attempts: failuresSinceRedrive + 1, failuresSinceRedrive, startedAt: acceptedAt, workerId: 'w', invocationType });

const policyArb: fc.Arbitrary<RetryPolicy> = fc.record({
  maxRetries: fc.integer({ min: 0, max: 185 }),
  retryBaseDelayMs: fc.integer({ min: 1, max: 60_000 }),
  retryMaxDelayMs: fc.integer({ min: 60_000, max: 900_000 }),
  maxEventAgeSeconds: fc.integer({ min: 60, max: 21_600 }),
});
const afterMs = fc.integer({ min: 0, max: 30 * 3_600_000 });
const outcomeArb: fc.Arbitrary<Outcome> = fc.oneof(
  fc.record({ ok: fc.constant(true as const), result: fc.jsonValue(), durationMs: fc.nat() }),
  fc.record({ ok: fc.constant(false as const), error: fc.record({ errorType: fc.string(), errorMessage: fc.string(), trace: fc.constant<string[]>([]) }), durationMs: fc.nat() }),
);

/** Every event of `events` may follow the one before it, starting from `from`, and the append may end there. */
function allowed(from: InvocationState, events: NewEvent[]): boolean {
  try {
    const end = events.reduce((st, e) => apply(st, e, st.id, acceptedAt), from);
    return whyNotAtEnd(end) === null;
  } catch {
    return false;
  }
}

describe('claimDecision', () => {
  it('dead-letters what is past its event age at the claim, then zero reserved concurrency; a reserved limit needs a slot; else starts', () => {
    fc.assert(
      fc.property(policyArb, afterMs, fc.option(fc.integer({ min: 0, max: 1000 })), (policy, ms, reserved) => {
        const now = new Date(acceptedAt.getTime() + ms);
        const d = claimDecision(state(), policy, reserved, now);
        if (ms > policy.maxEventAgeSeconds * 1000) expect(d).toEqual({ kind: 'dead_letter', reason: 'EventAgeExceeded' });
        else if (reserved === 0) expect(d).toEqual({ kind: 'dead_letter', reason: 'ZeroReservedConcurrency' });
        else if (reserved !== null) expect(d).toEqual({ kind: 'needs_slot' });
        else expect(d).toEqual({ kind: 'start' });
      }),
    );
  });

  it('what it decides is allowed by the lifecycle', () => {
    expect(whyNot(state(), startEvents(state(), 'w')[0] as NewEvent)).toBeNull();
    expect(whyNot(state(), deadLetterEvents('EventAgeExceeded')[0] as NewEvent)).toBeNull();
    expect(whyNot(state(), deadLetterEvents('ZeroReservedConcurrency')[0] as NewEvent)).toBeNull();
    expect(startEvents(state({ attempts: 3 }), 'w')).toEqual([{ type: 'started', data: { attempt: 4, workerId: 'w' } }]);
  });
});

describe('throttledRunAt', () => {
  it('is after now (or just past the event age, so the next claim dead-letters it) and at most maxDelayMs away', () => {
    fc.assert(
      fc.property(policyArb, afterMs, fc.integer({ min: 50, max: 60_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (policy, ms, maxDelayMs, random) => {
        const now = new Date(acceptedAt.getTime() + Math.min(ms, policy.maxEventAgeSeconds * 1000));
        const runAt = throttledRunAt(state(), policy, now, maxDelayMs, random);
        expect(runAt.getTime() - now.getTime()).toBeLessThanOrEqual(maxDelayMs);
        expect(runAt.getTime()).toBeGreaterThan(now.getTime() - 1);
        expect(runAt.getTime()).toBeLessThanOrEqual(acceptedAt.getTime() + policy.maxEventAgeSeconds * 1000 + 1);
        if (runAt.getTime() === acceptedAt.getTime() + policy.maxEventAgeSeconds * 1000 + 1) expect(pastEventAge(state(), policy, runAt)).toBe(true);
      }),
    );
  });
});

describe('outcomeEvents', () => {
  it('a success is succeeded; a failure is failed, then (async) retried within the limits or dead-lettered; always allowed by the lifecycle', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 200 }), outcomeArb, afterMs, fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom('async', 'sync'), (policy, failures, outcome, ms, random, type) => {
        const s = running(failures, type as InvocationState['invocationType']);
        const now = new Date(acceptedAt.getTime() + ms);
        const events = outcomeEvents(s, policy, outcome, now, random);
        expect(allowed(s, events)).toBe(true);
        const last = events.at(-1) as NewEvent;
        if (outcome.ok) expect(events.map((e) => e.type)).toEqual(['succeeded']);
        else if (type === 'sync') expect(events.map((e) => e.type)).toEqual(['failed']);
        else if (failures + 1 > policy.maxRetries) expect(last).toEqual({ type: 'dead_lettered', data: { reason: 'RetriesExhausted' } });
        else if (last.type === 'retried') {
          expect(pastEventAge(s, policy, new Date(last.data.runAt))).toBe(false);
          expect(last.data.delayMs).toBeLessThanOrEqual(policy.retryMaxDelayMs);
        } else expect(last).toEqual({ type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } });
      }),
    );
  });
});

describe('leaseExpiredOutcome', () => {
  it('is a WorkerLost failure naming the worker and the lease, decided like any failure', () => {
    const s = running(0);
    const now = new Date(acceptedAt.getTime() + 5_000);
    const lost = leaseExpiredOutcome(s, { lockedBy: 'w-1', expiredAt: new Date(acceptedAt.getTime() + 4_000) }, now);
    expect(lost).toEqual({
      ok: false,
      error: { errorType: WORKER_LOST, errorMessage: 'Worker w-1 lost attempt 1: its lease expired at 2026-11-30T00:00:04.000Z', trace: [] },
      durationMs: 5_000,
    });
    expect(outcomeEvents(s, { maxRetries: 2, retryBaseDelayMs: 1_000, retryMaxDelayMs: 8_000, maxEventAgeSeconds: 600 }, lost, now, 0).map((e) => e.type)).toEqual(['failed', 'retried']);
  });
});

describe('redrive and cancel', () => {
  it('redrive follows a dead letter, cancel a queued invocation; the lifecycle refuses the reverse', () => {
    const dead = state({ status: 'dead_lettered', lastType: 'dead_lettered', lastSeq: 2, deadLetterReason: 'RetriesExhausted' });
    expect(whyNot(dead, redriveEvents('ops')[0] as NewEvent)).toBeNull();
    expect(whyNot(state(), cancelEvents('not needed')[0] as NewEvent)).toBeNull();
    expect(whyNot(state(), redriveEvents('ops')[0] as NewEvent)).not.toBeNull();
    expect(whyNot(dead, cancelEvents('late')[0] as NewEvent)).not.toBeNull();
  });
});
