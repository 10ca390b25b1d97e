import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { outcomeEvents } from './decisions.ts';
import {
  apply,
  DEFAULT_MAX_CHAIN_DEPTH,
  fold,
  isLoopStopped,
  isTerminal,
  LifecycleViolation,
  retryDelayMs,
  whyNot,
  type InvocationState,
  type InvocationType,
  type LedgerEvent,
  type NewEvent,
} from './lifecycle.ts';

const ID = '00000000-0000-4000-8000-000000000001';
const T0 = new Date('2026-01-01T00:00:00Z');

const accepted = (invocationType: InvocationType): NewEvent => ({
  type: 'accepted',
  data: { functionName: 'f', functionVersion: 1, invocationType, payload: null, idempotencyKey: null },
});
const err = { errorType: 'Error', errorMessage: 'x', trace: [] };

/** Commands a caller might try, valid or not; the rules decide. */
const command = (attempt: fc.Arbitrary<number>) =>
  fc.oneof(
    fc.constantFrom<InvocationType>('sync', 'async', 'poll', 'replay').map(accepted),
    attempt.map((a): NewEvent => ({ type: 'started', data: { attempt: a, workerId: 'w' } })),
    attempt.map((a): NewEvent => ({ type: 'succeeded', data: { attempt: a, result: a, durationMs: 1 } })),
    fc.tuple(attempt, fc.boolean()).map(([a, willRetry]): NewEvent => ({ type: 'failed', data: { attempt: a, error: err, willRetry, durationMs: 1 } })),
    attempt.map((a): NewEvent => ({ type: 'retried', data: { attempt: a, runAt: T0.toISOString(), delayMs: 0 } })),
    fc.constantFrom('RetriesExhausted', 'EventAgeExceeded', 'ZeroReservedConcurrency', 'RecursiveInvocationLoop' as const).map(
      (reason): NewEvent => ({ type: 'dead_lettered', data: { reason } }),
    ),
    fc.constant<NewEvent>({ type: 'cancelled', data: { reason: 'user' } }),
    fc.constant<NewEvent>({ type: 'redriven', data: { by: 'user' } }),
  );

/** Plays commands against the rules: allowed ones become the stream, refused ones must throw. */
function play(commands: NewEvent[]): { stream: LedgerEvent[]; state: InvocationState | undefined } {
  let state: InvocationState | undefined;
  const stream: LedgerEvent[] = [];
  commands.forEach((c, i) => {
    const at = new Date(T0.getTime() + i * 1000);
    if (whyNot(state, c) === null) {
      state = apply(state, c, ID, at);
      stream.push({ ...c, invocationId: ID, seq: stream.length + 1, attempt: null, occurredAt: at } as LedgerEvent);
    } else {
      const before = state;
      expect(() => apply(before, c, ID, at)).toThrow(LifecycleViolation);
    }
  });
  return { stream, state };
}

/** A stream is valid by docs/event-model.md, checked independently of `whyNot`. */
function assertValidStream(stream: LedgerEvent[]): void {
  if (stream.length === 0) return;
  expect(stream[0]!.type).toBe('accepted');
  stream.forEach((e, i) => expect(e.seq).toBe(i + 1));
  expect(stream.filter((e) => e.type === 'accepted')).toHaveLength(1);
  const invocationType = (stream[0] as Extract<LedgerEvent, { type: 'accepted' }>).data.invocationType;
  let attempt = 0;
  for (let i = 1; i < stream.length; i++) {
    const prev = stream[i - 1]!;
    const e = stream[i]!;
    const terminal =
      prev.type === 'succeeded' ||
      prev.type === 'dead_lettered' ||
      prev.type === 'cancelled' ||
      (prev.type === 'failed' && invocationType !== 'async');
    if (terminal) expect(e.type).toBe('redriven');
    if (e.type === 'started') {
      expect(e.data.attempt).toBe(++attempt);
      expect(['accepted', 'retried', 'redriven']).toContain(prev.type);
    }
    if (e.type === 'succeeded' || e.type === 'failed') {
      expect(prev.type).toBe('started');
      expect(e.data.attempt).toBe(attempt);
    }
    if (e.type === 'retried') {
      expect(prev.type).toBe('failed');
      expect(invocationType).toBe('async');
    }
    if (prev.type === 'failed' && invocationType === 'async') expect(['retried', 'dead_lettered']).toContain(e.type);
    // a recursive loop is stopped at accept, before any attempt
    if (e.type === 'dead_lettered' && e.data.reason === 'RecursiveInvocationLoop') expect(prev.type).toBe('accepted');
  }
}

describe('lifecycle rules', () => {
  it('accepts the documented sync and async paths', () => {
    const sync = play([accepted('sync'), { type: 'started', data: { attempt: 1, workerId: 'w' } }, { type: 'failed', data: { attempt: 1, error: err, willRetry: false, durationMs: 1 } }]);
    expect(sync.state?.status).toBe('failed');
    expect(isTerminal(sync.state!.status)).toBe(true);

    const events: NewEvent[] = [
      accepted('async'),
      { type: 'started', data: { attempt: 1, workerId: 'w' } },
      { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 1 } },
      { type: 'retried', data: { attempt: 2, runAt: T0.toISOString(), delayMs: 10 } },
      { type: 'started', data: { attempt: 2, workerId: 'w' } },
      { type: 'failed', data: { attempt: 2, error: err, willRetry: false, durationMs: 1 } },
      { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
      { type: 'redriven', data: { by: 'me' } },
      { type: 'started', data: { attempt: 3, workerId: 'w' } },
      { type: 'succeeded', data: { attempt: 3, result: 1, durationMs: 1 } },
    ];
    const { stream, state } = play(events);
    expect(stream).toHaveLength(events.length);
    expect(state).toMatchObject({ status: 'succeeded', attempts: 3, failuresSinceRedrive: 0, lastSeq: 10 });
  });

  it('refuses what may not follow', () => {
    const s = apply(undefined, accepted('async'), ID, T0);
    expect(whyNot(undefined, { type: 'started', data: { attempt: 1, workerId: 'w' } })).toMatch(/first event/);
    expect(whyNot(s, accepted('async'))).toMatch(/once/);
    expect(whyNot(s, { type: 'started', data: { attempt: 2, workerId: 'w' } })).toMatch(/attempt must be 1/);
    expect(whyNot(s, { type: 'redriven', data: { by: 'x' } })).toMatch(/only dead letters/);
    const sync = apply(apply(undefined, accepted('sync'), ID, T0), { type: 'started', data: { attempt: 1, workerId: 'w' } }, ID, T0);
    expect(whyNot(sync, { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 0 } })).toMatch(/only async/);
    // an async failure is followed by its own decision and nothing else (a fast-check counterexample)
    const asyncRunning = apply(apply(undefined, accepted('async'), ID, T0), { type: 'started', data: { attempt: 1, workerId: 'w' } }, ID, T0);
    const failedFinal = apply(asyncRunning, { type: 'failed', data: { attempt: 1, error: err, willRetry: false, durationMs: 1 } }, ID, T0);
    expect(whyNot(failedFinal, { type: 'succeeded', data: { attempt: 1, result: 1, durationMs: 1 } })).toMatch(/followed by dead_lettered, not succeeded/);
    expect(whyNot(failedFinal, { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 1 } })).toMatch(/followed by dead_lettered/);
    expect(whyNot(failedFinal, { type: 'retried', data: { attempt: 2, runAt: T0.toISOString(), delayMs: 0 } })).toMatch(/followed by dead_lettered/);
    expect(whyNot(failedFinal, { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } })).toBeNull();
    const failedRetry = apply(asyncRunning, { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 1 } }, ID, T0);
    expect(whyNot(failedRetry, { type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } })).toMatch(/followed by retried/);
    expect(whyNot(failedRetry, { type: 'retried', data: { attempt: 5, runAt: T0.toISOString(), delayMs: 0 } })).toBe('the next attempt is 2');
    const done = apply(sync, { type: 'succeeded', data: { attempt: 1, result: null, durationMs: 0 } }, ID, T0);
    for (const e of [{ type: 'cancelled', data: { reason: 'x' } }, { type: 'redriven', data: { by: 'x' } }] as NewEvent[]) {
      expect(whyNot(done, e)).not.toBeNull();
    }
  });

  it('property: random command sequences never yield an invalid stream', () => {
    fc.assert(
      fc.property(fc.array(command(fc.integer({ min: 1, max: 6 })), { maxLength: 40 }), (commands) => {
        const { stream } = play(commands);
        assertValidStream(stream);
      }),
      { numRuns: 2_000 },
    );
  });

  it('property: the counterexample seed CI found stays fixed', () => {
    fc.assert(
      fc.property(fc.array(command(fc.integer({ min: 1, max: 6 })), { maxLength: 40 }), (commands) => {
        assertValidStream(play(commands).stream);
      }),
      { seed: 1524409849, path: '720:3:5:8:8:10', endOnFailure: true },
    );
  });

  it('property: folding the stream gives the state built step by step', () => {
    fc.assert(
      fc.property(fc.array(command(fc.integer({ min: 1, max: 6 })), { maxLength: 40 }), (commands) => {
        const { stream, state } = play(commands);
        expect(fold(stream)).toEqual(state);
      }),
      { numRuns: 1_000 },
    );
  });

  it('property: outcomes decided by the retry policy always keep the stream valid and bounded', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (maxRetries, successes, random) => {
          const policy = { maxRetries, retryBaseDelayMs: 10, retryMaxDelayMs: 1000, maxEventAgeSeconds: 21_600 };
          let state = apply(undefined, accepted('async'), ID, T0);
          const stream: NewEvent[] = [accepted('async')];
          for (const ok of successes) {
            if (isTerminal(state.status)) break;
            const start: NewEvent = { type: 'started', data: { attempt: state.attempts + 1, workerId: 'w' } };
            state = apply(state, start, ID, T0);
            stream.push(start);
            const outcome = ok ? { ok: true as const, result: 1, durationMs: 1 } : { ok: false as const, error: err, durationMs: 1 };
            for (const e of outcomeEvents(state, policy, outcome, T0, random)) {
              state = apply(state, e, ID, T0);
              stream.push(e);
            }
          }
          const failures = stream.filter((e) => e.type === 'failed').length;
          expect(failures).toBeLessThanOrEqual(maxRetries + 1);
          if (state.status === 'dead_lettered') {
            expect(failures).toBe(maxRetries + 1);
            expect(state.deadLetterReason).toBe('RetriesExhausted');
          }
          expect(state.pendingAfterFailure).toBeNull();
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('a loop is stopped only where it starts: RecursiveInvocationLoop right after accepted, async only', () => {
    const queued = apply(undefined, accepted('async'), ID, T0);
    const stop: NewEvent = { type: 'dead_lettered', data: { reason: 'RecursiveInvocationLoop' } };
    expect(whyNot(queued, stop)).toBeNull();
    expect(apply(queued, stop, ID, T0)).toMatchObject({ status: 'dead_lettered', deadLetterReason: 'RecursiveInvocationLoop', attempts: 0 });
    expect(whyNot(apply(undefined, accepted('sync'), ID, T0), stop)).toMatch(/only async/);
    const started = apply(queued, { type: 'started', data: { attempt: 1, workerId: 'w' } }, ID, T0);
    const retrying = apply(
      apply(started, { type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 1 } }, ID, T0),
      { type: 'retried', data: { attempt: 2, runAt: T0.toISOString(), delayMs: 0 } },
      ID,
      T0,
    );
    expect(whyNot(retrying, stop)).toMatch(/stopped when the invocation is accepted/);
  });

  it('property: a chain runs exactly maxChainDepth invocations (Lambda: 16), none when the guard is off', () => {
    expect(DEFAULT_MAX_CHAIN_DEPTH).toBe(16);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 200 }), (max, depth) => {
        expect(isLoopStopped(depth, max)).toBe(max > 0 && depth >= max);
        // a self-loop: depth 0, 1, 2, … until one is stopped
        let ran = 0;
        for (let d = 0; d < 100 && !isLoopStopped(d, max); d++) ran++;
        expect(ran).toBe(max === 0 ? 100 : max);
      }),
    );
  });

  it('property: retry delays follow base * 2^(n-1), capped, within the jitter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 120_000 }),
        fc.integer({ min: 0, max: 900_000 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (n, base, max, random) => {
          const d = retryDelayMs(n, base, max, random);
          const exp = Math.min(max, base * 2 ** (n - 1));
          expect(d).toBeGreaterThanOrEqual(Math.floor(exp / 2));
          expect(d).toBeLessThanOrEqual(Math.ceil(exp));
        },
      ),
    );
  });

  it('startedAt is when the first attempt started, kept through retries and redrives', () => {
    const t = (s: number) => new Date(T0.getTime() + s * 1000);
    let s = apply(undefined, accepted('async'), ID, t(0));
    const steps: [NewEvent, number][] = [
      [{ type: 'started', data: { attempt: 1, workerId: 'w' } }, 1],
      [{ type: 'failed', data: { attempt: 1, error: err, willRetry: true, durationMs: 1 } }, 2],
      [{ type: 'retried', data: { attempt: 2, runAt: t(3).toISOString(), delayMs: 1000 } }, 2],
      [{ type: 'started', data: { attempt: 2, workerId: 'w' } }, 3],
    ];
    for (const [e, at] of steps) s = apply(s, e, ID, t(at));
    expect(s.startedAt).toEqual(t(1));
  });
});
