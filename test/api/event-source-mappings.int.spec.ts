// Event source mappings of our queues on Lambda's wire, driven by the real AWS CLI
// (/usr/bin/aws) and @aws-sdk/client-lambda against a server this test starts, with a
// real poller delivering the queue's messages: create (State Creating), get (Enabled),
// list, disable, update, delete (Deleting, then 404); every change in ledger.changes with
// the key that made it; refusals with Lambda's error types and nothing written.
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
import { listChanges } from '../../db/changes.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { getEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { FIXTURES, batchFunction, pollInvocations, queueRuntimes, remainingMessages, silent, startPoller, terminal, waitFor, type RunningPoller } from '../queues/helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

const AWS = '/usr/bin/aws';
const hasCli = existsSync(AWS);

let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let poller: RunningPoller;
let admin: CreatedApiKey;
let invoker: CreatedApiKey;
let home: string;

const sdk = (k: CreatedApiKey) =>
  new LambdaClient({ endpoint: server.url, region: 'us-east-1', credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey }, maxAttempts: 1 });

const queueArn = (q: string) => `arn:aws:sqs:us-east-1:000000000000:${q}`;

interface CliResult {
  code: number;
  out: string;
  err: string;
}

function aws(args: string[]): Promise<CliResult> {
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
    select (select count(*)::int from ledger.event_source_mappings) as mappings,
           (select count(*)::int from ledger.changes) as changes`.execute(t.db);
  return rows[0]!;
}

beforeAll(async () => {
  t = await createTestDatabase();
  home = mkdtempSync(path.join(tmpdir(), 'esm-cli-'));
  runtimes = queueRuntimes();
  const { app } = composeApi({ db: t.db, instanceId: 'esm-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0 } });
  server = await listen(app.fetch);
  poller = await startPoller(t.db, runtimes, { databaseUrl: t.ownerUrl });
  admin = await createApiKey(t.db, { name: 'operator', scopes: ['admin', 'invoke'] });
  invoker = await createApiKey(t.db, { name: 'caller', scopes: ['invoke'] });
});

afterAll(async () => {
  await poller?.stop();
  await server?.close();
  await runtimes?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

// One AWS CLI call takes seconds here: a few per test, the rest through the SDK.
describe.skipIf(!hasCli)('event source mappings with the AWS CLI', () => {
  let uuid = '';

  it('creates a mapping of a queue whose messages the poller then delivers', async () => {
    await createQueue(t.db, { name: 'orders', visibilityTimeoutSeconds: 30 });
    await batchFunction(t.db, 'orders-batch');

    const created = await ok([
      'create-event-source-mapping',
      '--function-name', 'orders-batch',
      '--event-source-arn', queueArn('orders'),
      '--batch-size', '5',
      '--function-response-types', 'ReportBatchItemFailures',
      '--scaling-config', 'MaximumConcurrency=2',
    ]);
    uuid = created['UUID'] as string;
    expect(created).toMatchObject({
      State: 'Creating',
      EventSourceArn: queueArn('orders'),
      FunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:orders-batch',
      BatchSize: 5,
      MaximumBatchingWindowInSeconds: 0,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(await getEventSourceMapping(t.db, uuid)).toMatchObject({ queueName: 'orders', functionName: 'orders-batch', batchSize: 5, reportBatchItemFailures: true, maximumConcurrency: 2, enabled: true });

    const listed = await ok(['list-event-source-mappings', '--event-source-arn', queueArn('orders')]);
    expect((listed['EventSourceMappings'] as { UUID: string; State: string }[]).map((m) => [m.UUID, m.State])).toEqual([[uuid, 'Enabled']]);

    // the mapping made through the wire is the one the poller runs
    await sendMessages(t.db, 'orders', [{ body: { n: 1 } }, { body: { n: 2 } }, { body: { n: 3 } }]);
    const runs = await waitFor('orders drained', async () => {
      const left = await remainingMessages(t.db, 'orders');
      const inv = await pollInvocations(t.db, 'orders-batch');
      return left === 0 && inv.length > 0 && inv.every((i) => terminal(i.status)) ? inv : null;
    });
    expect(runs.flatMap((r) => r.messageIds)).toHaveLength(3);
    expect(runs.every((r) => r.status === 'succeeded')).toBe(true);
  });

  it('disables and updates it', async () => {
    expect(uuid).not.toBe('');
    expect(await ok(['update-event-source-mapping', '--uuid', uuid, '--no-enabled'])).toMatchObject({ State: 'Disabling' });
    const client = sdk(admin);
    try {
      const byFunction = await client.send(new ListEventSourceMappingsCommand({ FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:orders-batch' }));
      expect(byFunction.EventSourceMappings!.map((m) => [m.UUID, m.State])).toEqual([[uuid, 'Disabled']]);
      // Lambda's SQS rule: more than 10 per batch needs a batching window
      const tooBig = await aws(['update-event-source-mapping', '--uuid', uuid, '--batch-size', '20']);
      expect(tooBig.code).not.toBe(0);
      expect(tooBig.err).toContain('InvalidParameterValueException');
      const updated = await client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, BatchSize: 20, MaximumBatchingWindowInSeconds: 2 }));
      expect(updated).toMatchObject({ State: 'Updating', BatchSize: 20, MaximumBatchingWindowInSeconds: 2 });
      expect((await client.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Disabled');
    } finally {
      client.destroy();
    }
  });

  it('deletes it; every change is in ledger.changes with the key that made it', async () => {
    expect(uuid).not.toBe('');
    expect(await ok(['delete-event-source-mapping', '--uuid', uuid])).toMatchObject({ UUID: uuid, State: 'Deleting' });
    const gone = await aws(['get-event-source-mapping', '--uuid', uuid]);
    expect(gone.code).not.toBe(0);
    expect(gone.err).toContain('ResourceNotFoundException');
    expect(await getEventSourceMapping(t.db, uuid)).toBeNull();

    const history = (await listChanges(t.db, { resourceType: 'event_source_mapping', resourceName: uuid })).reverse();
    expect(history.map((c) => [c.seq, c.action, c.actor])).toEqual([
      [1, 'created', admin.id],
      [2, 'disabled', admin.id],
      [3, 'updated', admin.id],
      [4, 'deleted', admin.id],
    ]);
    expect(history.every((c) => c.requestId !== null)).toBe(true);
    expect(history[0]!.data).toMatchObject({ after: { queueName: 'orders', functionName: 'orders-batch', batchSize: 5, enabled: true } });
    expect(history[1]!.data).toEqual({ before: { enabled: true }, after: { enabled: false } });
    expect(history[2]!.data).toEqual({ before: { batchSize: 5, maxBatchingWindowMs: 0 }, after: { batchSize: 20, maxBatchingWindowMs: 2000 } });
    expect(history[3]!.data).toMatchObject({ before: { queueName: 'orders', batchSize: 20 }, after: null });
  });
});

describe('event source mappings with the AWS SDK', () => {
  it('refuses with Lambda error types and writes nothing', async () => {
    await createQueue(t.db, { name: 'refusals', visibilityTimeoutSeconds: 30 });
    await createQueue(t.db, { name: 'short', visibilityTimeoutSeconds: 1 });
    await batchFunction(t.db, 'refusals-fn');
    const client = sdk(admin);
    try {
      const first = await client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: queueArn('refusals') }));
      expect(first.State).toBe('Creating');
      expect(first.BatchSize).toBe(10);
      expect(first.LastModified).toBeInstanceOf(Date);
      const before = await counts();

      const cases: [string, () => Promise<unknown>, string, number][] = [
        ['an unknown queue', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: queueArn('nope') })), 'ResourceNotFoundException', 404],
        ['an unknown function', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'nope', EventSourceArn: queueArn('refusals') })), 'ResourceNotFoundException', 404],
        ['a second mapping of the queue to the function', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: queueArn('refusals') })), 'ResourceConflictException', 409],
        ['a DynamoDB stream of a table that does not exist', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: 'arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026', StartingPosition: 'LATEST' })), 'InvalidParameterValueException', 400],
        ['a Kinesis stream that does not exist', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/s', StartingPosition: 'LATEST' })), 'ResourceNotFoundException', 404],
        ['a filter (not supported here)', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: queueArn('short'), FilterCriteria: { Filters: [{ Pattern: '{}' }] } })), 'InvalidParameterValueException', 400],
        ['a qualified function', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn:live', EventSourceArn: queueArn('short') })), 'InvalidParameterValueException', 400],
        ['a visibility timeout under the function timeout', () => client.send(new CreateEventSourceMappingCommand({ FunctionName: 'refusals-fn', EventSourceArn: queueArn('short') })), 'InvalidParameterValueException', 400],
        ['a batch size over 10,000', () => client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, BatchSize: 10_001, MaximumBatchingWindowInSeconds: 1 })), 'InvalidParameterValueException', 400],
        ['an unknown UUID', () => client.send(new UpdateEventSourceMappingCommand({ UUID: '00000000-0000-4000-8000-000000000000', Enabled: false })), 'ResourceNotFoundException', 404],
        ['a UUID that is not one', () => client.send(new DeleteEventSourceMappingCommand({ UUID: 'not-a-uuid' })), 'ResourceNotFoundException', 404],
        ['a key without admin', () => sdk(invoker).send(new DeleteEventSourceMappingCommand({ UUID: first.UUID! })), 'AccessDeniedException', 403],
      ];
      for (const [what, send, name, status] of cases) {
        const e = await refusal(send());
        expect([what, e.name, e.$metadata.httpStatusCode]).toEqual([what, name, status]);
      }
      expect(await counts()).toEqual(before);

      // Lambda's words for the duplicate, naming the mapping to update or delete; the function may be given by ARN
      const dup = await refusal(client.send(new CreateEventSourceMappingCommand({ FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:refusals-fn', EventSourceArn: queueArn('refusals') })));
      expect([dup.name, dup.$metadata.httpStatusCode, dup.message]).toEqual([
        'ResourceConflictException',
        409,
        `An event source mapping with SQS arn (" ${queueArn('refusals')} ") and function (" refusals-fn ") already exists. Please update or delete the existing mapping with UUID ${first.UUID!}`,
      ]);
      expect(await counts()).toEqual(before);

      // an update that changes nothing records nothing
      const same = await client.send(new UpdateEventSourceMappingCommand({ UUID: first.UUID!, BatchSize: 10 }));
      expect(same.State).toBe('Updating');
      expect(await counts()).toEqual(before);
      expect((await client.send(new GetEventSourceMappingCommand({ UUID: first.UUID! }))).State).toBe('Enabled');
    } finally {
      client.destroy();
    }
  });

  it('lists a page at a time with Marker and MaxItems', async () => {
    await createQueue(t.db, { name: 'paged', visibilityTimeoutSeconds: 30 });
    const client = sdk(admin);
    try {
      const made: string[] = [];
      for (const fn of ['paged-a', 'paged-b', 'paged-c']) {
        await batchFunction(t.db, fn);
        made.push((await client.send(new CreateEventSourceMappingCommand({ FunctionName: fn, EventSourceArn: queueArn('paged'), Enabled: false }))).UUID!);
      }
      const seen: string[] = [];
      let marker: string | undefined;
      do {
        const page = await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: queueArn('paged'), MaxItems: 2, Marker: marker }));
        expect(page.EventSourceMappings!.length).toBeLessThanOrEqual(2);
        for (const m of page.EventSourceMappings!) {
          expect(m.State).toBe('Disabled');
          seen.push(m.UUID!);
        }
        marker = page.NextMarker;
      } while (marker);
      expect(seen.sort()).toEqual([...made].sort());
      for (const uuid of made) expect((await client.send(new DeleteEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Deleting');
    } finally {
      client.destroy();
    }
  });
});
