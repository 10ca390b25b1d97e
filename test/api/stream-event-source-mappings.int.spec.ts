// Native stream mappings on Lambda's wire as Kinesis mappings (docs/control-plane.md#event-source-mappings),
// driven by the real AWS CLI (/usr/bin/aws) and @aws-sdk/client-lambda against a server this
// test starts, with a real stream poller delivering the stream's records: create (Creating),
// list, disable, update, delete; every change in ledger.changes with the key that made it,
// through the Lambda wire and through GraphQL; refusals with Lambda's error types and nothing written.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { listChanges } from '../../db/changes.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createStream, getStreamMapping, putRecords } from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { bearer, gql } from '../security/helpers.ts';
import { FIXTURES, consumer, deliveredBatches, json, silent, startStreamPoller, streamRuntimes, waitFor } from '../streams/helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

const AWS = '/usr/bin/aws';
const hasCli = existsSync(AWS);

let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let poller: StreamPoller;
let admin: CreatedApiKey;
let home: string;

const sdk = (k: CreatedApiKey) =>
  new LambdaClient({ endpoint: server.url, region: 'us-east-1', credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey }, maxAttempts: 1 });

const kinesisArn = (s: string) => `arn:aws:kinesis:us-east-1:000000000000:stream/${s}`;
const fnArn = (f: string) => `arn:aws:lambda:us-east-1:000000000000:function:${f}`;

function aws(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      AWS,
      ['lambda', ...args, '--endpoint-url', server.url, '--output', 'json'],
      {
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: home,
          AWS_ACCESS_KEY_ID: admin.accessKeyId,
          AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
          AWS_REGION: 'us-east-1',
          AWS_DEFAULT_REGION: 'us-east-1',
          AWS_PAGER: '',
          AWS_EC2_METADATA_DISABLED: 'true',
          AWS_MAX_ATTEMPTS: '1',
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await aws(args);
  expect(r.code, r.err).toBe(0);
  return r.out.trim() === '' ? {} : (JSON.parse(r.out) as Record<string, unknown>);
}

const refusal = (p: Promise<unknown>): Promise<LambdaServiceException> => refusedWith(LambdaServiceException, p);

async function counts(): Promise<{ mappings: number; changes: number }> {
  const { rows } = await sql<{ mappings: number; changes: number }>`
    select (select count(*)::int from ledger.stream_mappings) as mappings,
           (select count(*)::int from ledger.changes) as changes`.execute(t.db);
  return rows[0]!;
}

beforeAll(async () => {
  t = await createTestDatabase();
  home = mkdtempSync(path.join(tmpdir(), 'stream-esm-cli-'));
  runtimes = streamRuntimes();
  const { app } = composeApi({ db: t.db, instanceId: 'stream-esm-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0 } });
  server = await listen(app.fetch);
  poller = await startStreamPoller(t.db, runtimes);
  admin = await createApiKey(t.db, { name: 'operator', scopes: ['admin', 'invoke'] });
});

afterAll(async () => {
  await poller?.stop();
  await server?.close();
  await runtimes?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe.skipIf(!hasCli)('Kinesis mappings of native streams with the AWS CLI', () => {
  let uuid = '';

  it('creates a mapping whose records the stream poller then delivers', { timeout: 60_000 }, async () => {
    await createStream(t.db, { name: 'orders', shardCount: 2 });
    await consumer(t.db, 'orders-consumer');
    await consumer(t.db, 'orders-failures');
    await putRecords(t.db, 'orders', Array.from({ length: 6 }, (_, i) => ({ partitionKey: `k${i % 3}`, data: json({ i }) })));

    const created = await ok([
      'create-event-source-mapping',
      '--function-name', 'orders-consumer',
      '--event-source-arn', kinesisArn('orders'),
      '--starting-position', 'TRIM_HORIZON',
      '--batch-size', '3',
      '--parallelization-factor', '2',
      '--bisect-batch-on-function-error',
      '--maximum-retry-attempts', '2',
      '--maximum-record-age-in-seconds', '3600',
      '--function-response-types', 'ReportBatchItemFailures',
      '--destination-config', JSON.stringify({ OnFailure: { Destination: fnArn('orders-failures') } }),
    ]);
    uuid = created['UUID'] as string;
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created).toMatchObject({
      State: 'Creating',
      EventSourceArn: kinesisArn('orders'),
      FunctionArn: fnArn('orders-consumer'),
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 3,
      MaximumBatchingWindowInSeconds: 0,
      ParallelizationFactor: 2,
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: 2,
      MaximumRecordAgeInSeconds: 3600,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: fnArn('orders-failures') } },
    });
    expect(await getStreamMapping(t.db, uuid)).toMatchObject({
      streamName: 'orders',
      functionName: 'orders-consumer',
      startingPosition: 'TRIM_HORIZON',
      batchSize: 3,
      parallelizationFactor: 2,
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 2,
      maximumRecordAgeInSeconds: 3600,
      reportBatchItemFailures: true,
      onFailure: 'function:orders-failures',
      enabled: true,
    });

    // the mapping made through the wire is the one the stream poller runs
    // a lane's checkpoint moves only past records of its own keys: count what was delivered
    const batches = await waitFor(
      'all six records delivered',
      async () => {
        const b = await deliveredBatches(t.db, uuid);
        return b.filter((x) => x.status === 'succeeded').reduce((n, x) => n + x.records.length, 0) === 6 && b.every((x) => x.status !== 'running') ? b : null;
      },
      40_000,
    );
    expect(batches.every((b) => b.status === 'succeeded')).toBe(true);
    expect(batches.flatMap((b) => b.records.map((r) => JSON.parse(Buffer.from(r.data, 'base64').toString()) as { i: number }).map((d) => d.i)).sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('lists, disables and updates it', async () => {
    expect(uuid).not.toBe('');
    const listed = await ok(['list-event-source-mappings', '--event-source-arn', kinesisArn('orders')]);
    expect((listed['EventSourceMappings'] as { UUID: string; State: string }[]).map((m) => [m.UUID, m.State])).toEqual([[uuid, 'Enabled']]);
    expect(await ok(['update-event-source-mapping', '--uuid', uuid, '--no-enabled'])).toMatchObject({ State: 'Disabling' });
    const client = sdk(admin);
    try {
      const byFunction = await client.send(new ListEventSourceMappingsCommand({ FunctionName: fnArn('orders-consumer') }));
      expect(byFunction.EventSourceMappings!.map((m) => [m.UUID, m.State])).toEqual([[uuid, 'Disabled']]);
      const updated = await client.send(
        new UpdateEventSourceMappingCommand({ UUID: uuid, MaximumRetryAttempts: -1, MaximumBatchingWindowInSeconds: 2, BisectBatchOnFunctionError: false, DestinationConfig: { OnFailure: {} } }),
      );
      expect(updated).toMatchObject({ State: 'Updating', MaximumRetryAttempts: -1, MaximumBatchingWindowInSeconds: 2, BisectBatchOnFunctionError: false, ParallelizationFactor: 2 });
      expect(updated.DestinationConfig?.OnFailure?.Destination).toBeUndefined();
      expect(updated.LastModified).toBeInstanceOf(Date);
      expect((await client.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Disabled');
    } finally {
      client.destroy();
    }
  });

  it('deletes it; every change is in ledger.changes with the key that made it', async () => {
    expect(uuid).not.toBe('');
    expect(await ok(['delete-event-source-mapping', '--uuid', uuid])).toMatchObject({ UUID: uuid, State: 'Deleting', EventSourceArn: kinesisArn('orders') });
    const gone = await aws(['get-event-source-mapping', '--uuid', uuid]);
    expect(gone.code).not.toBe(0);
    expect(gone.err).toContain('ResourceNotFoundException');
    expect(await getStreamMapping(t.db, uuid)).toBeNull();

    const history = (await listChanges(t.db, { resourceType: 'event_source_mapping', resourceName: uuid })).reverse();
    expect(history.map((c) => [c.seq, c.action, c.actor])).toEqual([
      [1, 'created', admin.id],
      [2, 'disabled', admin.id],
      [3, 'updated', admin.id],
      [4, 'deleted', admin.id],
    ]);
    expect(history.every((c) => c.requestId !== null)).toBe(true);
    expect(history[0]!.data).toMatchObject({ after: { streamName: 'orders', functionName: 'orders-consumer', startingPosition: 'TRIM_HORIZON', parallelizationFactor: 2, onFailure: 'function:orders-failures' } });
    expect(history[1]!.data).toEqual({ before: { enabled: true }, after: { enabled: false } });
    expect(history[2]!.data).toEqual({
      before: { maximumBatchingWindowInSeconds: 0, maximumRetryAttempts: 2, bisectBatchOnFunctionError: true, onFailure: 'function:orders-failures' },
      after: { maximumBatchingWindowInSeconds: 2, maximumRetryAttempts: -1, bisectBatchOnFunctionError: false, onFailure: null },
    });
    expect(history[3]!.data).toMatchObject({ before: { streamName: 'orders', maximumRetryAttempts: -1 }, after: null });
  });
});

describe('Kinesis mappings of native streams with the AWS SDK and GraphQL', () => {
  it('AT_TIMESTAMP and LATEST answer as Lambda does', async () => {
    await createStream(t.db, { name: 'positions', shardCount: 1 });
    await consumer(t.db, 'positions-consumer');
    const client = sdk(admin);
    try {
      const at = new Date('2026-01-02T03:04:05Z');
      const m = await client.send(
        new CreateEventSourceMappingCommand({ FunctionName: 'positions-consumer', EventSourceArn: kinesisArn('positions'), StartingPosition: 'AT_TIMESTAMP', StartingPositionTimestamp: at, Enabled: false }),
      );
      expect(m).toMatchObject({ State: 'Creating', StartingPosition: 'AT_TIMESTAMP', StartingPositionTimestamp: at, BatchSize: 100, ParallelizationFactor: 1, MaximumRetryAttempts: -1, MaximumRecordAgeInSeconds: -1 });
      expect((await getStreamMapping(t.db, m.UUID!))?.startingPositionTimestamp).toEqual(at);
      // one mapping per stream and function on the Lambda wire: the second one is of another function
      await consumer(t.db, 'positions-latest');
      const latest = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'positions-latest', EventSourceArn: kinesisArn('positions'), StartingPosition: 'LATEST', Enabled: false }));
      expect(latest.StartingPositionTimestamp).toBeUndefined();
      const listed = await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: kinesisArn('positions') }));
      expect(listed.EventSourceMappings!.map((x) => [x.UUID, x.StartingPosition, x.State]).sort()).toEqual(
        [
          [m.UUID, 'AT_TIMESTAMP', 'Disabled'],
          [latest.UUID, 'LATEST', 'Disabled'],
        ].sort(),
      );
      for (const id of [m.UUID!, latest.UUID!]) expect((await client.send(new DeleteEventSourceMappingCommand({ UUID: id }))).State).toBe('Deleting');
    } finally {
      client.destroy();
    }
  });

  it('refuses with Lambda error types and writes nothing', async () => {
    await createStream(t.db, { name: 'refusals', shardCount: 1 });
    await consumer(t.db, 'refusals-consumer');
    await createQueue(t.db, { name: 'refusals-dlq', visibilityTimeoutSeconds: 30 });
    const client = sdk(admin);
    try {
      const first = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-consumer', EventSourceArn: kinesisArn('refusals'), StartingPosition: 'LATEST', ParallelizationFactor: 3 }));
      const before = await counts();
      const create = (extra: Record<string, unknown>) =>
        client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-consumer', EventSourceArn: kinesisArn('refusals'), StartingPosition: 'LATEST', ...extra }));
      const cases: [string, () => Promise<unknown>, string, number][] = [
        ['an unknown stream', () => create({ EventSourceArn: kinesisArn('nope') }), 'ResourceNotFoundException', 404],
        ['an unknown function', () => create({ FunctionName: 'nope' }), 'ResourceNotFoundException', 404],
        ['no StartingPosition', () => create({ StartingPosition: undefined }), 'InvalidParameterValueException', 400],
        ['AT_TIMESTAMP without a timestamp', () => create({ StartingPosition: 'AT_TIMESTAMP' }), 'InvalidParameterValueException', 400],
        ['a record age under 60 s', () => create({ MaximumRecordAgeInSeconds: 30 }), 'InvalidParameterValueException', 400],
        ['ParallelizationFactor 11', () => create({ ParallelizationFactor: 11 }), 'InvalidParameterValueException', 400],
        ['a tumbling window over 900 s', () => create({ TumblingWindowInSeconds: 901 }), 'InvalidParameterValueException', 400],
        ['a queue field on a stream', () => create({ ScalingConfig: { MaximumConcurrency: 2 } }), 'InvalidParameterValueException', 400],
        ['an SQS on-failure destination', () => create({ DestinationConfig: { OnFailure: { Destination: 'arn:aws:sqs:us-east-1:000000000000:refusals-dlq' } } }), 'InvalidParameterValueException', 400],
        ['a DynamoDB stream of a table that does not exist', () => create({ EventSourceArn: 'arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026' }), 'InvalidParameterValueException', 400],
        ['changing ParallelizationFactor', () => client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, ParallelizationFactor: 4 })), 'InvalidParameterValueException', 400],
        ['changing the function', () => client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, FunctionName: 'orders-consumer' })), 'InvalidParameterValueException', 400],
        ['a retry count under -1', () => client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, MaximumRetryAttempts: -2 })), 'InvalidParameterValueException', 400],
      ];
      for (const [what, send, name, status] of cases) {
        const e = await refusal(send());
        expect([what, e.name, e.$metadata.httpStatusCode]).toEqual([what, name, status]);
      }
      expect(await counts()).toEqual(before);

      // a second mapping of the stream to the function: Lambda's ResourceConflictException and words, whatever the settings
      const dup = await refusal(create({ FunctionName: fnArn('refusals-consumer'), StartingPosition: 'TRIM_HORIZON', BatchSize: 5 }));
      expect([dup.name, dup.$metadata.httpStatusCode, dup.message]).toEqual([
        'ResourceConflictException',
        409,
        `The event source arn (" ${kinesisArn('refusals')} ") and function (" refusals-consumer ") provided mapping already exists. Please update or delete the existing mapping with UUID ${first.UUID!}`,
      ]);
      expect(await counts()).toEqual(before);

      // an update that changes nothing records nothing; the same ParallelizationFactor is no change
      const same = await client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, BatchSize: 100, ParallelizationFactor: 3 }));
      expect(same).toMatchObject({ State: 'Updating', BatchSize: 100, ParallelizationFactor: 3 });
      expect(await counts()).toEqual(before);
      expect((await client.send(new DeleteEventSourceMappingCommand({ UUID: first.UUID! }))).State).toBe('Deleting');
    } finally {
      client.destroy();
    }
  });

  it('of concurrent creates of one stream and function, exactly one is made', async () => {
    await createStream(t.db, { name: 'racing', shardCount: 2 });
    await consumer(t.db, 'racing-consumer');
    const client = sdk(admin);
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'racing-consumer', EventSourceArn: kinesisArn('racing'), StartingPosition: 'LATEST', Enabled: false }))),
      );
      const made = results.filter((r) => r.status === 'fulfilled');
      expect(made).toHaveLength(1);
      const uuid = (made[0] as PromiseFulfilledResult<{ UUID?: string }>).value.UUID!;
      for (const r of results.filter((x) => x.status === 'rejected')) {
        expect((r as PromiseRejectedResult).reason).toMatchObject({ name: 'ResourceConflictException', message: expect.stringContaining(`existing mapping with UUID ${uuid}`) as unknown });
      }
      const listed = await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: kinesisArn('racing') }));
      expect(listed.EventSourceMappings!.map((m) => m.UUID)).toEqual([uuid]);
      expect((await client.send(new DeleteEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Deleting');
      // once deleted, the pair may be mapped again
      const again = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'racing-consumer', EventSourceArn: kinesisArn('racing'), StartingPosition: 'LATEST', Enabled: false }));
      expect(again.UUID).not.toBe(uuid);
      await client.send(new DeleteEventSourceMappingCommand({ UUID: again.UUID! }));
    } finally {
      client.destroy();
    }
  });

  it('a mapping made through GraphQL is recorded in ledger.changes too, and is on the Lambda wire', async () => {
    await createStream(t.db, { name: 'graphql-made', shardCount: 1 });
    await consumer(t.db, 'graphql-consumer');
    const made = await gql(
      server.url,
      'mutation { createStreamEventSourceMapping(input: {streamName: "graphql-made", functionName: "graphql-consumer", startingPosition: LATEST, batchSize: 7, enabled: false}) { id } }',
      bearer(admin),
    );
    expect(made.body.errors).toBeUndefined();
    const id = (made.body.data?.['createStreamEventSourceMapping'] as { id: string }).id;
    const client = sdk(admin);
    try {
      expect(await client.send(new GetEventSourceMappingCommand({ UUID: id }))).toMatchObject({ EventSourceArn: kinesisArn('graphql-made'), BatchSize: 7, State: 'Disabled' });
    } finally {
      client.destroy();
    }
    const updated = await gql(server.url, `mutation { updateStreamEventSourceMapping(id: "${id}", input: {batchSize: 9}) { batchSize } }`, bearer(admin));
    expect(updated.body.errors).toBeUndefined();
    const deleted = await gql(server.url, `mutation { deleteStreamEventSourceMapping(id: "${id}") }`, bearer(admin));
    expect(deleted.body.errors).toBeUndefined();
    const history = (await listChanges(t.db, { resourceType: 'event_source_mapping', resourceName: id })).reverse();
    expect(history.map((c) => [c.seq, c.action, c.actor])).toEqual([
      [1, 'created', admin.id],
      [2, 'updated', admin.id],
      [3, 'deleted', admin.id],
    ]);
    expect(history[1]!.data).toEqual({ before: { batchSize: 7 }, after: { batchSize: 9 } });
  });
});
