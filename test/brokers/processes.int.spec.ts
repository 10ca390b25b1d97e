// At-least-once across a killed worker process, with RabbitMQ: worker A (`invoke-ledger
// start --role worker`) takes a batch and is SIGKILLed mid-invocation; the broker requeues
// the unacknowledged messages when A's connection drops, worker B takes the mapping over
// once A's hold runs out and processes them; B's lease reaper ends A's poll invocation as
// failed (WorkerLost). Nothing is recorded as processed twice.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBrokerMapping } from '../../db/brokers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { brokerBatches, FIXTURES, RABBITMQ_URL, waitFor } from './helpers.ts';

let t: TestDatabase;
let dir: string;
let amqp: ChannelModel;
let ch: ConfirmChannel;
const queue = `ledger-test-procs-${randomUUID().slice(0, 8)}`;
const services = new Set<ServiceProcess>();

async function spawnWorker(): Promise<ServiceProcess> {
  const p = await spawnService('worker', await freePort(), { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: FIXTURES, WORKER_LEASE_GRACE_MS: '1000', POLL_INTERVAL_MS: '200' });
  services.add(p);
  return p;
}

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'broker-procs-'));
  amqp = await connect(RABBITMQ_URL);
  ch = await amqp.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await ch?.deleteQueue(queue).catch(() => {});
  await amqp?.close().catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe('worker processes', () => {
  it('messages of a batch whose worker was SIGKILLed are redelivered by the broker and processed by another worker', { timeout: 120_000 }, async () => {
    const a = await spawnWorker(); // registers the fixtures as functions
    const marker = path.join(dir, 'batch-1-running');
    for (let n = 1; n <= 5; n++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n, marker })), { messageId: `m-${n}` });
    await ch.waitForConfirms();
    await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'rabbitmq', url: RABBITMQ_URL, queue, functionName: 'broker-slow', batchSize: 10, maxBatchingWindowMs: 500 });

    await waitFor('the batch running in worker A', async () => existsSync(marker) && readFileSync(marker, 'utf8').split('\n').length === 5, 30_000);
    await endProcess(a, 'SIGKILL');
    expect(a.child.signalCode).toBe('SIGKILL');

    const b = await spawnWorker();
    const [lost, redelivered] = await waitFor(
      'both poll invocations ended',
      async () => {
        const list = await brokerBatches(t.db, 'broker-slow');
        return list.length === 2 && list.every((i) => i.status !== 'running') ? list : null;
      },
      60_000,
    );
    expect(lost).toMatchObject({ status: 'failed', errorType: 'WorkerLost', redelivered: [false, false, false, false, false] });
    expect(redelivered).toMatchObject({ status: 'succeeded', redelivered: [true, true, true, true, true] });
    expect(redelivered?.bodies.map((x) => x.n)).toEqual([1, 2, 3, 4, 5]);
    await waitFor('acknowledged', async () => (await ch.checkQueue(queue)).messageCount === 0);
    await endProcess(b);
    // nothing waits in the broker once B is gone: every message was acknowledged
    expect((await ch.checkQueue(queue)).messageCount).toBe(0);
  });
});
