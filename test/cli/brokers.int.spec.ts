// `invoke-ledger brokers …` (docs/brokers.md) against a real database, the machine's
// RabbitMQ and a running broker worker: a mapping the CLI creates is consumed, listed with
// the state the worker reports, disabled and enabled, refused with one line when it cannot
// work, deleted; every change is in ledger.changes as `cli:<user>`, and the URL nowhere.
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, processedBodies, RABBITMQ_URL, startSources, waitFor } from '../brokers/helpers.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const SECRET_KEY = 'a-cli-test-secret-key-of-at-least-32-characters';
let t: TestDatabase;
let runtimes: Runtimes;
let sources: Awaited<ReturnType<typeof startSources>>;
let amqp: ChannelModel;
let ch: ConfirmChannel;
let env: Record<string, string>;
const queue = `ledger-test-cli-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  t = await createTestDatabase();
  env = { DATABASE_URL: t.ownerUrl, LEDGER_SECRET_KEY: SECRET_KEY, TEST_RMQ_URL: RABBITMQ_URL };
  amqp = await connect(RABBITMQ_URL);
  ch = await amqp.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
  runtimes = brokerRuntimes();
  sources = await startSources(t.db, runtimes, { secretKey: SECRET_KEY });
});

afterAll(async () => {
  await sources?.stop();
  await runtimes?.close();
  await ch?.deleteQueue(queue).catch(() => {});
  await amqp?.close().catch(() => {});
});

const consumers = async () => (await ch.checkQueue(queue)).consumerCount;

describe('invoke-ledger brokers', () => {
  it('creates, lists, gets, disables, enables, updates and deletes a mapping a worker consumes', async () => {
    await brokerFunction(t.db, 'cli-broker');
    const created = await cli(['brokers', 'create', 'rabbitmq', '--url-env', 'TEST_RMQ_URL', '--queue', queue, '--function', 'cli-broker', '--batch-size', '5', '--window-ms', '100', '--json'], env);
    expect(created.err).toBe('');
    expect(created.code).toBe(0);
    const m = JSON.parse(created.out) as { id: string; endpoint: string; queue: string; batchSize: number };
    expect(m).toMatchObject({ endpoint: 'amqp://127.0.0.1:5672', queue, batchSize: 5 });
    expect(created.out).not.toContain('guest');

    // the worker opens the sealed URL and consumes
    ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: 1 })), { messageId: 'cli-1' });
    await ch.waitForConfirms();
    await waitFor('processed', async () => processedBodies(await brokerBatches(t.db, 'cli-broker')).length === 1);

    const listed = await waitFor('listed as Enabled', async () => {
      const r = await cli(['brokers', 'list', '--function', 'cli-broker'], env);
      return r.out.includes('Enabled') ? r : null;
    });
    expect(listed.code).toBe(0);
    expect(listed.out.split('\n')[0]).toBe('ID\tBROKER\tFUNCTION\tENDPOINT\tSOURCE\tENABLED\tSTATE\tLAG');
    expect(listed.out).toContain(`${m.id}\trabbitmq\tcli-broker\tamqp://127.0.0.1:5672\t/ ${queue}\ttrue\tEnabled`);
    const got = await cli(['brokers', 'get', m.id], env);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.out)).toMatchObject({ id: m.id, state: 'Enabled', enabled: true });
    expect(got.out).not.toContain('guest');

    const off = await cli(['brokers', 'disable', m.id], env);
    expect(off.code).toBe(0);
    expect(off.out).toContain(`updated rabbitmq mapping ${m.id}`);
    expect(off.out).toContain('(disabled, Disabled)');
    await waitFor('consumer gone', async () => (await consumers()) === 0);
    const on = await cli(['brokers', 'update', m.id, '--enable', '--batch-size', '7', '--report-batch-item-failures'], env);
    expect(on.code).toBe(0);
    await waitFor('consuming again', async () => (await consumers()) === 1);
    ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: 2 })), { messageId: 'cli-2' });
    await ch.waitForConfirms();
    await waitFor('processed after enable', async () => processedBodies(await brokerBatches(t.db, 'cli-broker')).length === 2);
    const again = await cli(['brokers', 'get', m.id], env);
    expect(JSON.parse(again.out)).toMatchObject({ batchSize: 7, reportBatchItemFailures: true, enabled: true });

    const deleted = await cli(['brokers', 'delete', m.id], env);
    expect(deleted.code).toBe(0);
    await waitFor('consumer gone after delete', async () => (await consumers()) === 0);
    expect((await cli(['brokers', 'list', '--json'], env)).out).toBe('[]\n');

    const { rows } = await t.pool.query<{ seq: number; action: string; actor: string; data: unknown }>(
      `select seq, action, actor, data from ledger.changes where resource_type = 'event_source_mapping' and resource_name = $1 order by seq`,
      [m.id],
    );
    const me = `cli:${userInfo().username}`;
    expect(rows.map((r) => [r.action, r.actor])).toEqual([
      ['created', me],
      ['updated', me],
      ['updated', me],
      ['deleted', me],
    ]);
    expect(rows[2]?.data).toEqual({ before: { batchSize: 5, enabled: false, reportBatchItemFailures: false }, after: { batchSize: 7, enabled: true, reportBatchItemFailures: true } });
    expect(JSON.stringify(rows)).not.toContain('guest');
  }, 120_000);

  it('refuses what cannot work with exit 1 and one line, and writes nothing', async () => {
    await brokerFunction(t.db, 'cli-refused');
    const scheme = await cli(['brokers', 'create', 'nats', '--url', 'http://127.0.0.1:4222', '--stream', 'S', '--function', 'cli-refused'], env);
    expect(scheme.code).toBe(1);
    expect(scheme.err).toMatch(/^invoke-ledger: InvalidParameter: url: url must be a nats:\/\/ or tls:\/\/ URL\n$/);
    const wrongField = await cli(['brokers', 'create', 'nats', '--url', 'nats://127.0.0.1:4222', '--stream', 'S', '--queue', 'q', '--function', 'cli-refused'], env);
    expect(wrongField.code).toBe(1);
    expect(wrongField.err).toMatch(/InvalidParameter.*queue/);
    const noFn = await cli(['brokers', 'create', 'rabbitmq', '--url', RABBITMQ_URL, '--queue', 'q', '--function', 'no-such-function'], env);
    expect(noFn.code).toBe(1);
    expect(noFn.err).toMatch(/FunctionNotFound/);
    expect(noFn.err).not.toContain('guest');
    const noUrl = await cli(['brokers', 'create', 'rabbitmq', '--url-env', 'UNSET_BROKER_URL', '--queue', 'q', '--function', 'cli-refused'], env);
    expect(noUrl.err).toBe('invoke-ledger: --url-env UNSET_BROKER_URL: that environment variable is not set\n');
    const missing = await cli(['brokers', 'get', randomUUID()], env);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/EventSourceMappingNotFound/);
    const nothing = await cli(['brokers', 'update', randomUUID()], env);
    expect(nothing.code).toBe(1);
    const { rows } = await t.pool.query(`select 1 from ledger.broker_mappings union all select 1 from ledger.changes where resource_type = 'event_source_mapping' and action = 'created' and data #>> '{after,functionName}' = 'cli-refused'`);
    expect(rows).toEqual([]);
  });

  it('shows examples in --help', async () => {
    const help = await cli(['brokers', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Examples:');
    expect(help.out).toContain('invoke-ledger brokers create rabbitmq --url-env RABBITMQ_URL');
    const create = await cli(['brokers', 'create', '--help']);
    expect(create.out).toMatch(/--queue <queue>[\s\S]*Examples:/);
  });
});
