// A schedule's own RetryPolicy governs the invocations its ticks fire, not the function's
// async retry settings, and <aws.scheduler.attempt-number> is the number of the attempt
// that receives the event (docs/schedules.md#retries-and-the-attempt-number). Real
// PostgreSQL and an in-process worker whose scheduler fires the ticks.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSchedule, listTicks, type ScheduleInput } from '../../db/schedule-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { eventsOf, fn, startWorker, statusOf, terminal, waitFor, type RunningWorker } from '../worker/helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;

beforeAll(async () => {
  t = await createTestDatabase();
  worker = await startWorker(t.db, t.url);
});

afterAll(async () => {
  await worker?.stop();
});

/** A schedule whose first tick is due at once (a rate() without StartDate starts now). */
function hourly(name: string, functionName: string, target: Partial<ScheduleInput['target']> = {}): ScheduleInput {
  return { name, expression: 'rate(1 hour)', target: { functionName, ...target } };
}

/** The invocation of the schedule's first tick, once it has ended. */
async function firstTickEnded(name: string): Promise<string> {
  const id = await waitFor(`${name}'s first tick`, async () => (await listTicks(t.db, null, name))[0]?.invocationId, 30_000);
  await waitFor(`${name}'s invocation to end`, async () => terminal(await statusOf(t.db, id)), 30_000);
  return id;
}

describe("a schedule's RetryPolicy", () => {
  it('MaximumRetryAttempts 0 dead-letters after one attempt although the function allows 2 retries; 3 retries beyond its 2', async () => {
    await fn(t.db, 'fails', 'always-throws.ts', { maxRetries: 2, retryBaseDelayMs: 0, retryMaxDelayMs: 0 });
    await createSchedule(t.db, hourly('no-retries', 'fails', { retryPolicy: { maximumRetryAttempts: 0 } }), { actor: 'test' });
    await createSchedule(t.db, hourly('three-retries', 'fails', { retryPolicy: { maximumRetryAttempts: 3 } }), { actor: 'test' });

    const none = await eventsOf(t.db, await firstTickEnded('no-retries'));
    expect(none.map((e) => e.type)).toEqual(['accepted', 'started', 'failed', 'dead_lettered']);
    expect(none[3]?.data).toEqual({ reason: 'RetriesExhausted' });
    // the invocation carries the policy it was accepted under
    expect(none[0]?.data.retryPolicy).toEqual({ maxRetries: 0, maxEventAgeSeconds: 86_400 });

    const three = await eventsOf(t.db, await firstTickEnded('three-retries'));
    expect(three.filter((e) => e.type === 'started')).toHaveLength(4);
    expect(three.at(-1)).toMatchObject({ type: 'dead_lettered', data: { reason: 'RetriesExhausted' } });
  }, 60_000);

  it('MaximumEventAgeInSeconds: a retry that would come after it dead-letters (EventAgeExceeded), though the function would retry', async () => {
    // the function's own backoff puts the first retry at least 120 s after the failure
    await fn(t.db, 'slow-retry', 'always-throws.ts', { maxRetries: 2, retryBaseDelayMs: 240_000, retryMaxDelayMs: 240_000, maxEventAgeSeconds: 21_600 });
    await createSchedule(t.db, hourly('short-lived', 'slow-retry', { retryPolicy: { maximumRetryAttempts: 185, maximumEventAgeInSeconds: 60 } }), { actor: 'test' });
    const events = await eventsOf(t.db, await firstTickEnded('short-lived'));
    expect(events.map((e) => e.type)).toEqual(['accepted', 'started', 'failed', 'dead_lettered']);
    expect(events[3]?.data).toEqual({ reason: 'EventAgeExceeded' });
  }, 60_000);
});

describe('<aws.scheduler.attempt-number>', () => {
  it('is 1, 2, 3 in the events of the attempts of a failing-then-succeeding function', async () => {
    await fn(t.db, 'third-time', 'attempt-number.ts', { maxRetries: 0, retryBaseDelayMs: 0, retryMaxDelayMs: 0 });
    const input = '{"attempt": <aws.scheduler.attempt-number>, "execution": "<aws.scheduler.execution-id>"}';
    await createSchedule(t.db, hourly('attempts', 'third-time', { input, retryPolicy: { maximumRetryAttempts: 5 } }), { actor: 'test' });
    const id = await firstTickEnded('attempts');
    const events = await eventsOf(t.db, id);
    const failures = events.filter((e) => e.type === 'failed').map((e) => (e.data.error as { errorMessage: string }).errorMessage);
    expect(failures).toEqual(['event attempt 1, context attempt 1', 'event attempt 2, context attempt 2']);
    const [tick] = await listTicks(t.db, null, 'attempts');
    const succeeded = events.find((e) => e.type === 'succeeded');
    expect(succeeded?.data.result).toEqual({ attempt: 3, execution: tick?.executionId });
    // the ledger keeps what attempt 1 received and the template every attempt is rendered from
    expect(events[0]?.data.payload).toEqual({ attempt: 1, execution: tick?.executionId });
    expect((events[0]?.data.scheduleInput as { template: string }).template).toBe(input);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.events where invocation_id = ${id}::uuid and type = 'started'`.execute(t.db);
    expect(rows[0]?.n).toBe(3);
  }, 60_000);
});
