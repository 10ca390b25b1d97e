// RabbitMQ as an event source, against the machine's real broker (127.0.0.1:5672): every
// test makes its own queues and deletes them. (A broker going away mid-run: a node of the
// test's own, rabbitmq-restart.int.spec.ts.) Each batch is a `poll` invocation; a message
// is acknowledged only after its batch's outcome committed, so the ledger and the broker's
// own counters agree.
import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createBrokerMapping, deleteBrokerMapping, getBrokerMapping, updateBrokerMapping, type BrokerMappingInput } from '../../db/brokers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, processedBodies, RABBITMQ_URL, SLOW_BROKER_TESTS, once, startSources, terminal, waitFor } from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let amqp: ChannelModel;
let ch: ConfirmChannel;
let sources: Awaited<ReturnType<typeof startSources>>;
const queues: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = brokerRuntimes();
  // no skip: a missing broker fails the file (docs/brokers.md#tests)
  amqp = await connect(RABBITMQ_URL);
  ch = await amqp.createConfirmChannel();
  sources = await startSources(t.db, runtimes);
});

afterAll(async () => {
  await sources?.stop();
  for (const q of queues) await ch?.deleteQueue(q).catch(() => {});
  await amqp?.close().catch(() => {});
  await runtimes?.close();
});

/** A queue of its own, with a dead-letter queue behind its dead-letter exchange. */
async function makeQueue(tag: string, args: Record<string, unknown> = {}): Promise<{ queue: string; dlq: string }> {
  const queue = `ledger-test-${tag}-${randomUUID().slice(0, 8)}`;
  const dlq = `${queue}-dlq`;
  queues.push(queue, dlq);
  await ch.assertQueue(dlq, { durable: false });
  await ch.assertQueue(queue, { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlq, ...args } });
  return { queue, dlq };
}

async function publish(queue: string, bodies: unknown[], props: (i: number) => Record<string, unknown> = (i) => ({ messageId: `m-${i}` })): Promise<void> {
  bodies.forEach((b, i) => ch.sendToQueue(queue, Buffer.from(JSON.stringify(b)), props(i)));
  await ch.waitForConfirms();
}

async function mapping(name: string, queue: string, extra: Partial<BrokerMappingInput> = {}) {
  await brokerFunction(t.db, name);
  return createBrokerMapping(t.db, { actor: 'test' }, { broker: 'rabbitmq', url: RABBITMQ_URL, queue, functionName: name, batchSize: 10, maxBatchingWindowMs: 100, ...extra } as BrokerMappingInput);
}

const counts = async (queue: string) => {
  const q = await ch.checkQueue(queue);
  return { ready: q.messageCount, consumers: q.consumerCount };
};

describe('RabbitMQ source', () => {
  it.runIf(SLOW_BROKER_TESTS)(once('processes 10,000 messages once each, acknowledged after the ledger recorded them'), async () => {
    const { queue } = await makeQueue('bulk');
    const n = 10_000;
    await publish(queue, Array.from({ length: n }, (_, i) => ({ n: i })));
    const m = await mapping('rmq-bulk', queue, { batchSize: 100, maxBatchingWindowMs: 200 });
    const batches = await waitFor(
      'all processed',
      async () => {
        const b = await brokerBatches(t.db, 'rmq-bulk');
        return processedBodies(b).length >= n && b.every((x) => terminal(x.status)) ? b : null;
      },
      300_000,
    );
    const seen = processedBodies(batches).map((b) => b.n);
    expect(new Set(seen).size).toBe(n);
    expect(seen.length).toBe(n); // none recorded twice
    expect(batches.every((b) => b.status === 'succeeded' && b.bodies.length <= 100)).toBe(true);
    // the broker agrees: nothing ready, and once the consumer is gone nothing comes back unacked
    await waitFor('lag reported', async () => (await getBrokerMapping(t.db, m.id))?.lag === 0);
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: false });
    await waitFor('consumer gone', async () => (await counts(queue)).consumers === 0);
    expect((await counts(queue)).ready).toBe(0);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  }, 400_000);

  it('retries a failing message and dead-letters it through the queue’s dead-letter exchange after maxDeliveryCount', async () => {
    const { queue, dlq } = await makeQueue('dlx');
    await publish(queue, [{ n: 0 }, { n: 1, throw: true }, { n: 2 }], (i) => ({ messageId: `m-${i}`, headers: { 'x-test': 'yes' } }));
    const m = await mapping('rmq-dlx', queue, { maxDeliveryCount: 3, batchSize: 1 });
    await waitFor('dead-lettered', async () => (await counts(dlq)).ready === 1);
    const batches = await waitFor('the rest processed', async () => {
      const b = await brokerBatches(t.db, 'rmq-dlx');
      return processedBodies(b).length === 2 ? b : null;
    });
    const failing = batches.filter((b) => b.bodies.some((x) => x.n === 1));
    expect(failing.map((b) => b.status)).toEqual(['failed', 'failed', 'failed']);
    expect(failing.map((b) => b.redelivered[0])).toEqual([false, true, true]);
    expect(processedBodies(batches).map((b) => b.n).sort()).toEqual([0, 2]);
    const dead = await ch.get(dlq, { noAck: true });
    expect(dead && JSON.parse(dead.content.toString())).toEqual({ n: 1, throw: true });
    expect((await counts(queue)).ready).toBe(0);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('counts deliveries of a quorum queue by its x-delivery-count header', async () => {
    const queue = `ledger-test-quorum-${randomUUID().slice(0, 8)}`;
    const dlq = `${queue}-dlq`;
    queues.push(queue, dlq);
    await ch.assertQueue(dlq, { durable: false });
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlq } });
    await publish(queue, [{ n: 1, throw: true }]);
    const m = await mapping('rmq-quorum', queue, { maxDeliveryCount: 2, batchSize: 1 });
    await waitFor('dead-lettered', async () => (await counts(dlq)).ready === 1);
    const { rows } = await t.pool.query<{ h: unknown }>(
      `select e.data #> '{payload,rmqMessagesByQueue}' -> $1 -> 0 -> 'basicProperties' -> 'headers' as h
       from ledger.invocations i join ledger.events e on e.invocation_id = i.id and e.seq = 1
       where i.function_name = 'rmq-quorum' order by e.position`,
      [`${queue}::/`],
    );
    // the broker's own count: absent on the first delivery, 1 on the second, then dead-lettered
    expect(rows.map((r) => r.h)).toEqual([null, { 'x-delivery-count': 1 }]);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('with reportBatchItemFailures acknowledges the good messages and returns only the failed ones', async () => {
    const { queue, dlq } = await makeQueue('partial');
    await publish(queue, [{ n: 0 }, { n: 1, fail: true }, { n: 2 }, { n: 3 }]);
    const m = await mapping('rmq-partial', queue, { reportBatchItemFailures: true, maxDeliveryCount: 2, batchSize: 4, maxBatchingWindowMs: 1000 });
    await waitFor('dead-lettered', async () => (await counts(dlq)).ready === 1);
    const batches = await brokerBatches(t.db, 'rmq-partial');
    expect(batches[0]?.bodies.map((b) => b.n)).toEqual([0, 1, 2, 3]);
    expect(batches[0]?.status).toBe('succeeded');
    // only the failed one came back
    expect(batches.slice(1).map((b) => b.bodies.map((x) => x.n))).toEqual([[1]]);
    expect(processedBodies(batches).map((b) => b.n).sort()).toEqual([0, 2, 3]);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('dead-letters a message the ledger cannot store alone; its neighbours are processed', async () => {
    const { queue, dlq } = await makeQueue('unstorable');
    await publish(queue, [{ n: 0 }, { n: 1 }, { n: 2 }], (i) => ({ messageId: `m-${i}`, headers: { note: i === 1 ? 'nul \u0000 here' : 'fine' } }));
    const m = await mapping('rmq-unstorable', queue, { batchSize: 3, maxBatchingWindowMs: 1000 });
    await waitFor('dead-lettered', async () => (await counts(dlq)).ready === 1);
    const batches = await waitFor('processed', async () => {
      const b = await brokerBatches(t.db, 'rmq-unstorable');
      return processedBodies(b).length === 2 ? b : null;
    });
    expect(processedBodies(batches).map((b) => b.n)).toEqual([0, 2]);
    expect(batches.every((b) => b.status === 'succeeded')).toBe(true);
    expect((await getBrokerMapping(t.db, m.id))?.stateReason).toMatch(/UnstorableMessage/);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('stops consuming within a second of being disabled, and resumes when enabled', async () => {
    const { queue } = await makeQueue('toggle');
    const m = await mapping('rmq-toggle', queue);
    await waitFor('consuming', async () => (await counts(queue)).consumers === 1);
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: false });
    await waitFor('stopped', async () => (await counts(queue)).consumers === 0);
    expect((await getBrokerMapping(t.db, m.id))?.state).toBe('Disabled');
    await publish(queue, [{ n: 0 }]);
    expect(await brokerBatches(t.db, 'rmq-toggle')).toEqual([]);
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: true });
    await waitFor('processed', async () => processedBodies(await brokerBatches(t.db, 'rmq-toggle')).length === 1);
    expect((await getBrokerMapping(t.db, m.id))?.state).toBe('Enabled');
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('reports its state again when the database refused the report: the mapping does not go on saying what is no longer true', async () => {
    // the worker may renew its hold but not write the state (a real refusal by PostgreSQL)
    const refuse = `revoke update on ledger.broker_mappings from ledger_app;
      grant update (consumer_worker_id, consumer_expires_at, lag, lag_at) on ledger.broker_mappings to ledger_app`;
    const allow = 'grant update on ledger.broker_mappings to ledger_app';
    await adminQuery(t.ownerUrl, refuse);
    try {
      const { queue } = await makeQueue('state-report');
      const m = await mapping('rmq-state-report', queue);
      await publish(queue, [{ n: 0 }]);
      await waitFor('processed', async () => processedBodies(await brokerBatches(t.db, 'rmq-state-report')).length === 1);
      expect((await getBrokerMapping(t.db, m.id))?.state).toBe('Creating'); // every report was refused
      await adminQuery(t.ownerUrl, allow);
      await waitFor('the state it consumes in, reported', async () => (await getBrokerMapping(t.db, m.id))?.state === 'Enabled', 10_000);
      await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
    } finally {
      await adminQuery(t.ownerUrl, allow);
    }
  });

  it('never shows the connection URL’s credentials', async () => {
    const { queue } = await makeQueue('secret');
    await brokerFunction(t.db, 'rmq-secret');
    const m = await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'rabbitmq', url: 'amqp://guest:guest@127.0.0.1:5672', queue, functionName: 'rmq-secret', enabled: false }, { secretKey: 'k'.repeat(40) });
    expect(JSON.stringify(m)).not.toMatch(/guest/);
    expect(m.endpoint).toBe('amqp://127.0.0.1:5672');
    const { rows } = await t.pool.query<{ s: Buffer }>('select connection_sealed as s from ledger.broker_mappings where id = $1', [m.id]);
    expect(rows[0]?.s.toString('latin1')).not.toMatch(/guest/);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });
});
