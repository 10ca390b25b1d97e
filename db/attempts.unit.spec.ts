import { describe, expect, it } from 'vitest';
import { INVALID_RESULT, OUTCOME_NOT_STORED, outcomeNotStored, storableOutcome, type Outcome } from './attempts.ts';
import { outcomeEvents } from './decisions.ts';
import { apply, type InvocationState, type InvocationType, type NewEvent } from './lifecycle.ts';

const ID = '00000000-0000-4000-8000-000000000030';
const T0 = new Date('2026-01-01T00:00:00Z');
const err = { errorType: 'Error', errorMessage: 'x', trace: ['at f'] };
const policy = { maxRetries: 2, retryBaseDelayMs: 1000, retryMaxDelayMs: 60_000, maxEventAgeSeconds: 3600 };

/** A running invocation after `failures` failed and retried attempts. */
function running(type: InvocationType, failures = 0): InvocationState {
  let s = apply(undefined, { type: 'accepted', data: { functionName: 'f', functionVersion: 1, invocationType: type, payload: null, idempotencyKey: null } }, ID, T0);
  for (let i = 1; i <= failures + 1; i++) {
    s = apply(s, { type: 'started', data: { attempt: i, workerId: 'w' } }, ID, T0);
    if (i > failures) break;
    for (const e of [
      { type: 'failed', data: { attempt: i, error: err, willRetry: true, durationMs: 1 } },
      { type: 'retried', data: { attempt: i + 1, runAt: T0.toISOString(), delayMs: 0 } },
    ] as NewEvent[]) s = apply(s, e, ID, T0);
  }
  return s;
}
const fail: Outcome = { ok: false, error: err, durationMs: 7 };

describe('outcomeEvents: what an attempt outcome writes', () => {
  it('a success is one succeeded of the running attempt, null for an undefined result', () => {
    expect(outcomeEvents(running('async', 1), policy, { ok: true, result: { a: 1 }, durationMs: 5 }, T0)).toEqual([
      { type: 'succeeded', data: { attempt: 2, result: { a: 1 }, durationMs: 5 } },
    ]);
    expect(outcomeEvents(running('sync'), policy, { ok: true, result: undefined, durationMs: 5 }, T0)).toEqual([
      { type: 'succeeded', data: { attempt: 1, result: null, durationMs: 5 } },
    ]);
  });

  it('a sync or poll failure is final and alone', () => {
    for (const type of ['sync', 'poll'] as const) {
      expect(outcomeEvents(running(type), policy, fail, T0)).toEqual([{ type: 'failed', data: { attempt: 1, error: err, willRetry: false, durationMs: 7 } }]);
    }
  });

  it('an async failure is retried with base · 2^(n-1) and equal jitter until maxRetries are spent', () => {
    expect(outcomeEvents(running('async'), policy, fail, T0, 0)).toEqual([
      { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 7 } },
      { type: 'retried', data: { attempt: 2, runAt: new Date(T0.getTime() + 500).toISOString(), delayMs: 500 } },
    ]);
    const second = outcomeEvents(running('async', 1), policy, fail, T0, 0.999_999);
    expect(second[1]).toEqual({ type: 'retried', data: { attempt: 3, runAt: new Date(T0.getTime() + 2000).toISOString(), delayMs: 2000 } });
    // the third failure with maxRetries 2: spent
    expect(outcomeEvents(running('async', 2), policy, fail, T0, 0)).toEqual([
      { type: 'failed', data: { attempt: 3, error: err, willRetry: false, durationMs: 7 } },
      { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
    ]);
  });

  it('a retry due after the event-age deadline is not scheduled: EventAgeExceeded; one due exactly at it still is', () => {
    const short = { ...policy, maxEventAgeSeconds: 1 };
    expect(outcomeEvents(running('async'), short, fail, new Date(T0.getTime() + 501), 0)).toEqual([
      { type: 'failed', data: { attempt: 1, error: err, willRetry: false, durationMs: 7 } },
      { type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } },
    ]);
    expect(outcomeEvents(running('async'), short, fail, new Date(T0.getTime() + 500), 0)[1]?.type).toBe('retried');
  });
});

describe('storableOutcome and outcomeNotStored', () => {
  it('a result PostgreSQL cannot hold becomes a failure of its own attempt, the log kept as far as it can be', () => {
    const out = storableOutcome({ ok: true, result: { s: 'a\u0000b' }, durationMs: 3, log: 'x\u0000y' });
    expect(out).toEqual({
      ok: false,
      durationMs: 3,
      log: 'x\ufffdy',
      error: { errorType: INVALID_RESULT, errorMessage: expect.stringMatching(/^The function's result cannot be stored: a string holds U\+0000 \(NUL\) at \$\.s$/), trace: [] },
    });
    expect('result' in out).toBe(false);
  });

  it('a storable result is kept as it is; a failure keeps its text with U+FFFD for what cannot be stored', () => {
    expect(storableOutcome({ ok: true, result: [1, 'two'], durationMs: 3 })).toStrictEqual({ ok: true, result: [1, 'two'], durationMs: 3 });
    expect(storableOutcome({ ok: true, result: 1, durationMs: 3, log: 'fine' })).toEqual({ ok: true, result: 1, durationMs: 3, log: 'fine' });
    const bad = { errorType: 'E\u0000', errorMessage: 'm\ud800', trace: ['t\u0000', 5] } as unknown as typeof err;
    expect(storableOutcome({ ok: false, error: bad, durationMs: 1 })).toEqual({ ok: false, durationMs: 1, error: { errorType: 'E\ufffd', errorMessage: 'm\ufffd', trace: ['t\ufffd', '5'] } });
    const noTrace = { errorType: 'E', errorMessage: 'm', trace: 'not a list' } as unknown as typeof err;
    expect(storableOutcome({ ok: false, error: noTrace, durationMs: 1 }).error.trace).toEqual([]);
  });

  it('an outcome the database refused is recorded as OutcomeNotStored, without result or log, reason cut at 500', () => {
    const out = outcomeNotStored({ ok: true, result: 1, durationMs: 9, log: 'long log' }, new Error(`refused ${'z'.repeat(600)}`));
    expect(out).toEqual({ ok: false, durationMs: 9, log: '', error: { errorType: OUTCOME_NOT_STORED, errorMessage: `The attempt's outcome could not be stored: ${`refused ${'z'.repeat(600)}`.slice(0, 500)}`, trace: [] } });
    expect(outcomeNotStored(fail, 'plain').error.errorMessage).toBe("The attempt's outcome could not be stored: plain");
    expect(outcomeNotStored(fail, null).error.errorMessage).toBe("The attempt's outcome could not be stored: null");
  });
});
