// The edges of queues: HTTP POST /queues/:name/messages and the GraphQL operations,
// through createApp as the server mounts them, down to poll invocations listed by type.
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { MAX_MESSAGE_BYTES } from '../../db/queues/schemas.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { batchFunction, FIXTURES, queueRuntimes, remainingMessages, silent, startPoller, waitFor, type RunningPoller } from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let app: Hono;
let poller: RunningPoller | null = null;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = queueRuntimes();
  app = composeApi({ db: t.db, instanceId: 'queues-api-test', runtimes, logger: silent, functionsDir: FIXTURES }).app;
  await batchFunction(t.db, 'consumer');
});

afterAll(async () => {
  await poller?.stop();
  await runtimes?.close();
});

interface GqlBody {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert the shape
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

async function gql(query: string, variables?: Record<string, unknown>): Promise<GqlBody> {
  const res = await app.request('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GqlBody;
}

const codes = (b: GqlBody) => (b.errors ?? []).map((e) => e.extensions?.code);

function post(path: string, body: string): Promise<Response> {
  return Promise.resolve(app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body }));
}

describe('HTTP POST /queues/:name/messages', () => {
  beforeAll(async () => {
    expect(codes(await gql('mutation { createQueue(input: {name: "http"}) { name } }'))).toEqual([]);
  });

  it('201 with the messageId; the message is the body', async () => {
    const res = await post('/queues/http/messages', '{"order": 7, "items": ["tea"]}');
    expect(res.status).toBe(201);
    const { messageId } = (await res.json()) as { messageId: string };
    expect(messageId).toMatch(/^[0-9a-f-]{36}$/);
    const q = await gql('{ queue(name: "http") { approximateNumberOfMessages approximateNumberOfMessagesDelayed } }');
    expect(q.data?.queue).toEqual({ approximateNumberOfMessages: 1, approximateNumberOfMessagesDelayed: 0 });
  });

  it('?delaySeconds delays it; out of range is 400', async () => {
    expect((await post('/queues/http/messages?delaySeconds=900', '"later"')).status).toBe(201);
    const q = await gql('{ queue(name: "http") { approximateNumberOfMessagesDelayed } }');
    expect(q.data?.queue.approximateNumberOfMessagesDelayed).toBe(1);
    for (const d of ['901', '-1', 'soon']) {
      const res = await post(`/queues/http/messages?delaySeconds=${d}`, '{}');
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'InvalidParameter' } });
    }
  });

  it('more than 256 KB is 413; unknown queue 404; not JSON 400', async () => {
    const big = JSON.stringify('x'.repeat(MAX_MESSAGE_BYTES));
    const tooBig = await post('/queues/http/messages', big);
    expect(tooBig.status).toBe(413);
    expect(await tooBig.json()).toMatchObject({ error: { code: 'PayloadTooLarge' } });
    expect((await post('/queues/http/messages', JSON.stringify('x'.repeat(MAX_MESSAGE_BYTES - 2)))).status).toBe(201);
    const missing = await post('/queues/nope/messages', '{}');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'QueueNotFound' } });
    for (const body of ['{not json', '']) {
      const bad = await post('/queues/http/messages', body);
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { code: 'InvalidRequestContent' } });
    }
  });
});

describe('GraphQL', () => {
  it('creates queues with validated input and lists them', async () => {
    const created = await gql('mutation { createQueue(input: {name: "gq", visibilityTimeoutSeconds: 60, maxReceiveCount: 3}) { name visibilityTimeoutSeconds maxReceiveCount approximateNumberOfMessages deadLetterCount } }');
    expect(created.data?.createQueue).toEqual({ name: 'gq', visibilityTimeoutSeconds: 60, maxReceiveCount: 3, approximateNumberOfMessages: 0, deadLetterCount: 0 });
    expect(codes(await gql('mutation { createQueue(input: {name: "gq"}) { name } }'))).toEqual(['QueueExists']);
    expect(codes(await gql('mutation { createQueue(input: {name: "bad name"}) { name } }'))).toEqual(['InvalidParameter']);
    expect(codes(await gql('mutation { createQueue(input: {name: "v", visibilityTimeoutSeconds: 43201}) { name } }'))).toEqual(['InvalidParameter']);
    expect(codes(await gql('mutation { createQueue(input: {name: "m", maxReceiveCount: 0}) { name } }'))).toEqual(['InvalidParameter']);
    const list = await gql('{ queues { name } queue(name: "nope") { name } }');
    expect(list.data?.queues.map((q: { name: string }) => q.name)).toEqual(expect.arrayContaining(['gq', 'http']));
    expect(list.data?.queue).toBeNull();
  });

  it('sends one message or a batch; validates delay and size', async () => {
    const one = await gql('mutation { sendMessage(queueName: "gq", body: {hello: "world"}) { messageId } }');
    expect(one.data?.sendMessage.messageId).toMatch(/^[0-9a-f-]{36}$/);
    const batch = await gql('mutation($e: [SendMessageEntry!]!) { sendMessageBatch(queueName: "gq", entries: $e) { messageId } }', {
      e: [{ body: 1 }, { body: [2] }, { body: { n: 3 }, delaySeconds: 5 }],
    });
    expect(batch.data?.sendMessageBatch).toHaveLength(3);
    expect(codes(await gql('mutation { sendMessage(queueName: "gq", body: 1, delaySeconds: 901) { messageId } }'))).toEqual(['InvalidParameter']);
    expect(codes(await gql('mutation { sendMessage(queueName: "nope", body: 1) { messageId } }'))).toEqual(['QueueNotFound']);
    const big = await gql('mutation($b: JSON!) { sendMessage(queueName: "gq", body: $b) { messageId } }', { b: 'x'.repeat(MAX_MESSAGE_BYTES) });
    expect(codes(big)).toEqual(['PayloadTooLarge']);
    const q = await gql('{ queue(name: "gq") { approximateNumberOfMessages approximateNumberOfMessagesDelayed } }');
    expect(q.data?.queue).toEqual({ approximateNumberOfMessages: 3, approximateNumberOfMessagesDelayed: 1 });
  });

  it('manages event source mappings: create with defaults, update, enable/disable, list, delete', async () => {
    const bad = [
      '{queueName: "gq", functionName: "consumer", batchSize: 0}',
      '{queueName: "gq", functionName: "consumer", batchSize: 10001}',
      '{queueName: "gq", functionName: "consumer", maxBatchingWindowMs: 300001}',
      '{queueName: "gq", functionName: "consumer", maximumConcurrency: 1}',
    ];
    for (const input of bad) expect(codes(await gql(`mutation { createEventSourceMapping(input: ${input}) { id } }`))).toEqual(['InvalidParameter']);
    expect(codes(await gql('mutation { createEventSourceMapping(input: {queueName: "nope", functionName: "consumer"}) { id } }'))).toEqual(['QueueNotFound']);
    expect(codes(await gql('mutation { createEventSourceMapping(input: {queueName: "gq", functionName: "nope"}) { id } }'))).toEqual(['FunctionNotFound']);

    const fields = 'id queueName functionName batchSize maxBatchingWindowMs reportBatchItemFailures maximumConcurrency enabled';
    const created = await gql(`mutation { createEventSourceMapping(input: {queueName: "gq", functionName: "consumer", enabled: false}) { ${fields} } }`);
    const m = created.data?.createEventSourceMapping;
    expect(m).toMatchObject({ queueName: 'gq', functionName: 'consumer', batchSize: 10, maxBatchingWindowMs: 0, reportBatchItemFailures: false, maximumConcurrency: null, enabled: false });

    const updated = await gql(`mutation($id: ID!) { updateEventSourceMapping(id: $id, input: {batchSize: 2, maximumConcurrency: 4, reportBatchItemFailures: true}) { ${fields} } }`, { id: m.id });
    expect(updated.data?.updateEventSourceMapping).toMatchObject({ batchSize: 2, maximumConcurrency: 4, reportBatchItemFailures: true, enabled: false });
    const cleared = await gql('mutation($id: ID!) { updateEventSourceMapping(id: $id, input: {maximumConcurrency: null}) { maximumConcurrency batchSize } }', { id: m.id });
    expect(cleared.data?.updateEventSourceMapping).toEqual({ maximumConcurrency: null, batchSize: 2 });
    expect(codes(await gql('mutation { updateEventSourceMapping(id: "00000000-0000-4000-8000-000000000000", input: {enabled: true}) { id } }'))).toEqual(['EventSourceMappingNotFound']);

    const listed = await gql('{ eventSourceMappings(queueName: "gq") { id } queue(name: "gq") { eventSourceMappings { id enabled } } }');
    expect(listed.data?.eventSourceMappings).toEqual([{ id: m.id }]);
    expect(listed.data?.queue.eventSourceMappings).toEqual([{ id: m.id, enabled: false }]);

    // enabled, the worker's poller delivers the three visible messages in batches of two
    poller = await startPoller(t.db, runtimes);
    await gql('mutation($id: ID!) { updateEventSourceMapping(id: $id, input: {enabled: true}) { enabled } }', { id: m.id });
    await waitFor('the visible messages delivered', async () => {
      const q = await gql('{ queue(name: "gq") { approximateNumberOfMessages approximateNumberOfMessagesNotVisible } }');
      return q.data?.queue.approximateNumberOfMessages === 0 && q.data?.queue.approximateNumberOfMessagesNotVisible === 0;
    });
    const polls = await gql('{ invocations(filter: {functionName: "consumer", type: POLL}) { edges { node { type status payload } } } }');
    const nodes = polls.data?.invocations.edges.map((e: { node: { type: string; status: string; payload: { Records: unknown[] } } }) => e.node);
    expect(nodes.map((n: { type: string; status: string }) => [n.type, n.status])).toEqual([
      ['POLL', 'SUCCEEDED'],
      ['POLL', 'SUCCEEDED'],
    ]);
    expect(nodes.map((n: { payload: { Records: unknown[] } }) => n.payload.Records.length).sort()).toEqual([1, 2]);

    expect((await gql('mutation($id: ID!) { deleteEventSourceMapping(id: $id) }', { id: m.id })).data?.deleteEventSourceMapping).toBe(true);
    expect(codes(await gql('mutation($id: ID!) { deleteEventSourceMapping(id: $id) }', { id: m.id }))).toEqual(['EventSourceMappingNotFound']);
    expect((await gql('mutation($id: ID!) { q: eventSourceMapping(id: $id) { id } }'.replace('mutation', 'query'), { id: m.id })).data?.q).toBeNull();
  });

  it('lists and redrives a queue’s dead letters', async () => {
    await gql('mutation { createQueue(input: {name: "gdlq", maxReceiveCount: 1}) { name } }');
    const sent = await gql('mutation { sendMessageBatch(queueName: "gdlq", entries: [{body: {throwUntil: 2}}, {body: {throwUntil: 2}}]) { messageId } }');
    const ids = sent.data?.sendMessageBatch.map((r: { messageId: string }) => r.messageId);
    poller ??= await startPoller(t.db, runtimes);
    const created = await gql('mutation { createEventSourceMapping(input: {queueName: "gdlq", functionName: "consumer", batchSize: 1}) { id } }');
    await waitFor('both dead-lettered', async () => (await gql('{ queue(name: "gdlq") { deadLetterCount } }')).data?.queue.deadLetterCount === 2);

    const page1 = await gql('{ queueDeadLetters(queueName: "gdlq", first: 1) { edges { cursor node { messageId body receiveCount deadLetterReason } } pageInfo { hasNextPage hasPreviousPage endCursor } } }');
    expect(page1.errors).toBeUndefined();
    const c1 = page1.data?.queueDeadLetters;
    expect(c1.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    expect(c1.edges[0].node).toMatchObject({ body: { throwUntil: 2 }, receiveCount: 1, deadLetterReason: 'MaxReceiveCountExceeded' });
    const page2 = await gql('query($a: String) { queueDeadLetters(queueName: "gdlq", first: 1, after: $a) { edges { node { messageId } } pageInfo { hasNextPage hasPreviousPage } } }', { a: c1.pageInfo.endCursor });
    expect(page2.data?.queueDeadLetters.pageInfo).toEqual({ hasNextPage: false, hasPreviousPage: true });
    expect([c1.edges[0].node.messageId, page2.data?.queueDeadLetters.edges[0].node.messageId].sort()).toEqual([...ids].sort());
    expect(codes(await gql('{ queueDeadLetters(queueName: "nope") { edges { cursor } } }'))).toEqual(['QueueNotFound']);

    // redriven with a fresh receive count, the second receive succeeds (throwUntil: 2 counts per life)
    expect((await gql('mutation($ids: [ID!]) { redriveQueueDeadLetters(queueName: "gdlq", messageIds: $ids) }', { ids: [ids[0]] })).data?.redriveQueueDeadLetters).toBe(1);
    expect((await gql('mutation { redriveQueueDeadLetters(queueName: "gdlq") }')).data?.redriveQueueDeadLetters).toBe(1);
    await waitFor('dead-lettered again after one more failed receive', async () => (await gql('{ queue(name: "gdlq") { deadLetterCount } }')).data?.queue.deadLetterCount === 2);
    await gql('mutation($id: ID!) { deleteEventSourceMapping(id: $id) }', { id: created.data?.createEventSourceMapping.id });
    expect(await remainingMessages(t.db, 'gdlq')).toBe(2);
  });
});
