// Idempotency keys under real concurrency: with coalescing off every request accepts in
// its own transaction, so same-key requests race in the database, not inside one batch.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { moduleFn, startApi, type RunningApi } from './helpers.ts';

let t: TestDatabase;
let api: RunningApi;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  await moduleFn(t.db, 'counter', 'counter.ts');
  api = await startApi(t.db, { coalesce: false });
});

afterAll(async () => {
  await api?.close();
});

async function invocationsWithKey(key: string): Promise<{ id: string; accepted: number }[]> {
  const { rows } = await sql<{ id: string; accepted: number }>`
    select i.id, (select count(*)::int from ledger.events e where e.invocation_id = i.id and e.type = 'accepted') as accepted
    from ledger.invocations i where i.idempotency_key = ${key}`.execute(t.db);
  return rows;
}

describe('concurrent requests with one idempotency key', () => {
  it('Event: 16 at once are one invocation, one accepted event, one request id', async () => {
    const responses = await Promise.all(
      Array.from({ length: 16 }, () =>
        fetch(`${api.url}/2015-03-31/functions/echo/invocations`, {
          method: 'POST',
          headers: { 'x-amz-invocation-type': 'Event', 'idempotency-key': 'race-event' },
          body: '{"n":1}',
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(16).fill(202));
    const ids = new Set(responses.map((r) => r.headers.get('x-amzn-requestid')));
    expect(ids.size).toBe(1);
    expect(await invocationsWithKey('race-event')).toEqual([{ id: [...ids][0], accepted: 1 }]);
  });

  it('sync: 8 at once run the function once and all answer with its result', async () => {
    const responses = await Promise.all(
      Array.from({ length: 8 }, () =>
        fetch(`${api.url}/invoke/counter`, { method: 'POST', headers: { 'idempotency-key': 'race-sync' }, body: '{"ms":100}' }),
      ),
    );
    const bodies = await Promise.all(responses.map((r) => r.json()));
    expect(new Set(responses.map((r) => r.headers.get('x-invocation-id'))).size).toBe(1);
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
    const rows = await invocationsWithKey('race-sync');
    expect(rows).toHaveLength(1);
    expect(rows[0]?.accepted).toBe(1);
  });
});
