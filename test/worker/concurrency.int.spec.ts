// reservedConcurrency across workers: never more attempts running than reserved, a
// throttle does not spend a retry, and 0 dead-letters with ZeroReservedConcurrency.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInvocations } from '../../db/invocations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { countByStatus, eventsOf, eventTypes, fn, invokeAsync, startWorker, statusOf, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
const workers: RunningWorker[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  const second = t.open({ max: 10 });
  workers.push(await startWorker(t.db, t.url, { concurrency: 8, throttleMaxDelayMs: 100 }));
  workers.push(await startWorker(second.db, t.url, { concurrency: 8, throttleMaxDelayMs: 100 }));
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
});

describe('reservedConcurrency', () => {
  it('never runs more than N attempts at once across two workers', async () => {
    const reserved = 2;
    const f = await fn(t.db, 'gauge', 'gauge.ts', { reservedConcurrency: reserved, maxRetries: 0 });
    const ids = await invokeAsync(t.db, f, Array.from({ length: 24 }, () => ({ ms: 40 })));
    let maxLeased = 0;
    let samples = 0;
    const g = globalThis as unknown as { gaugeMax?: number };
    await waitFor(
      'all succeeded',
      async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from ledger.queue where function_name = 'gauge' and locked_by is not null`.execute(t.db);
        maxLeased = Math.max(maxLeased, rows[0]?.n ?? 0);
        samples++;
        return (await countByStatus(t.db, ids)).succeeded === ids.length;
      },
      60_000,
    );
    expect(samples).toBeGreaterThan(5);
    expect(maxLeased).toBeLessThanOrEqual(reserved);
    // both workers run in this process and share the inline module: the handler's own count
    expect(g.gaugeMax).toBeLessThanOrEqual(reserved);
    expect(g.gaugeMax).toBeGreaterThanOrEqual(1);
    // throttling is not an attempt: every invocation ran exactly once
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.events where invocation_id = any(${ids}::uuid[]) and type = 'started'`.execute(t.db);
    expect(rows[0]?.n).toBe(ids.length);
  });

  it('reservedConcurrency 0 dead-letters with ZeroReservedConcurrency without an attempt', async () => {
    const f = await fn(t.db, 'throttled', 'noop.ts', { reservedConcurrency: 0 });
    const [id] = await invokeAsync(t.db, f, [{}]);
    await waitFor('dead letter', async () => (await statusOf(t.db, id as string)) === 'dead_lettered');
    expect(await eventTypes(t.db, id as string)).toEqual(['accepted', 'dead_lettered']);
    expect((await eventsOf(t.db, id as string))[1]?.data).toEqual({ reason: 'ZeroReservedConcurrency' });
  });

  it('an invocation older than maxEventAgeSeconds is dead-lettered at claim with EventAgeExceeded, without an attempt', async () => {
    const f = await fn(t.db, 'aged', 'noop.ts', { maxEventAgeSeconds: 60 });
    // make it look 2 minutes old before any worker can see it (the projection's accepted_at
    // is what claims read), and put the true value back afterwards so replay still matches
    const id = await t.db.transaction().execute(async (tx) => {
      const [a] = await acceptInvocations(tx, [{ fn: f, invocationType: 'async', payload: {} }]);
      await sql`update ledger.invocations set accepted_at = accepted_at - interval '2 minutes' where id = ${a?.invocationId}::uuid`.execute(tx);
      return a?.invocationId as string;
    });
    await waitFor('dead letter', async () => (await statusOf(t.db, id)) === 'dead_lettered');
    await sql`update ledger.invocations set accepted_at = accepted_at + interval '2 minutes' where id = ${id}::uuid`.execute(t.db);
    expect(await eventTypes(t.db, id)).toEqual(['accepted', 'dead_lettered']);
    expect((await eventsOf(t.db, id))[1]?.data).toEqual({ reason: 'EventAgeExceeded' });
  });
});
