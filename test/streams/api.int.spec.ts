// The producers' edges (docs/streams.md): POST /streams/:name/records and the GraphQL
// stream operations, through createApp with API keys on, as the server mounts them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, createKeys, gql, startSecureApi, type Keys, type SecureApi } from '../security/helpers.ts';
import { json } from './helpers.ts';
import { sql } from 'kysely';

let t: TestDatabase;
let api: SecureApi;
let keys: Keys;

beforeAll(async () => {
  t = await createTestDatabase();
  api = await startSecureApi(t.db);
  keys = await createKeys(t.db);
});

afterAll(async () => {
  await api?.close();
});

const post = (path: string, body: string, headers: Record<string, string> = bearer(keys.invoke)) =>
  fetch(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

const count = async () => (await sql<{ n: number }>`select count(*)::int as n from ledger.stream_records where stream_name = 'clicks'`.execute(t.db)).rows[0]?.n;

describe('producing over HTTP and GraphQL', () => {
  beforeAll(async () => {
    const r = await gql(api.url, 'mutation { createStream(input: {name: "clicks", shardCount: 2}) { name arn shards { shardId startingHashKey endingHashKey } } }', bearer(keys.admin));
    expect(r.body.errors).toBeUndefined();
    expect(r.body.data?.createStream).toMatchObject({ name: 'clicks', arn: 'arn:aws:kinesis:local:000000000000:stream/clicks' });
  });

  it('POST /streams/:name/records takes PutRecord and PutRecords bodies with the invoke scope', async () => {
    const one = await post('/streams/clicks/records', JSON.stringify({ partitionKey: 'user-1', data: json({ click: 1 }) }));
    expect(one.status).toBe(201);
    expect(await one.json()).toMatchObject({ streamName: 'clicks', shardId: expect.stringMatching(/^shardId-00000000000[01]$/), sequenceNumber: '00000000000000000001' });
    const many = await post('/streams/clicks/records', JSON.stringify({ records: [{ partitionKey: 'user-1', data: json(2) }, { partitionKey: 'user-1', data: json(3) }] }));
    expect(many.status).toBe(201);
    const body = (await many.json()) as { records: { sequenceNumber: string }[] };
    expect(body.records.map((r) => r.sequenceNumber)).toEqual(['00000000000000000002', '00000000000000000003']);
    expect(await count()).toBe(3);
  });

  it('refuses without a key or scope, and refuses bad input alone with nothing written', async () => {
    expect((await post('/streams/clicks/records', JSON.stringify({ partitionKey: 'a', data: json(1) }), {})).status).toBe(401);
    expect((await post('/streams/clicks/records', JSON.stringify({ partitionKey: 'a', data: json(1) }), bearer(keys.audit))).status).toBe(403);
    const before = await count();
    const bad = await post('/streams/clicks/records', JSON.stringify({ records: [{ partitionKey: 'a', data: json(1) }, { partitionKey: 'a', data: '***' }] }));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: 'InvalidParameter', message: expect.stringMatching(/record 1: data must be base64/) } });
    const big = await post('/streams/clicks/records', JSON.stringify({ partitionKey: 'a', data: Buffer.alloc(1_048_577).toString('base64') }));
    expect(big.status).toBe(413);
    expect((await post('/streams/nope/records', JSON.stringify({ partitionKey: 'a', data: json(1) }))).status).toBe(404);
    expect((await post('/streams/clicks/records', 'not json')).status).toBe(400);
    expect(await count()).toBe(before);
  });

  it('GraphQL putRecord / putRecords need invoke; streams are read with audit', async () => {
    const put = await gql(api.url, `mutation { putRecords(streamName: "clicks", records: [{partitionKey: "k", data: "${json(1)}"}]) { shardId sequenceNumber } }`, bearer(keys.invoke));
    expect(put.body.errors).toBeUndefined();
    const denied = await gql(api.url, `mutation { putRecord(streamName: "clicks", partitionKey: "k", data: "${json(1)}") { sequenceNumber } }`, bearer(keys.audit));
    expect(denied.body.errors?.[0]?.extensions?.code).toBe('Forbidden');
    const tooMany = await gql(api.url, `mutation { putRecords(streamName: "clicks", records: [${Array.from({ length: 501 }, () => `{partitionKey: "k", data: "AA=="}`).join(',')}]) { sequenceNumber } }`, bearer(keys.invoke));
    expect(tooMany.body.errors?.[0]?.extensions?.code).toBe('InvalidParameter');
    const read = await gql(api.url, '{ stream(name: "clicks") { shardCount shards { shardId lastSequenceNumber } } }', bearer(keys.audit));
    expect(read.body.errors).toBeUndefined();
    expect((read.body.data?.stream as { shardCount: number }).shardCount).toBe(2);
  });
});
