// Queues, messages and mappings against a real PostgreSQL, without a poller: validation
// with typed errors, the receive/settle transactions, visibility expiry, receive-time
// dead letters, redrive, and maximumConcurrency counted under the mapping's row lock.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AttemptOutcome } from '../../apps/runtimes/index.ts';
import { completeBatch, receiveBatch, type ReceivedBatch, type ReceiveResult } from '../../apps/worker/event-sources/index.ts';
import { LedgerError } from '../../db/errors.ts';
import { getInvocation } from '../../db/invocations.ts';
import { listDeadLetterMessages, redriveDeadLetterMessages } from '../../db/queues/dead-letters.ts';
import { createEventSourceMapping, deleteEventSourceMapping, listEventSourceMappings, updateEventSourceMapping, type EventSourceMapping } from '../../db/queues/mappings.ts';
import { getMessage, sendMessages } from '../../db/queues/messages.ts';
import { listPollableMappings, type PollableMapping } from '../../db/queues/poller.ts';
import { createQueue, listQueues, queueCounts } from '../../db/queues/queues.ts';
import { MAX_MESSAGE_BYTES } from '../../db/queues/schemas.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { batchFunction, waitFor } from './helpers.ts';
import type { FunctionVersion } from '../../db/functions.ts';

let t: TestDatabase;
let fn: FunctionVersion;
/** for queues with a 1 s visibility timeout: a mapping needs at least the function's timeout */
let quick: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  fn = await batchFunction(t.db, 'consumer');
  quick = await batchFunction(t.db, 'quick', { timeoutMs: 1_000 });
});

async function rejectsWith(p: Promise<unknown>, code: string): Promise<LedgerError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(LedgerError);
  expect((e as LedgerError).code).toBe(code);
  return e as LedgerError;
}

const ok: AttemptOutcome = { ok: true, result: null, durationMs: 1, log: '' };
const opts = { workerId: 'test-worker', leaseGraceMs: 2_000 };

async function pollable(m: EventSourceMapping): Promise<PollableMapping> {
  return (await listPollableMappings(t.db)).find((p) => p.id === m.id) as PollableMapping;
}

function batchOf(r: ReceiveResult): ReceivedBatch {
  expect(r.kind).toBe('batch');
  return (r as { batch: ReceivedBatch }).batch;
}

describe('validation', () => {
  it('queues: names like function names, visibility 1–43200 s, maxReceiveCount 1–1000, unique', async () => {
    await rejectsWith(createQueue(t.db, { name: 'bad name' }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'x'.repeat(65) }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', visibilityTimeoutSeconds: 43_201 }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', visibilityTimeoutSeconds: -1 }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', visibilityTimeoutSeconds: 0 }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', maxReceiveCount: 0 }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', maxReceiveCount: 1001 }), 'InvalidParameter');
    await rejectsWith(createQueue(t.db, { name: 'q', visibilityTimeoutSeconds: 1.5 }), 'InvalidParameter');
    const q = await createQueue(t.db, { name: 'valid_Queue-1' });
    expect(q).toMatchObject({ name: 'valid_Queue-1', visibilityTimeoutSeconds: 30, maxReceiveCount: 5 });
    await rejectsWith(createQueue(t.db, { name: 'valid_Queue-1' }), 'QueueExists');
    expect((await listQueues(t.db)).map((x) => x.name)).toContain('valid_Queue-1');
  });

  it('messages: delay 0–900 s, at most 256 KB, to an existing queue', async () => {
    await createQueue(t.db, { name: 'sizes' });
    await rejectsWith(sendMessages(t.db, 'sizes', [{ body: 1, delaySeconds: 901 }]), 'InvalidParameter');
    await rejectsWith(sendMessages(t.db, 'sizes', [{ body: 1, delaySeconds: -1 }]), 'InvalidParameter');
    await rejectsWith(sendMessages(t.db, 'sizes', [{}]), 'InvalidParameter');
    await rejectsWith(sendMessages(t.db, 'sizes', []), 'InvalidParameter');
    await rejectsWith(sendMessages(t.db, 'nope', [{ body: 1 }]), 'QueueNotFound');
    await rejectsWith(sendMessages(t.db, 'not a name', [{ body: 1 }]), 'QueueNotFound');
    // the limit counts the JSON text: a string of n characters is n + 2 bytes
    await rejectsWith(sendMessages(t.db, 'sizes', [{ body: 'x'.repeat(MAX_MESSAGE_BYTES - 1) }]), 'PayloadTooLarge');
    const [id] = await sendMessages(t.db, 'sizes', [{ body: 'x'.repeat(MAX_MESSAGE_BYTES - 2) }]);
    expect((await getMessage(t.db, id as string))?.body).toHaveLength(MAX_MESSAGE_BYTES - 2);
  });

  it('mappings: ranges like AWS, an existing queue and function, typed not-found errors', async () => {
    await createQueue(t.db, { name: 'm-valid' });
    const base = { queueName: 'm-valid', functionName: 'consumer' };
    await rejectsWith(createEventSourceMapping(t.db, { ...base, batchSize: 0 }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, batchSize: 10_001 }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, maxBatchingWindowMs: 300_001 }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, maximumConcurrency: 1 }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, maximumConcurrency: 1001 }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, extra: true }), 'InvalidParameter');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, queueName: 'nope' }), 'QueueNotFound');
    await rejectsWith(createEventSourceMapping(t.db, { ...base, functionName: 'nope' }), 'FunctionNotFound');
    const m = await createEventSourceMapping(t.db, { ...base, enabled: false });
    expect(m).toMatchObject({ batchSize: 10, maxBatchingWindowMs: 0, reportBatchItemFailures: false, maximumConcurrency: null, enabled: false });
    await rejectsWith(updateEventSourceMapping(t.db, m.id, { batchSize: 0 }), 'InvalidParameter');
    await rejectsWith(updateEventSourceMapping(t.db, m.id, { queueName: 'other' }), 'InvalidParameter');
    await rejectsWith(updateEventSourceMapping(t.db, m.id, { functionName: 'nope' }), 'FunctionNotFound');
    await rejectsWith(updateEventSourceMapping(t.db, '00000000-0000-4000-8000-000000000000', { enabled: true }), 'EventSourceMappingNotFound');
    await rejectsWith(updateEventSourceMapping(t.db, 'not-a-uuid', { enabled: true }), 'EventSourceMappingNotFound');
    const u = await updateEventSourceMapping(t.db, m.id, { batchSize: 100, maximumConcurrency: 5 });
    expect(u).toMatchObject({ batchSize: 100, maximumConcurrency: 5, enabled: false, maxBatchingWindowMs: 0 });
    expect((await updateEventSourceMapping(t.db, m.id, { maximumConcurrency: null })).maximumConcurrency).toBeNull();
    expect((await listEventSourceMappings(t.db, { queueName: 'm-valid' })).map((x) => x.id)).toEqual([m.id]);
    await deleteEventSourceMapping(t.db, m.id);
    await rejectsWith(deleteEventSourceMapping(t.db, m.id), 'EventSourceMappingNotFound');
  });
});

describe('receive and settle', () => {
  it('a receive starts a poll invocation holding the messages; settling deletes them and ends it', async () => {
    await createQueue(t.db, { name: 'basic', visibilityTimeoutSeconds: 60 });
    const ids = await sendMessages(t.db, 'basic', [{ body: { n: 1 } }, { body: { n: 2 } }, { body: { n: 3 }, delaySeconds: 900 }]);
    const m = await createEventSourceMapping(t.db, { queueName: 'basic', functionName: 'consumer', enabled: false });
    // as a poller that listed the mapping before it was disabled would see it
    const stale: PollableMapping = { ...m, enabled: true, visibilityTimeoutSeconds: 60, maxReceiveCount: 5, functionVersion: fn.version };
    expect(await receiveBatch(t.db, stale, fn, opts)).toEqual({ kind: 'idle', reason: 'disabled' });
    await updateEventSourceMapping(t.db, m.id, { enabled: true });
    const batch = batchOf(await receiveBatch(t.db, await pollable(m), fn, opts));
    expect(batch.records.map((r) => r.messageId)).toEqual(ids.slice(0, 2));
    expect(batch.records[0]).toMatchObject({
      body: { n: 1 },
      attributes: { ApproximateReceiveCount: '1' },
      eventSource: 'ledger:queue',
      eventSourceQueue: 'basic',
    });
    expect(Number(batch.records[0]?.attributes.SentTimestamp)).toBeGreaterThan(Date.now() - 60_000);
    const running = await getInvocation(t.db, batch.state.id);
    expect(running).toMatchObject({ invocationType: 'poll', status: 'running', workerId: 'test-worker', payload: { Records: batch.records } });
    expect((await queueCounts(t.db, ['basic'])).get('basic')).toEqual({ visible: 0, inFlight: 2, delayed: 1, deadLettered: 0 });
    // nothing else is receivable: the delayed message waits, the others are in flight
    expect(await receiveBatch(t.db, await pollable(m), fn, opts)).toEqual({ kind: 'idle', reason: 'empty' });

    const settled = await completeBatch(t.db, batch, ok);
    expect(settled).toMatchObject({ deleted: 2, returned: 0, deadLettered: 0, recorded: true });
    expect((await getInvocation(t.db, batch.state.id))?.events.map((e) => e.type)).toEqual(['accepted', 'started', 'succeeded']);
    expect((await queueCounts(t.db, ['basic'])).get('basic')).toEqual({ visible: 0, inFlight: 0, delayed: 1, deadLettered: 0 });
    await deleteEventSourceMapping(t.db, m.id);
  });

  it('a message whose batch outlives the visibility timeout is received again; the old batch cannot delete it', async () => {
    await createQueue(t.db, { name: 'visibility', visibilityTimeoutSeconds: 1 });
    const [id] = await sendMessages(t.db, 'visibility', [{ body: 'slow' }]);
    const m = await createEventSourceMapping(t.db, { queueName: 'visibility', functionName: 'quick' });
    const first = batchOf(await receiveBatch(t.db, await pollable(m), quick, opts));
    const second = await waitFor('the message to be visible again', async () => {
      const r = await receiveBatch(t.db, await pollable(m), quick, opts);
      return r.kind === 'batch' ? r.batch : null;
    });
    expect(second.records).toMatchObject([{ messageId: id, attributes: { ApproximateReceiveCount: '2' } }]);
    // the first batch finishes late: its outcome is recorded, but the message is the second's now
    expect(await completeBatch(t.db, first, ok)).toMatchObject({ deleted: 0, returned: 0, recorded: true });
    expect(await getMessage(t.db, id as string)).toMatchObject({ receiveCount: 2, receipt: second.state.id });
    expect(await completeBatch(t.db, second, ok)).toMatchObject({ deleted: 1 });
    expect(await getMessage(t.db, id as string)).toBeNull();
    await deleteEventSourceMapping(t.db, m.id);
  });

  it('a message received maxReceiveCount times whose batch never finished is dead-lettered at the next receive; redrive brings it back', async () => {
    await createQueue(t.db, { name: 'exhausted', visibilityTimeoutSeconds: 1, maxReceiveCount: 1 });
    const [id] = await sendMessages(t.db, 'exhausted', [{ body: 'lost' }]);
    const m = await createEventSourceMapping(t.db, { queueName: 'exhausted', functionName: 'quick' });
    const lost = batchOf(await receiveBatch(t.db, await pollable(m), quick, opts));
    await waitFor('the message to be dead-lettered', async () => (await receiveBatch(t.db, await pollable(m), quick, opts)).kind === 'again');
    expect(await getMessage(t.db, id as string)).toMatchObject({ receiveCount: 1, receipt: null, deadLetterReason: 'MaxReceiveCountExceeded' });
    const dead = await listDeadLetterMessages(t.db, 'exhausted');
    expect(dead.edges.map((e) => e.node.id)).toEqual([id]);
    expect(await receiveBatch(t.db, await pollable(m), quick, opts)).toEqual({ kind: 'idle', reason: 'empty' });
    // the lost batch's late outcome touches nothing
    expect(await completeBatch(t.db, lost, ok)).toMatchObject({ deleted: 0, returned: 0, deadLettered: 0 });

    expect(await redriveDeadLetterMessages(t.db, 'exhausted')).toBe(1);
    expect(await getMessage(t.db, id as string)).toMatchObject({ receiveCount: 0, deadLetteredAt: null });
    const again = batchOf(await receiveBatch(t.db, await pollable(m), quick, opts));
    expect(again.records).toMatchObject([{ messageId: id, attributes: { ApproximateReceiveCount: '1' } }]);
    await completeBatch(t.db, again, ok);
    expect(await getMessage(t.db, id as string)).toBeNull();
    await deleteEventSourceMapping(t.db, m.id);
  });

  it('dead letters page newest first, also among those dead-lettered together; redrive takes all or the given ids', async () => {
    await createQueue(t.db, { name: 'dlq-pages', maxReceiveCount: 1 });
    const ids = await sendMessages(t.db, 'dlq-pages', [1, 2, 3, 4, 5].map((n) => ({ body: { n } })));
    const m = await createEventSourceMapping(t.db, { queueName: 'dlq-pages', functionName: 'consumer', batchSize: 5 });
    const b = batchOf(await receiveBatch(t.db, await pollable(m), fn, opts));
    const failed: AttemptOutcome = { ok: false, error: { errorType: 'Error', errorMessage: 'no', trace: [] }, durationMs: 1, log: '' };
    // one statement: all five share their dead-lettering time
    expect(await completeBatch(t.db, b, failed)).toMatchObject({ deleted: 0, returned: 0, deadLettered: 5 });
    await deleteEventSourceMapping(t.db, m.id);
    const p1 = await listDeadLetterMessages(t.db, 'dlq-pages', { first: 2 });
    const p2 = await listDeadLetterMessages(t.db, 'dlq-pages', { first: 2, after: p1.edges.at(-1)?.cursor ?? null });
    const p3 = await listDeadLetterMessages(t.db, 'dlq-pages', { first: 2, after: p2.edges.at(-1)?.cursor ?? null });
    expect([p1.hasNextPage, p2.hasNextPage, p3.hasNextPage]).toEqual([true, true, false]);
    // all five share one time: among them the larger id comes first, in the order the pages give
    expect([...p1.edges, ...p2.edges, ...p3.edges].map((e) => e.node.id)).toEqual([...ids].sort().reverse());
    await rejectsWith(listDeadLetterMessages(t.db, 'dlq-pages', { after: 'garbage' }), 'InvalidParameter');
    await rejectsWith(listDeadLetterMessages(t.db, 'nope'), 'QueueNotFound');
    expect(await redriveDeadLetterMessages(t.db, 'dlq-pages', [ids[0] as string, ids[1] as string])).toBe(2);
    expect((await queueCounts(t.db, ['dlq-pages'])).get('dlq-pages')).toMatchObject({ visible: 2, deadLettered: 3 });
    expect(await redriveDeadLetterMessages(t.db, 'dlq-pages')).toBe(3);
    expect((await queueCounts(t.db, ['dlq-pages'])).get('dlq-pages')).toMatchObject({ visible: 5, deadLettered: 0 });
  });

  it('maximumConcurrency: no more batches of a mapping in flight than the limit, whoever receives', async () => {
    await createQueue(t.db, { name: 'limited' });
    await sendMessages(t.db, 'limited', [1, 2, 3, 4].map((n) => ({ body: { n } })));
    const m = await createEventSourceMapping(t.db, { queueName: 'limited', functionName: 'consumer', batchSize: 1, maximumConcurrency: 2 });
    const p = await pollable(m);
    // three workers receive at the same time: two get a slot
    const results = await Promise.all(['w1', 'w2', 'w3'].map((w) => receiveBatch(t.db, p, fn, { ...opts, workerId: w })));
    const batches = results.filter((r) => r.kind === 'batch').map(batchOf);
    expect(batches).toHaveLength(2);
    expect(results.filter((r) => r.kind === 'idle')).toEqual([{ kind: 'idle', reason: 'maximumConcurrency' }]);
    await completeBatch(t.db, batches[0] as ReceivedBatch, ok);
    const third = batchOf(await receiveBatch(t.db, p, fn, opts));
    expect(await receiveBatch(t.db, p, fn, opts)).toEqual({ kind: 'idle', reason: 'maximumConcurrency' });
    // raising the limit takes effect at the next receive
    await updateEventSourceMapping(t.db, m.id, { maximumConcurrency: 3 });
    const fourth = batchOf(await receiveBatch(t.db, p, fn, opts));
    for (const b of [batches[1], third, fourth]) await completeBatch(t.db, b as ReceivedBatch, ok);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.message_batches where mapping_id = ${m.id}::uuid`.execute(t.db);
    expect(rows[0]?.n).toBe(0);
    await deleteEventSourceMapping(t.db, m.id);
  });
});
