// NATS JetStream as an event source, against the machine's real server (127.0.0.1:4222):
// every test makes its own stream and deletes it. A durable pull consumer per mapping,
// explicit acks after the ledger recorded the batch, records in stream order per subject,
// failed batches retried in place, then sent to the on-failure queue.
import { randomUUID } from 'node:crypto';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { durableName } from '../../apps/worker/event-sources/brokers/nats.ts';
import { createBrokerMapping, deleteBrokerMapping, getBrokerMapping, updateBrokerMapping, type BrokerMappingInput } from '../../db/brokers.ts';
import { sql } from 'kysely';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, NATS_URL, processedBodies, SLOW_BROKER_TESTS, once, startSources, terminal, waitFor } from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let nc: NatsConnection;
let jsm: JetStreamManager;
let sources: Awaited<ReturnType<typeof startSources>>;
const streams: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = brokerRuntimes();
  // no skip: a missing server fails the file (docs/brokers.md#tests)
  nc = await connect({ servers: new URL(NATS_URL).host });
  jsm = await nc.jetstreamManager();
  sources = await startSources(t.db, runtimes);
});

afterAll(async () => {
  await sources?.stop();
  for (const s of streams) await jsm?.streams.delete(s).catch(() => {});
  await nc?.close();
  await runtimes?.close();
});

async function makeStream(tag: string): Promise<string> {
  const name = `ledger_test_${tag}_${randomUUID().slice(0, 8)}`;
  streams.push(name);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  return name;
}

async function publish(subject: string, bodies: unknown[]): Promise<void> {
  const js = nc.jetstream();
  for (let i = 0; i < bodies.length; i += 500) {
    await Promise.all(bodies.slice(i, i + 500).map((b) => js.publish(subject, Buffer.from(JSON.stringify(b)))));
  }
}

async function mapping(name: string, stream: string, extra: Partial<BrokerMappingInput> = {}) {
  await brokerFunction(t.db, name);
  return createBrokerMapping(t.db, { actor: 'test' }, { broker: 'nats', url: NATS_URL, stream, functionName: name, batchSize: 10, maxBatchingWindowMs: 100, ...extra } as BrokerMappingInput);
}

describe('NATS JetStream source', () => {
  it.runIf(SLOW_BROKER_TESTS)(once('processes 10,000 messages once each, in stream order per subject, acknowledged after the ledger recorded them'), async () => {
    const stream = await makeStream('bulk');
    const n = 10_000;
    // two subjects, interleaved: a's records and b's records each keep their order
    const bodies = Array.from({ length: n }, (_, i) => ({ n: i, s: i % 2 ? 'b' : 'a' }));
    await publish(`${stream}.a`, bodies.filter((b) => b.s === 'a'));
    await publish(`${stream}.b`, bodies.filter((b) => b.s === 'b'));
    const m = await mapping('nats-bulk', stream, { batchSize: 100, maxBatchingWindowMs: 200 });
    const batches = await waitFor(
      'all processed',
      async () => {
        const b = await brokerBatches(t.db, 'nats-bulk');
        return processedBodies(b).length >= n && b.every((x) => terminal(x.status)) ? b : null;
      },
      300_000,
    );
    const seen = processedBodies(batches);
    expect(seen.length).toBe(n);
    expect(new Set(seen.map((b) => b.n)).size).toBe(n);
    for (const s of ['a', 'b']) {
      const ns = seen.filter((b) => b.s === s).map((b) => b.n as number);
      expect(ns).toEqual([...ns].sort((x, y) => x - y));
    }
    const offsets = batches.flatMap((b) => b.offsets);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
    // the server's own counters: nothing pending, nothing awaiting an ack
    const info = await waitFor('acks in', async () => {
      const i = await jsm.consumers.info(stream, durableName(m.id));
      return i.num_pending === 0 && i.num_ack_pending === 0 ? i : null;
    });
    expect(info.ack_floor.stream_seq).toBe(n);
    expect(info.num_redelivered).toBe(0);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  }, 400_000);

  it('retries a failed batch in place, in order, then sends it to the on-failure queue and moves on', async () => {
    const stream = await makeStream('retry');
    await createQueue(t.db, { name: 'nats-failures' });
    await publish(`${stream}.x`, [{ n: 0 }, { n: 1, throw: true }, { n: 2 }]);
    const m = await mapping('nats-retry', stream, { batchSize: 1, maxRetryAttempts: 2, onFailureQueue: 'nats-failures' });
    const batches = await waitFor('moved on', async () => {
      const b = await brokerBatches(t.db, 'nats-retry');
      return processedBodies(b).length === 2 && b.every((x) => terminal(x.status)) ? b : null;
    }, 60_000);
    // 0, then 1 three times (the first try and 2 retries), then 2: never 2 before 1 gave up
    expect(batches.map((b) => b.bodies[0]?.n)).toEqual([0, 1, 1, 1, 2]);
    expect(batches.map((b) => b.status)).toEqual(['succeeded', 'failed', 'failed', 'failed', 'succeeded']);
    const { rows: failures } = await sql<{ body: unknown }>`select body from ledger.messages where queue_name = 'nats-failures'`.execute(t.db);
    expect(failures).toHaveLength(1);
    const body = failures[0]?.body as { requestContext: { condition: string; approximateInvokeCount: number }; source: { records: { offset: number }[] } };
    expect(body.requestContext).toMatchObject({ condition: 'RetryAttemptsExhausted', approximateInvokeCount: 3 });
    expect(body.source.records.map((r) => r.offset)).toEqual([2]);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  }, 90_000);

  it('with reportBatchItemFailures acknowledges the records before the first failure and retries from it', async () => {
    const stream = await makeStream('partial');
    await publish(`${stream}.x`, [{ n: 0 }, { n: 1 }, { n: 2, fail: true }, { n: 3 }]);
    const m = await mapping('nats-partial', stream, { batchSize: 4, maxBatchingWindowMs: 1000, reportBatchItemFailures: true, maxRetryAttempts: 1 });
    const batches = await waitFor('retried once', async () => {
      const b = await brokerBatches(t.db, 'nats-partial');
      return b.length === 2 && b.every((x) => terminal(x.status)) ? b : null;
    }, 60_000);
    expect(batches.map((b) => b.bodies.map((x) => x.n))).toEqual([[0, 1, 2, 3], [2, 3]]);
    // done: only what came before the first failure (3 went back with 2, as a stream's checkpoint does)
    const { rows } = await sql<{ k: string }>`select message_key as k from ledger.broker_messages_done where mapping_id = ${m.id}::uuid order by 1`.execute(t.db);
    expect(rows.map((r) => r.k)).toEqual(['seq:1', 'seq:2']);
    await waitFor('settled', async () => (await jsm.consumers.info(stream, durableName(m.id))).num_ack_pending === 0);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  }, 90_000);

  it('stops within a window-independent time when disabled mid-window, and returns the gathered messages', async () => {
    const stream = await makeStream('stop');
    await publish(`${stream}.x`, [{ n: 0 }]);
    const m = await mapping('nats-stop', stream, { batchSize: 100, maxBatchingWindowMs: 300_000 });
    // the message is gathered into a batch that would wait five minutes for more
    await waitFor('gathering', async () => (await jsm.consumers.info(stream, durableName(m.id)).catch(() => null))?.num_ack_pending === 1);
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: false });
    await waitFor('runner stopped', async () => !sources.running.includes(m.id), 10_000);
    expect(await brokerBatches(t.db, 'nats-stop')).toEqual([]);
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: true, maxBatchingWindowMs: 0 });
    const batches = await waitFor('delivered', async () => {
      const b = await brokerBatches(t.db, 'nats-stop');
      return processedBodies(b).length > 0 ? b : null;
    });
    expect(processedBodies(batches).map((b) => b.n)).toEqual([0]);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });

  it('starts at LATEST: what was in the stream before the mapping is not delivered', async () => {
    const stream = await makeStream('latest');
    await publish(`${stream}.x`, [{ n: 0 }, { n: 1 }]);
    const m = await mapping('nats-latest', stream, { startingPosition: 'LATEST' });
    await waitFor('consumer made', async () => (await getBrokerMapping(t.db, m.id))?.state === 'Enabled');
    await publish(`${stream}.x`, [{ n: 2 }]);
    const batches = await waitFor('delivered', async () => {
      const b = await brokerBatches(t.db, 'nats-latest');
      return processedBodies(b).length > 0 ? b : null;
    });
    expect(processedBodies(batches).map((b) => b.n)).toEqual([2]);
    await deleteBrokerMapping(t.db, { actor: 'test' }, m.id);
  });
});
