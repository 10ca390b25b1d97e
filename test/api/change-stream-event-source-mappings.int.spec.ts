// Change stream mappings on Lambda's wire as DynamoDB stream mappings
// (docs/control-plane.md#dynamodb-mappings-of-change-streams), driven by the real
// @aws-sdk/client-lambda against a server over a PostgreSQL of the test's own with
// wal_level=logical (the machine's is not touched), with a real change stream reader and
// stream poller delivering a table's changes: create (Creating), duplicate refused in
// Lambda's words, get, list by ARN and function, disable, update, delete with its slot;
// every change in ledger.changes with the key that made it; refusals write nothing.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CreateEventSourceMappingCommand,
  DeleteEventSourceMappingCommand,
  GetEventSourceMappingCommand,
  LambdaClient,
  LambdaServiceException,
  ListEventSourceMappingsCommand,
  UpdateEventSourceMappingCommand,
} from '@aws-sdk/client-lambda';
import { sql } from 'kysely';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createChangeStreamReader, type ChangeStreamReader } from '../../apps/worker/event-sources/change-streams.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { getChangeStreamMapping } from '../../db/change-streams.ts';
import { listChanges } from '../../db/changes.ts';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../db/embedded.ts';
import { createFunction } from '../../db/functions.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { migrate } from '../../db/migrate.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { FIXTURES, silent, startStreamPoller, streamRuntimes, waitFor } from '../streams/helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

let dir: string;
let server: EmbeddedServer;
let handle: DatabaseHandle;
let runtimes: Runtimes;
let poller: StreamPoller;
let reader: ChangeStreamReader;
let api: Listening;
let admin: CreatedApiKey;

const tableArn = (table: string, label: string) => `arn:aws:dynamodb:us-east-1:000000000000:table/${table}/stream/${label}`;
const fnArn = (f: string) => `arn:aws:lambda:us-east-1:000000000000:function:${f}`;
const sdk = () =>
  new LambdaClient({ endpoint: api.url, region: 'us-east-1', credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey }, maxAttempts: 1 });

const refusal = (p: Promise<unknown>): Promise<LambdaServiceException> => refusedWith(LambdaServiceException, p);

async function counts(): Promise<{ mappings: number; changes: number; slots: number; publications: number; streams: number }> {
  const { rows } = await sql<{ mappings: number; changes: number; slots: number; publications: number; streams: number }>`
    select (select count(*)::int from ledger.stream_mappings) as mappings,
           (select count(*)::int from ledger.changes) as changes,
           (select count(*)::int from pg_replication_slots where slot_name like 'ledger_cs_%') as slots,
           (select count(*)::int from pg_publication where pubname like 'ledger_cs_%') as publications,
           (select count(*)::int from ledger.streams) as streams`.execute(handle.db);
  return rows[0]!;
}

/** The records the mapping's succeeded poll invocations delivered, in order. */
async function delivered(mappingId: string): Promise<{ eventName: string; eventSourceARN: string; dynamodb: { Keys: unknown; NewImage?: unknown; OldImage?: unknown } }[]> {
  const { rows } = await sql<{ payload: { Records: { eventName: string; eventSourceARN: string; dynamodb: { Keys: unknown } }[] } }>`
    select a.data -> 'payload' as payload from ledger.stream_batches b
    join ledger.invocations i on i.id = b.invocation_id and i.status = 'succeeded'
    join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
    where b.mapping_id = ${mappingId}::uuid order by a.position`.execute(handle.db);
  return rows.flatMap((r) => r.payload.Records);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-change-esm-'));
  await chmod(dir, 0o755); // as root, the server runs as the `postgres` OS user
  server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort(), persistent: false });
  await migrate(server.url);
  const owner = new pg.Client({ connectionString: server.url });
  await owner.connect();
  await owner.query('create table public.orders (id int primary key, v int not null); alter table public.orders replica identity full');
  await owner.query('create schema shop; create table shop.plain (id int primary key, v int)');
  await owner.query('create table public.nokey (id int, v int)');
  await owner.end();
  handle = openDatabase(server.url);
  runtimes = streamRuntimes();
  for (const name of ['on-orders', 'on-plain']) await createFunction(handle.db, name, { runtime: 'MODULE', handler: 'change-consumer.ts', isolation: 'inline', timeoutMs: 10_000 });
  await createFunction(handle.db, 'orders-failures', { runtime: 'MODULE', handler: 'change-consumer.sink', isolation: 'inline' });
  const { app } = composeApi({ db: handle.db, instanceId: 'change-esm-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0 } });
  api = await listen(app.fetch);
  admin = await createApiKey(handle.db, { name: 'operator', scopes: ['admin', 'invoke'] });
  poller = await startStreamPoller(handle.db, runtimes);
  reader = createChangeStreamReader({ db: handle.db, connectionString: server.url, logger: silent, registry: new Registry(), pollIntervalMs: 50 });
  await reader.start();
}, 120_000);

afterAll(async () => {
  await reader?.stop();
  await poller?.stop();
  await api?.close();
  await runtimes?.close();
  await handle?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('DynamoDB stream mappings of change streams with the AWS SDK', () => {
  let uuid = '';

  it('creates a mapping whose table changes the function then receives', { timeout: 90_000 }, async () => {
    const client = sdk();
    try {
      const created = await client.send(
        new CreateEventSourceMappingCommand({
          FunctionName: 'on-orders',
          EventSourceArn: tableArn('public.orders', '2026-01-02T03:04:05.678'),
          StartingPosition: 'LATEST',
          BatchSize: 10,
          ParallelizationFactor: 2,
          BisectBatchOnFunctionError: true,
          MaximumRetryAttempts: 2,
          MaximumRecordAgeInSeconds: 3600,
          FunctionResponseTypes: ['ReportBatchItemFailures'],
          DestinationConfig: { OnFailure: { Destination: fnArn('orders-failures') } },
        }),
      );
      uuid = created.UUID!;
      expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
      expect(created).toMatchObject({
        State: 'Creating',
        // the label is the mapping's: the eventSourceARN its records carry
        EventSourceArn: tableArn('public.orders', uuid),
        FunctionArn: fnArn('on-orders'),
        StartingPosition: 'LATEST',
        BatchSize: 10,
        ParallelizationFactor: 2,
        BisectBatchOnFunctionError: true,
        MaximumRetryAttempts: 2,
        MaximumRecordAgeInSeconds: 3600,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        DestinationConfig: { OnFailure: { Destination: fnArn('orders-failures') } },
      });
      expect(created.StartingPositionTimestamp).toBeUndefined();
      const m = await getChangeStreamMapping(handle.db, uuid);
      // REPLICA IDENTITY FULL: both images
      expect(m).toMatchObject({ functionName: 'on-orders', batchSize: 10, parallelizationFactor: 2, onFailure: 'function:orders-failures', source: { schemaName: 'public', tableName: 'orders', streamViewType: 'NEW_AND_OLD_IMAGES' } });

      const owner = new pg.Client({ connectionString: server.url });
      await owner.connect();
      await owner.query('insert into public.orders (id, v) values (1, 10), (2, 20)');
      await owner.query('update public.orders set v = 11 where id = 1');
      await owner.query('delete from public.orders where id = 2');
      await owner.end();
      const records = await waitFor('four changes delivered', async () => ((await delivered(uuid)).length === 4 ? delivered(uuid) : null), 60_000);
      expect(records.every((r) => r.eventSourceARN.endsWith(`:table/public.orders/stream/${uuid}`))).toBe(true);
      const one = records.filter((r) => JSON.stringify(r.dynamodb.Keys) === JSON.stringify({ id: { N: '1' } }));
      expect(one.map((r) => r.eventName)).toEqual(['INSERT', 'MODIFY']);
      expect(one[1]!.dynamodb).toMatchObject({ OldImage: { v: { N: '10' } }, NewImage: { v: { N: '11' } } });
    } finally {
      client.destroy();
    }
  });

  it('refuses a second mapping of the table to the function in Lambda words, and other refusals, writing nothing', async () => {
    expect(uuid).not.toBe('');
    const client = sdk();
    try {
      const before = await counts();
      // any label, and the table without its schema, name the same table's change stream
      const dup = await refusal(client.send(new CreateEventSourceMappingCommand({ FunctionName: fnArn('on-orders'), EventSourceArn: tableArn('orders', 'another-label'), StartingPosition: 'TRIM_HORIZON' })));
      expect([dup.name, dup.$metadata.httpStatusCode, dup.message]).toEqual([
        'ResourceConflictException',
        409,
        `The event source arn (" ${tableArn('public.orders', uuid)} ") and function (" on-orders ") provided mapping already exists. Please update or delete the existing mapping with UUID ${uuid}`,
      ]);
      const create = (extra: Record<string, unknown>) =>
        client.send(new CreateEventSourceMappingCommand({ FunctionName: 'on-plain', EventSourceArn: tableArn('shop.plain', 'x'), StartingPosition: 'LATEST', ...extra }));
      const cases: [string, () => Promise<unknown>, string, number][] = [
        ['AT_TIMESTAMP (not for DynamoDB streams)', () => create({ StartingPosition: 'AT_TIMESTAMP', StartingPositionTimestamp: new Date() }), 'InvalidParameterValueException', 400],
        ['AT_TIMESTAMP without a timestamp', () => create({ StartingPosition: 'AT_TIMESTAMP' }), 'InvalidParameterValueException', 400],
        ['no StartingPosition', () => create({ StartingPosition: undefined }), 'InvalidParameterValueException', 400],
        ['an unknown table', () => create({ EventSourceArn: tableArn('public.nope', 'x') }), 'InvalidParameterValueException', 400],
        ['a table without a primary key', () => create({ EventSourceArn: tableArn('nokey', 'x') }), 'InvalidParameterValueException', 400],
        ['an unknown function', () => create({ FunctionName: 'nope' }), 'ResourceNotFoundException', 404],
        ['a queue field', () => create({ ScalingConfig: { MaximumConcurrency: 2 } }), 'InvalidParameterValueException', 400],
        ['changing the function', () => client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, FunctionName: 'on-plain' })), 'InvalidParameterValueException', 400],
        ['changing ParallelizationFactor', () => client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, ParallelizationFactor: 3 })), 'InvalidParameterValueException', 400],
      ];
      for (const [what, send, name, status] of cases) {
        const e = await refusal(send());
        expect([what, e.name, e.$metadata.httpStatusCode]).toEqual([what, name, status]);
      }
      expect(await counts()).toEqual(before);
    } finally {
      client.destroy();
    }
  });

  it('gets, lists by ARN and by function, disables and updates it', async () => {
    expect(uuid).not.toBe('');
    const client = sdk();
    try {
      expect(await client.send(new GetEventSourceMappingCommand({ UUID: uuid }))).toMatchObject({ UUID: uuid, EventSourceArn: tableArn('public.orders', uuid), State: 'Enabled', StartingPosition: 'LATEST' });
      const byArn = await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: tableArn('public.orders', 'any-label') }));
      expect(byArn.EventSourceMappings!.map((m) => m.UUID)).toEqual([uuid]);
      expect((await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: tableArn('shop.plain', 'x') }))).EventSourceMappings).toEqual([]);
      // listed once, as the table's stream: never as the Kinesis stream it is kept in
      const all = await client.send(new ListEventSourceMappingsCommand({}));
      expect(all.EventSourceMappings!.map((m) => [m.UUID, m.EventSourceArn])).toEqual([[uuid, tableArn('public.orders', uuid)]]);
      expect((await client.send(new ListEventSourceMappingsCommand({ FunctionName: fnArn('on-orders') }))).EventSourceMappings!.map((m) => m.UUID)).toEqual([uuid]);

      expect((await client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: false }))).State).toBe('Disabling');
      const updated = await client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, BatchSize: 5, MaximumRetryAttempts: -1, DestinationConfig: { OnFailure: {} } }));
      expect(updated).toMatchObject({ State: 'Updating', BatchSize: 5, MaximumRetryAttempts: -1, EventSourceArn: tableArn('public.orders', uuid) });
      expect(updated.DestinationConfig?.OnFailure?.Destination).toBeUndefined();
      expect((await client.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Disabled');
    } finally {
      client.destroy();
    }
  });

  it('a table without REPLICA IDENTITY FULL gets NEW_IMAGE; deleting drops the slot; every change is in ledger.changes', async () => {
    expect(uuid).not.toBe('');
    const client = sdk();
    try {
      const plain = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'on-plain', EventSourceArn: tableArn('shop.plain', 'x'), StartingPosition: 'TRIM_HORIZON', Enabled: false }));
      expect(plain).toMatchObject({ State: 'Creating', EventSourceArn: tableArn('shop.plain', plain.UUID!), StartingPosition: 'TRIM_HORIZON' });
      expect((await getChangeStreamMapping(handle.db, plain.UUID!))?.source.streamViewType).toBe('NEW_IMAGE');
      const before = await counts();
      for (const id of [uuid, plain.UUID!]) {
        expect(await client.send(new DeleteEventSourceMappingCommand({ UUID: id }))).toMatchObject({ UUID: id, State: 'Deleting' });
      }
      expect(await counts()).toMatchObject({ mappings: before.mappings - 2, slots: before.slots - 2, publications: before.publications - 2, streams: before.streams - 2 });
      const gone = await refusal(client.send(new GetEventSourceMappingCommand({ UUID: uuid })));
      expect(gone.name).toBe('ResourceNotFoundException');
    } finally {
      client.destroy();
    }
    const history = (await listChanges(handle.db, { resourceType: 'event_source_mapping', resourceName: uuid })).reverse();
    expect(history.map((c) => [c.seq, c.action, c.actor])).toEqual([
      [1, 'created', admin.id],
      [2, 'disabled', admin.id],
      [3, 'updated', admin.id],
      [4, 'deleted', admin.id],
    ]);
    expect(history.every((c) => c.requestId !== null)).toBe(true);
    expect(history[0]!.data).toMatchObject({ after: { functionName: 'on-orders', startingPosition: 'LATEST', parallelizationFactor: 2, onFailure: 'function:orders-failures' } });
    expect(history[2]!.data).toEqual({
      before: { batchSize: 10, maximumRetryAttempts: 2, onFailure: 'function:orders-failures' },
      after: { batchSize: 5, maximumRetryAttempts: -1, onFailure: null },
    });
  });
});
