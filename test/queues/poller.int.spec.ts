// The event source poller in-process, over inline runtimes: batch size and window,
// reportBatchItemFailures, dead letters and redrive, disable/enable, maximumConcurrency
// across two pollers. Every batch is a `poll` invocation the ledger verifies at the end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { reapExpiredLeases } from '../../apps/worker/index.ts';
import { createFunction, FunctionVersionCache } from '../../db/functions.ts';
import { listDeadLetterMessages, redriveDeadLetterMessages } from '../../db/queues/dead-letters.ts';
import { createEventSourceMapping, deleteEventSourceMapping, updateEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue, queueCounts } from '../../db/queues/queues.ts';
import { type EventSourceMappingInput, type QueueInput } from '../../db/queues/schemas.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import {
  batchFunction,
  pollInvocations,
  queueRuntimes,
  remainingMessages,
  startPoller,
  terminal,
  waitFor,
  type PollInvocation,
  type RunningPoller,
} from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let poller: RunningPoller;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = queueRuntimes();
  poller = await startPoller(t.db, runtimes, { databaseUrl: t.ownerUrl });
});

afterAll(async () => {
  await poller?.stop();
  await runtimes?.close();
});

async function settled(functionName: string, queueName: string): Promise<PollInvocation[]> {
  return waitFor(`${queueName} drained`, async () => {
    // messages first: a batch's invocation commits before the settle that deletes them, so
    // once none are left every batch is visible (read together, the last one could be missed)
    const left = await remainingMessages(t.db, queueName);
    const invocations = await pollInvocations(t.db, functionName);
    return left === 0 && invocations.length > 0 && invocations.every((i) => terminal(i.status)) ? invocations : null;
  });
}

/**
 * A queue, its messages (sent in one statement, before the mapping exists, so batches
 * do not depend on timing) and a mapping to a batch.ts function; returns the poll
 * invocations once the queue is empty.
 */
async function deliver(
  name: string,
  bodies: unknown[],
  mapping: Partial<EventSourceMappingInput> = {},
  queue: Partial<QueueInput> = {},
): Promise<{ ids: string[]; invocations: PollInvocation[] }> {
  await createQueue(t.db, { name, ...queue });
  const ids = await sendMessages(t.db, name, bodies.map((body) => ({ body })));
  await batchFunction(t.db, name);
  const m = await createEventSourceMapping(t.db, { queueName: name, functionName: name, ...mapping });
  const invocations = await settled(name, name);
  await deleteEventSourceMapping(t.db, m.id);
  return { ids, invocations };
}

describe('batching', () => {
  it('delivers up to batchSize messages per invocation, in send order', async () => {
    const { ids, invocations } = await deliver('sizes', Array.from({ length: 25 }, (_, n) => ({ n })), { batchSize: 10 });
    expect(invocations.map((i) => i.messageIds.length)).toEqual([10, 10, 5]);
    expect(invocations.flatMap((i) => i.messageIds)).toEqual(ids);
    expect(invocations.every((i) => i.status === 'succeeded')).toBe(true);
  });

  it('a full batch goes at once, however long the window', async () => {
    const { invocations } = await deliver('full', [1, 2, 3, 4, 5].map((n) => ({ n })), { batchSize: 5, maxBatchingWindowMs: 300_000 });
    expect(invocations.map((i) => i.messageIds.length)).toEqual([5]);
  });

  it('a partial batch waits for the window, gathering what arrives meanwhile', async () => {
    await createQueue(t.db, { name: 'window' });
    await batchFunction(t.db, 'window');
    const m = await createEventSourceMapping(t.db, { queueName: 'window', functionName: 'window', batchSize: 10, maxBatchingWindowMs: 3_000 });
    const [first] = await sendMessages(t.db, 'window', [{ body: 1 }]);
    const [second] = await sendMessages(t.db, 'window', [{ body: 2 }]);
    const [inv] = await settled('window', 'window');
    expect(inv?.messageIds).toEqual([first, second]);
    // the receive waited the window from the first message's send, both by the database's clock
    const waitedMs = (inv?.acceptedAt.getTime() as number) - (inv?.sentTimestamps[0] as number);
    expect(waitedMs).toBeGreaterThanOrEqual(3_000 - 1);
    await deleteEventSourceMapping(t.db, m.id);
  });
});

describe('reportBatchItemFailures', () => {
  const report = { reportBatchItemFailures: true };

  it('only the named messages return to the queue; the rest are deleted', async () => {
    const { ids, invocations } = await deliver('subset', [{}, { failUntil: 2 }, {}], report);
    expect(invocations.map((i) => ({ status: i.status, ids: i.messageIds, counts: i.receiveCounts }))).toEqual([
      { status: 'succeeded', ids, counts: [1, 1, 1] },
      { status: 'succeeded', ids: [ids[1]], counts: [2] },
    ]);
    expect(invocations[0]?.result).toEqual({ batchItemFailures: [{ itemIdentifier: ids[1] }] });
  });

  it.each([
    ['an empty list', { batchItemFailures: [] }],
    ['a null list', { batchItemFailures: null }],
    ['no response', null],
  ])('%s: every message succeeded', async (what, respond) => {
    const name = `all-ok-${what.replaceAll(' ', '-')}`;
    // the second message would be reported failed, but the response overrides it
    const { invocations } = await deliver(name, [{ respond }, { failUntil: 5 }], report);
    expect(invocations.map((i) => [i.status, i.messageIds.length])).toEqual([['succeeded', 2]]);
  });

  it.each([
    ['an unknown identifier', { batchItemFailures: [{ itemIdentifier: 'not-in-this-batch' }] }],
    ['a malformed response', { batchItemFailures: 'all of them' }],
    ['a response that is not an object', 'done'],
  ])('%s fails the whole batch: every message returns', async (what, respond) => {
    const name = `invalid-${what.replaceAll(' ', '-')}`;
    const { ids, invocations } = await deliver(name, [{ respond, respondUntil: 2 }, {}], report);
    expect(invocations.map((i) => ({ status: i.status, errorType: i.errorType, ids: i.messageIds, counts: i.receiveCounts }))).toEqual([
      { status: 'failed', errorType: 'InvalidBatchItemFailures', ids, counts: [1, 1] },
      { status: 'succeeded', errorType: null, ids, counts: [2, 2] },
    ]);
  });

  it('a thrown error fails the whole batch, with or without reporting', async () => {
    for (const reportBatchItemFailures of [true, false]) {
      const name = `thrown-${reportBatchItemFailures}`;
      const { ids, invocations } = await deliver(name, [{}, { throwUntil: 2 }], { reportBatchItemFailures });
      expect(invocations.map((i) => ({ status: i.status, errorType: i.errorType, ids: i.messageIds, counts: i.receiveCounts }))).toEqual([
        { status: 'failed', errorType: 'Error', ids, counts: [1, 1] },
        { status: 'succeeded', errorType: null, ids, counts: [2, 2] },
      ]);
    }
  });

  it('without reportBatchItemFailures a response naming failures is ignored', async () => {
    const { invocations } = await deliver('not-reporting', [{ failUntil: 5 }, {}], { reportBatchItemFailures: false });
    expect(invocations.map((i) => [i.status, i.messageIds.length])).toEqual([['succeeded', 2]]);
  });
});

describe('dead letters', () => {
  it('a message received maxReceiveCount times without success is dead-lettered; redrive delivers it again', async () => {
    await createQueue(t.db, { name: 'poison', maxReceiveCount: 2 });
    const [poison, good] = await sendMessages(t.db, 'poison', [{ body: { throwUntil: 1000 } }, { body: {} }]);
    await batchFunction(t.db, 'poison');
    const m = await createEventSourceMapping(t.db, { queueName: 'poison', functionName: 'poison', batchSize: 1 });
    await waitFor('the poison message dead-lettered', async () => (await queueCounts(t.db, ['poison'])).get('poison')?.deadLettered === 1);
    await waitFor('the good message deleted', async () => (await remainingMessages(t.db, 'poison')) === 1);
    const invocations = await pollInvocations(t.db, 'poison');
    expect(invocations.map((i) => ({ status: i.status, ids: i.messageIds, counts: i.receiveCounts }))).toEqual([
      { status: 'failed', ids: [poison], counts: [1] },
      { status: 'succeeded', ids: [good], counts: [1] },
      { status: 'failed', ids: [poison], counts: [2] },
    ]);
    const dead = await listDeadLetterMessages(t.db, 'poison');
    expect(dead.edges.map((e) => e.node)).toMatchObject([{ id: poison, receiveCount: 2, deadLetterReason: 'MaxReceiveCountExceeded', body: { throwUntil: 1000 } }]);

    // fixed: the mapping now calls a function that copes, and the dead letter is redriven
    await createFunction(t.db, 'poison-fixed', { runtime: 'MODULE', handler: 'batch.ts#acknowledge', isolation: 'inline' });
    await updateEventSourceMapping(t.db, m.id, { functionName: 'poison-fixed' });
    expect(await redriveDeadLetterMessages(t.db, 'poison')).toBe(1);
    const [fixed] = await settled('poison-fixed', 'poison');
    expect(fixed).toMatchObject({ status: 'succeeded', messageIds: [poison], receiveCounts: [1], result: { acknowledged: 1 } });
    await deleteEventSourceMapping(t.db, m.id);
  });
});

describe('enable and disable', () => {
  /** Proof that the poller made a full pass over the enabled mappings since now. */
  async function barrier(): Promise<void> {
    const [id] = await sendMessages(t.db, 'barrier', [{ body: {} }]);
    await waitFor('the barrier message', async () => !(await pollInvocations(t.db, 'barrier')).some((i) => i.messageIds.includes(id as string) && !terminal(i.status)) && (await remainingMessages(t.db, 'barrier')) === 0);
  }

  it('a disabled mapping delivers nothing; enabled again, it delivers what waited', async () => {
    await createQueue(t.db, { name: 'barrier' });
    await batchFunction(t.db, 'barrier');
    await createEventSourceMapping(t.db, { queueName: 'barrier', functionName: 'barrier' });
    await createQueue(t.db, { name: 'switch' });
    await batchFunction(t.db, 'switch');
    const m = await createEventSourceMapping(t.db, { queueName: 'switch', functionName: 'switch', enabled: false });
    await sendMessages(t.db, 'switch', [{ body: { n: 1 } }]);
    await barrier();
    expect(await pollInvocations(t.db, 'switch')).toEqual([]);

    await updateEventSourceMapping(t.db, m.id, { enabled: true });
    expect(await settled('switch', 'switch')).toHaveLength(1);

    await updateEventSourceMapping(t.db, m.id, { enabled: false });
    await sendMessages(t.db, 'switch', [{ body: { n: 2 } }, { body: { n: 3 } }]);
    await barrier();
    expect(await pollInvocations(t.db, 'switch')).toHaveLength(1);
    expect((await queueCounts(t.db, ['switch'])).get('switch')).toMatchObject({ visible: 2, inFlight: 0 });

    await updateEventSourceMapping(t.db, m.id, { enabled: true });
    await waitFor('the waiting messages', async () => (await remainingMessages(t.db, 'switch')) === 0);
    expect((await settled('switch', 'switch')).map((i) => i.messageIds.length)).toEqual([1, 2]);
    await deleteEventSourceMapping(t.db, m.id);
  });
});

describe('maximumConcurrency', () => {
  it('at most that many batches of a mapping run at once across pollers', async () => {
    const other = await startPoller(t.db, runtimes, { databaseUrl: t.ownerUrl });
    try {
      await createQueue(t.db, { name: 'gauge' });
      await sendMessages(t.db, 'gauge', Array.from({ length: 8 }, () => ({ body: { sleepMs: 300 } })));
      await createFunction(t.db, 'gauge', { runtime: 'MODULE', handler: 'gauge.ts', isolation: 'inline' });
      const m = await createEventSourceMapping(t.db, { queueName: 'gauge', functionName: 'gauge', batchSize: 1, maximumConcurrency: 2 });
      const invocations = await settled('gauge', 'gauge');
      expect(invocations).toHaveLength(8);
      // the handler counts the invocations of this module running in this process (both pollers share it)
      const seen = invocations.map((i) => (i.result as { atStart: number }).atStart);
      expect(Math.max(...seen)).toBeLessThanOrEqual(2);
      await deleteEventSourceMapping(t.db, m.id);
      console.log(`[queues] maximumConcurrency 2: concurrency seen at start ${seen.join(',')}; workers ${new Set(invocations.map((i) => i.workerId)).size}`);
    } finally {
      await other.stop();
    }
  });
});

describe('leases', () => {
  it('a batch waiting for its runtime keeps its lease by heartbeat: the reaper does not take it', async () => {
    // a runtime that makes every batch wait 5 s before it runs, as a busy thread pool would
    const slow: Runtimes = {
      run: async (fn, req, signal) => {
        await new Promise((r) => setTimeout(r, 5_000));
        return runtimes.run(fn, req, signal);
      },
      reserve: async (fn) => ({ granted: true, run: (req, signal) => slow.run(fn, req, signal), release: () => {} }),
      close: async () => {},
    };
    const own = await startPoller(t.db, slow, { leaseGraceMs: 1_500 });
    try {
      await createQueue(t.db, { name: 'waiting', visibilityTimeoutSeconds: 60 });
      await sendMessages(t.db, 'waiting', [{ body: {} }]);
      await batchFunction(t.db, 'waiting', { timeoutMs: 200 }); // lease = 200 ms + 1.5 s grace
      // the file's poller would take the batch too: this mapping is for `own` alone
      await poller.stop();
      const m = await createEventSourceMapping(t.db, { queueName: 'waiting', functionName: 'waiting' });
      const versions = new FunctionVersionCache(t.db);
      const reaped: string[] = [];
      await waitFor('the batch finished', async () => {
        for (const r of await reapExpiredLeases(t.db, { versions })) reaped.push(r.state.id);
        const list = await pollInvocations(t.db, 'waiting');
        return list.length === 1 && terminal(list[0]?.status as string) ? list : null;
      });
      expect(reaped).toEqual([]);
      expect((await pollInvocations(t.db, 'waiting'))[0]?.status).toBe('succeeded');
      expect(await remainingMessages(t.db, 'waiting')).toBe(0);
      await deleteEventSourceMapping(t.db, m.id);
    } finally {
      await own.stop();
      await poller.start();
    }
  });
});
