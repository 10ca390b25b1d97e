import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { getInvocation } from './invocations.ts';
import { fold, type InvocationState, type NewEvent } from './lifecycle.ts';
import { verifyLedger } from './replay.ts';
import { appendEvents } from './writer.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

const err = { errorType: 'Error', errorMessage: 'x', trace: [] };

/** Steps that are always aimed at the current state, so streams get long. */
const step = fc.constantFrom('start', 'succeed', 'fail-retry', 'fail-final', 'cancel', 'age-out', 'redrive');

function next(state: InvocationState, s: string): NewEvent[] {
  const attempt = state.attempts;
  switch (s) {
    case 'start':
      return [{ type: 'started', data: { attempt: attempt + 1, workerId: 'w' } }];
    case 'succeed':
      return [{ type: 'succeeded', data: { attempt, result: { attempt }, durationMs: 3 } }];
    case 'fail-retry':
      return [
        { type: 'failed', data: { attempt, error: err, willRetry: true, durationMs: 2 } },
        { type: 'retried', data: { attempt: attempt + 1, runAt: new Date(Date.now() + 1000).toISOString(), delayMs: 1000 } },
      ];
    case 'fail-final':
      return state.invocationType === 'async'
        ? [
            { type: 'failed', data: { attempt, error: err, willRetry: false, durationMs: 2 } },
            { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
          ]
        : [{ type: 'failed', data: { attempt, error: err, willRetry: false, durationMs: 2 } }];
    case 'cancel':
      return [{ type: 'cancelled', data: { reason: 'test' } }];
    case 'age-out':
      return [{ type: 'dead_lettered', data: { reason: 'EventAgeExceeded' } }];
    default:
      return [{ type: 'redriven', data: { by: 'test' } }];
  }
}

describe('projection = fold(events), through the real writer', () => {
  it('property: any sequence the rules allow leaves a projection equal to the replay', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('sync', 'async', 'poll' as const), fc.array(step, { maxLength: 25 }), async (type, steps) => {
        const id = crypto.randomUUID();
        let { state } = await appendEvents(t.db, {
          invocationId: id,
          expectedSeq: 0,
          // sync and poll invocations start in the append that accepts them (nothing claims them
          // later: verify reports one left queued as stuck)
          events: [
            { type: 'accepted', data: { functionName: 'p', functionVersion: 1, invocationType: type, payload: { steps }, idempotencyKey: null } },
            ...(type === 'async' ? [] : [{ type: 'started' as const, data: { attempt: 1, workerId: 'w' } }]),
          ],
        });
        for (const s of steps) {
          const events = next(state, s);
          // the writer refuses what the rules forbid, and writes nothing for it
          try {
            ({ state } = await appendEvents(t.db, { invocationId: id, expectedSeq: state.lastSeq, prior: state, events }));
          } catch (e) {
            if ((e as { code?: string }).code !== 'LifecycleViolation') throw e;
          }
        }
        const view = await getInvocation(t.db, id);
        const replay = fold(view!.events);
        expect(replay).toMatchObject({
          status: view!.status,
          attempts: view!.attempts,
          lastSeq: view!.lastSeq,
          errorType: view!.errorType,
          deadLetterReason: view!.deadLetterReason,
        });
        expect(replay!.acceptedAt.getTime()).toBe(view!.acceptedAt.getTime());
        expect(replay!.finishedAt?.getTime()).toBe(view!.finishedAt?.getTime());
      }),
      { numRuns: 60 },
    );
    expect(await verifyLedger(t.db)).toEqual([]);
  });
});
