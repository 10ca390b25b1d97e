// A RabbitMQ broker that goes away mid-run and comes back: this test runs its own node
// (./rabbitmq-node.ts: free ports, a unique node name, data in a temporary directory), and
// while batches flow it SIGKILLs that node by its pid, starts it again on the same ports and
// data, then stops it gracefully (SIGTERM) and starts it once more. The queue is durable and
// the messages persistent and confirmed, so the broker keeps every message it did not see
// acknowledged. The mapping reports the error, backs off, reconnects, and the ledger records
// every message processed exactly once: a batch recorded just before the kill, whose ack never
// reached the broker, is redelivered and recognised by its messageId instead of run again.
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createBrokerMapping, getBrokerMapping, updateBrokerMapping } from '../../db/brokers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, processedBodies, SLOW_BROKER_TESTS, once, startSources, terminal, waitFor } from './helpers.ts';
import { ownRabbitNode, type RabbitNode } from './rabbitmq-node.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let node: RabbitNode;
let sources: Awaited<ReturnType<typeof startSources>>;

beforeAll(async () => {
  if (!SLOW_BROKER_TESTS) return;
  t = await createTestDatabase();
  runtimes = brokerRuntimes();
  node = await ownRabbitNode();
  await node.start();
  sources = await startSources(t.db, runtimes);
}, 180_000);

afterAll(async () => {
  await sources?.stop();
  await node?.close();
  await runtimes?.close();
});

async function withChannel<T>(fn: (ch: ConfirmChannel) => Promise<T>): Promise<T> {
  const c: ChannelModel = await connect(node.url);
  try {
    return await fn(await c.createConfirmChannel());
  } finally {
    await c.close().catch(() => {});
  }
}

describe.runIf(SLOW_BROKER_TESTS)(once('a RabbitMQ node killed and stopped mid-run'), () => {
  it('loses nothing and records nothing twice', { timeout: 600_000 }, async () => {
    const queue = 'restart';
    const n = 2_000;
    await withChannel(async (ch) => {
      await ch.assertQueue(queue, { durable: true });
      for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i, sleepMs: i % 50 === 0 ? 20 : 0 })), { messageId: `m-${i}`, persistent: true });
      await ch.waitForConfirms();
    });
    await brokerFunction(t.db, 'rmq-restart');
    const m = await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'rabbitmq', url: node.url, queue, functionName: 'rmq-restart', batchSize: 50, maxBatchingWindowMs: 50 });
    const processed = async () => processedBodies(await brokerBatches(t.db, 'rmq-restart')).length;
    // what the mapping said last: a timeout below names it, and the node's own output
    let said = '';
    const state = async () => {
      const r = await getBrokerMapping(t.db, m.id);
      said = `${r?.state} (${r?.stateReason ?? 'no reason'}, since ${r?.stateChangedAt.toISOString()})`;
      return r?.state;
    };
    const explained = (e: Error) => new Error(`${e.message}; the mapping says ${said}; the node's output ends:\n${node.output().slice(-1500)}`);

    const during: number[] = [];
    let floor = 200;
    for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
      await waitFor(`batches flowing (more than ${floor})`, async () => (await processed()) > floor, 120_000);
      await node.signal(sig);
      await waitFor(`the mapping reports the error after ${sig}`, async () => (await state()) === 'Error', 60_000).catch((e: Error) => Promise.reject(explained(e)));
      during.push(await processed());
      await node.start();
      await waitFor(`reconnected after ${sig}`, async () => (await state()) === 'Enabled', 120_000).catch((e: Error) => Promise.reject(explained(e)));
      floor = during.at(-1)! + 200;
    }

    const batches = await waitFor(
      'all processed',
      async () => {
        const b = await brokerBatches(t.db, 'rmq-restart');
        return new Set(processedBodies(b).map((x) => x.n)).size >= n && b.every((x) => terminal(x.status)) ? b : null;
      },
      300_000,
    );
    expect(during.every((x) => x < n)).toBe(true); // both went down mid-run
    const seen = processedBodies(batches).map((b) => b.n);
    expect(new Set(seen).size).toBe(n);
    expect(seen.length).toBe(n); // none recorded as processed twice
    // the broker agrees: once the consumer is gone, nothing is left and nothing comes back
    await updateBrokerMapping(t.db, { actor: 'test' }, m.id, { enabled: false });
    const left = await waitFor('consumer gone', () =>
      withChannel(async (ch) => {
        const q = await ch.checkQueue(queue);
        return q.consumerCount === 0 ? q : null;
      }),
    );
    expect(left.messageCount).toBe(0);
  });
});
