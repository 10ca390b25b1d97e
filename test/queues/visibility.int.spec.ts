// A received message stays invisible while its batch may run. A queue with
// visibilityTimeoutSeconds 0 once delivered one message 5 times within 30 ms and then
// dead-lettered it although every batch succeeded (each receive took the message from the
// batch before, so none could delete it). Now: 0 is refused, a mapping needs a visibility
// timeout of at least its function's timeout (as Lambda requires), and a function whose
// timeout was raised later still keeps its messages invisible for that long.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { completeBatch, receiveBatch, type ReceivedBatch } from '../../apps/worker/event-sources/index.ts';
import { LedgerError } from '../../db/errors.ts';
import { updateFunction } from '../../db/functions.ts';
import { createEventSourceMapping, deleteEventSourceMapping, updateEventSourceMapping } from '../../db/queues/mappings.ts';
import { getMessage, sendMessages } from '../../db/queues/messages.ts';
import { listPollableMappings, type PollableMapping } from '../../db/queues/poller.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { batchFunction } from './helpers.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});

async function refused(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(LedgerError);
  expect((e as LedgerError).code).toBe('InvalidParameter');
  return (e as LedgerError).message;
}

describe('visibility timeout', () => {
  it('a queue with visibilityTimeoutSeconds 0 is refused', async () => {
    expect(await refused(createQueue(t.db, { name: 'zero', visibilityTimeoutSeconds: 0 }))).toMatch(/visibilityTimeoutSeconds must be at least 1/);
  });

  it('a mapping needs a visibility timeout of at least its function timeout, when created and when its function changes', async () => {
    await createQueue(t.db, { name: 'short', visibilityTimeoutSeconds: 5 });
    await batchFunction(t.db, 'ten-seconds', { timeoutMs: 10_000 });
    await batchFunction(t.db, 'five-seconds', { timeoutMs: 5_000 });
    expect(await refused(createEventSourceMapping(t.db, { queueName: 'short', functionName: 'ten-seconds' }))).toBe(
      'Queue visibility timeout: 5 seconds is less than Function timeout: 10 seconds',
    );
    const m = await createEventSourceMapping(t.db, { queueName: 'short', functionName: 'five-seconds', enabled: false });
    expect(await refused(updateEventSourceMapping(t.db, m.id, { functionName: 'ten-seconds' }))).toMatch(/less than Function timeout: 10 seconds/);
    await deleteEventSourceMapping(t.db, m.id);
  });

  it('a function timeout raised after the mapping was made keeps its messages invisible that long', async () => {
    await createQueue(t.db, { name: 'raised', visibilityTimeoutSeconds: 1 });
    await batchFunction(t.db, 'raised', { timeoutMs: 1_000 });
    const m = await createEventSourceMapping(t.db, { queueName: 'raised', functionName: 'raised' });
    const fn = await updateFunction(t.db, 'raised', { timeoutMs: 60_000 });
    const [id] = await sendMessages(t.db, 'raised', [{ body: 'once' }]);
    const mapping = (await listPollableMappings(t.db)).find((p) => p.id === m.id) as PollableMapping;
    const opts = { workerId: 'test-worker', leaseGraceMs: 2_000 };
    const first = await receiveBatch(t.db, mapping, fn, opts);
    expect(first.kind).toBe('batch');
    const { rows } = await sql<{ hidden_for_s: number }>`
      select extract(epoch from visible_at - now())::float8 as hidden_for_s from ledger.messages where id = ${id}::uuid`.execute(t.db);
    expect(rows[0]!.hidden_for_s).toBeGreaterThan(50); // the function's 60 s, not the queue's 1 s
    expect(await receiveBatch(t.db, mapping, fn, opts)).toEqual({ kind: 'idle', reason: 'empty' });
    await completeBatch(t.db, (first as { batch: ReceivedBatch }).batch, { ok: true, result: null, durationMs: 1, log: '' });
    expect(await getMessage(t.db, id as string)).toBeNull();
    await deleteEventSourceMapping(t.db, m.id);
  });
});
