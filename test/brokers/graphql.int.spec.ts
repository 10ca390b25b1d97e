// Broker mappings over GraphQL: created with a URL whose credentials never come back (nor
// sit in the table in clear when LEDGER_SECRET_KEY is set), consumed by a worker that opens
// the sealed URL with the same key, state and lag readable, disabled and deleted.
import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertFunction } from '../../db/functions.ts';
import { createHarness, type Harness } from '../graphql/harness.ts';
import { brokerBatches, brokerRuntimes, FIXTURES, processedBodies, RABBITMQ_URL, startSources, waitFor } from './helpers.ts';

const SECRET_KEY = 'a-test-secret-key-of-at-least-32-characters';
let h: Harness;
let amqp: ChannelModel;
let ch: ConfirmChannel;
const queue = `ledger-test-gql-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  h = await createHarness({ deps: { auth: { enabled: false, secretKey: SECRET_KEY } } });
  amqp = await connect(RABBITMQ_URL);
  ch = await amqp.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
});

afterAll(async () => {
  await ch?.deleteQueue(queue).catch(() => {});
  await amqp?.close().catch(() => {});
  await h?.close();
});

const FIELDS = 'id broker functionName endpoint queue virtualHost batchSize enabled state stateReason lag';

describe('broker mappings over GraphQL', () => {
  it('creates a RabbitMQ mapping whose credentials are sealed and never answered, and a worker consumes it', async () => {
    await upsertFunction(h.t.db, 'gql-broker', { runtime: 'MODULE', handler: `${FIXTURES}broker.ts`, isolation: 'inline' });
    const created = await h.gql(
      `mutation($input: RabbitMqEventSourceMappingInput!) { createRabbitMqEventSourceMapping(input: $input) { ${FIELDS} } }`,
      { input: { url: RABBITMQ_URL, queue, functionName: 'gql-broker', batchSize: 5, maxBatchingWindowMs: 100 } },
    );
    expect(created.errors).toBeUndefined();
    const m = created.data?.createRabbitMqEventSourceMapping;
    expect(m).toMatchObject({ broker: 'RABBITMQ', endpoint: 'amqp://127.0.0.1:5672', queue, virtualHost: '/', batchSize: 5, enabled: true });
    expect(JSON.stringify(created)).not.toContain('guest');
    const { rows } = await h.t.pool.query<{ f: string; s: Buffer }>('select connection_format as f, connection_sealed as s from ledger.broker_mappings where id = $1', [m.id]);
    expect(rows[0]?.f).toBe('aes-256-gcm');
    expect(rows[0]?.s.toString('latin1')).not.toContain('guest');

    const runtimes = brokerRuntimes();
    const sources = await startSources(h.t.db, runtimes, { secretKey: SECRET_KEY });
    try {
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: 1 })), { messageId: 'one' });
      await ch.waitForConfirms();
      await waitFor('processed', async () => processedBodies(await brokerBatches(h.t.db, 'gql-broker')).length === 1);
      const read = await waitFor('lag known', async () => {
        const r = await h.gql(`query($id: ID!) { brokerEventSourceMapping(id: $id) { ${FIELDS} } }`, { id: m.id });
        return r.data?.brokerEventSourceMapping?.lag === 0 ? r : null;
      });
      expect(read.data?.brokerEventSourceMapping).toMatchObject({ state: 'Enabled', stateReason: null, lag: 0 });
      const off = await h.gql(`mutation($id: ID!) { updateBrokerEventSourceMapping(id: $id, input: { enabled: false }) { enabled } }`, { id: m.id });
      expect(off.data?.updateBrokerEventSourceMapping).toEqual({ enabled: false });
      await waitFor('consumer gone', async () => (await ch.checkQueue(queue)).consumerCount === 0);
    } finally {
      await sources.stop();
      await runtimes.close();
    }
    const list = await h.gql(`{ brokerEventSourceMappings(functionName: "gql-broker") { id } }`);
    expect(list.data?.brokerEventSourceMappings).toEqual([{ id: m.id }]);
    const del = await h.gql(`mutation($id: ID!) { deleteBrokerEventSourceMapping(id: $id) }`, { id: m.id });
    expect(del.data?.deleteBrokerEventSourceMapping).toBe(true);
  });

  it('records every create, update and delete in ledger.changes, with who made it and never the URL', async () => {
    await upsertFunction(h.t.db, 'gql-history', { runtime: 'MODULE', handler: `${FIXTURES}broker.ts`, isolation: 'inline' });
    await upsertFunction(h.t.db, 'gql-history-2', { runtime: 'MODULE', handler: `${FIXTURES}broker.ts`, isolation: 'inline' });
    const created = await h.gql(
      `mutation($input: RabbitMqEventSourceMappingInput!) { createRabbitMqEventSourceMapping(input: $input) { id } }`,
      { input: { url: 'amqp://history-user:first-s3cret@127.0.0.1:5672', queue: 'history', functionName: 'gql-history', enabled: false } },
    );
    expect(created.errors).toBeUndefined();
    const id = created.data?.createRabbitMqEventSourceMapping.id as string;
    const update = (input: string) => h.gql(`mutation($id: ID!) { updateBrokerEventSourceMapping(id: $id, input: ${input}) { endpoint batchSize functionName } }`, { id });
    const moved = await update('{ url: "amqp://history-user:second-s3cret@localhost:5673", batchSize: 7 }');
    expect(moved.data?.updateBrokerEventSourceMapping).toEqual({ endpoint: 'amqp://localhost:5673', batchSize: 7, functionName: 'gql-history' });
    expect((await update('{ batchSize: 7 }')).errors).toBeUndefined(); // changes nothing: not a change
    expect((await update('{ functionName: "no-such-function" }')).errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    expect((await update('{ url: "nats://127.0.0.1:4222" }')).errors?.[0]?.message).toMatch(/url must be a amqp:\/\/ or amqps:\/\/ URL/);
    await update('{ functionName: "gql-history-2", enabled: true }');
    const history = await h.gql(`query($id: ID!) { brokerEventSourceMapping(id: $id) { history { seq action actor data } } }`, { id });
    expect(history.data?.brokerEventSourceMapping.history.map((c: { seq: number; action: string }) => [c.seq, c.action])).toEqual([
      [3, 'updated'],
      [2, 'updated'],
      [1, 'created'],
    ]);
    expect(JSON.stringify(history)).not.toMatch(/s3cret/);
    expect((await h.gql(`mutation($id: ID!) { deleteBrokerEventSourceMapping(id: $id) }`, { id })).errors).toBeUndefined();

    const { rows } = await h.t.pool.query<{ seq: number; action: string; actor: string; request_id: string | null; data: Record<string, unknown> }>(
      `select seq, action, actor, request_id, data from ledger.changes where resource_type = 'event_source_mapping' and resource_name = $1 order by seq`,
      [id],
    );
    expect(rows.map((r) => [r.seq, r.action, r.actor])).toEqual([
      [1, 'created', 'anonymous'],
      [2, 'updated', 'anonymous'],
      [3, 'updated', 'anonymous'],
      [4, 'deleted', 'anonymous'],
    ]);
    expect(rows.every((r) => typeof r.request_id === 'string')).toBe(true);
    expect(rows[0]?.data).toMatchObject({ before: null, after: { broker: 'rabbitmq', functionName: 'gql-history', endpoint: 'amqp://127.0.0.1:5672', queue: 'history', enabled: false } });
    // the URL changed: recorded as changed, its value nowhere
    expect(rows[1]?.data).toEqual({
      before: { endpoint: 'amqp://127.0.0.1:5672', batchSize: 100, url: '(sealed)' },
      after: { endpoint: 'amqp://localhost:5673', batchSize: 7, url: '(changed)' },
    });
    expect(rows[2]?.data).toEqual({ before: { functionName: 'gql-history', enabled: false }, after: { functionName: 'gql-history-2', enabled: true } });
    expect(rows[3]?.data).toMatchObject({ before: { functionName: 'gql-history-2', endpoint: 'amqp://localhost:5673' }, after: null });
    const all = JSON.stringify(rows);
    expect(all).not.toMatch(/s3cret|history-user/);
    const { rows: audited } = await h.t.pool.query(`select after from audit.changes where resource_name = $1 and action = 'updated'`, [id]);
    expect(JSON.stringify(audited)).not.toMatch(/s3cret/);
  });

  it('refuses what cannot work with a coded error, and writes nothing', async () => {
    const bad = await h.gql(`mutation { createNatsEventSourceMapping(input: { url: "http://x", stream: "s", functionName: "nope" }) { id } }`);
    expect(bad.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    expect(bad.errors?.[0]?.message).toMatch(/url must be a nats:\/\/ or tls:\/\/ URL/);
    const noFn = await h.gql(`mutation { createNatsEventSourceMapping(input: { url: "nats://127.0.0.1:4222", stream: "s", functionName: "nope" }) { id } }`);
    expect(noFn.errors?.[0]?.extensions?.code).toBe('FunctionNotFound');
    const unknown = await h.gql(`mutation { updateBrokerEventSourceMapping(id: "${randomUUID()}", input: { enabled: false }) { id } }`);
    expect(unknown.errors?.[0]?.extensions?.code).toBe('EventSourceMappingNotFound');
    const { rows } = await h.t.pool.query('select 1 from ledger.broker_mappings');
    expect(rows).toEqual([]);
  });
});
