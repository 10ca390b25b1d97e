// RabbitMQ broker mappings on Lambda's wire as Amazon MQ for RabbitMQ mappings
// (docs/control-plane.md#amazon-mq-for-rabbitmq-mappings-of-brokers), driven by the real AWS
// CLI (/usr/bin/aws) and @aws-sdk/client-lambda against a server this test starts, with the
// real RabbitMQ on this machine and a real broker source consuming: the broker URL goes in
// sealed and never comes back; every change is in ledger.changes; a NATS mapping stays
// GraphQL/CLI only; refusals with Lambda's error types and nothing written.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
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
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createBrokerMapping, getBrokerMapping } from '../../db/brokers.ts';
import { listChanges } from '../../db/changes.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { brokerBatches, brokerFunction, brokerRuntimes, FIXTURES, NATS_URL, processedBodies, RABBITMQ_URL, silent, startSources, waitFor } from '../brokers/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { refusedWith } from '../helpers/refusal.ts';

const AWS = '/usr/bin/aws';
const hasCli = existsSync(AWS);
const SECRET_KEY = 'broker-wire-test-secret-key-0123456789abcdef';
const rabbit = new URL(RABBITMQ_URL);
const HOST = rabbit.hostname;
const PORT = rabbit.port || '5672';
const mqArn = `arn:aws:mq:us-east-1:000000000000:broker:${HOST}:${PORT}`;

let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let sources: Awaited<ReturnType<typeof startSources>>;
let admin: CreatedApiKey;
let home: string;
let amqp: ChannelModel;
let ch: ConfirmChannel;
const queues: string[] = [];

const sdk = () =>
  new LambdaClient({ endpoint: server.url, region: 'us-east-1', credentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey }, maxAttempts: 1 });

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

const refusal = (p: Promise<unknown>): Promise<LambdaServiceException> => refusedWith(LambdaServiceException, p);

async function counts(): Promise<{ mappings: number; changes: number }> {
  const { rows } = await sql<{ mappings: number; changes: number }>`
    select (select count(*)::int from ledger.broker_mappings) as mappings, (select count(*)::int from ledger.changes) as changes`.execute(t.db);
  return rows[0]!;
}

async function makeQueue(tag: string): Promise<string> {
  const queue = `ledger-wire-${tag}-${randomUUID().slice(0, 8)}`;
  queues.push(queue);
  await ch.assertQueue(queue, { durable: false });
  return queue;
}

beforeAll(async () => {
  t = await createTestDatabase();
  home = mkdtempSync(path.join(tmpdir(), 'broker-esm-cli-'));
  runtimes = brokerRuntimes();
  const { app } = composeApi({ db: t.db, instanceId: 'broker-esm-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0, secretKey: SECRET_KEY } });
  server = await listen(app.fetch);
  admin = await createApiKey(t.db, { name: 'operator', scopes: ['admin', 'invoke'] }, { secretKey: SECRET_KEY });
  amqp = await connect(RABBITMQ_URL);
  ch = await amqp.createConfirmChannel();
  sources = await startSources(t.db, runtimes, { secretKey: SECRET_KEY });
});

afterAll(async () => {
  await sources?.stop();
  await server?.close();
  for (const q of queues) await ch?.deleteQueue(q).catch(() => {});
  await amqp?.close().catch(() => {});
  await runtimes?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe('Amazon MQ for RabbitMQ mappings of brokers', () => {
  it.skipIf(!hasCli)('created with the AWS CLI, consumed by the broker source, updated, deleted; the URL never comes back', { timeout: 90_000 }, async () => {
    const queue = await makeQueue('cli');
    await brokerFunction(t.db, 'wire-consumer');
    const r = await aws([
      'create-event-source-mapping',
      '--function-name', 'wire-consumer',
      '--event-source-arn', mqArn,
      '--queues', queue,
      '--source-access-configurations', `Type=BASIC_AUTH,URI=${RABBITMQ_URL}`, 'Type=VIRTUAL_HOST,URI=/',
      '--batch-size', '5',
      '--maximum-batching-window-in-seconds', '1',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toContain(rabbit.password || 'guest:guest');
    const created = JSON.parse(r.out) as Record<string, unknown>;
    const uuid = created['UUID'] as string;
    expect(created).toMatchObject({
      State: 'Creating',
      EventSourceArn: mqArn,
      FunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:wire-consumer',
      Queues: [queue],
      SourceAccessConfigurations: [
        { Type: 'BASIC_AUTH', URI: `amqp://${HOST}:${PORT}` },
        { Type: 'VIRTUAL_HOST', URI: '/' },
      ],
      BatchSize: 5,
      MaximumBatchingWindowInSeconds: 1,
    });
    expect(await getBrokerMapping(t.db, uuid)).toMatchObject({ broker: 'rabbitmq', queue, virtualHost: '/', batchSize: 5, maxBatchingWindowMs: 1000, endpoint: `amqp://${HOST}:${PORT}` });
    // sealed with the server's key
    const { rows } = await sql<{ connection_format: string; sealed: string }>`select connection_format, encode(connection_sealed, 'escape') as sealed from ledger.broker_mappings where id = ${uuid}::uuid`.execute(t.db);
    expect(rows[0]?.connection_format).toBe('aes-256-gcm');

    // the mapping made through the wire is the one the broker source consumes
    for (let i = 0; i < 7; i++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i })), { messageId: `m-${i}` });
    await ch.waitForConfirms();
    const batches = await waitFor('seven messages processed', async () => {
      const b = await brokerBatches(t.db, 'wire-consumer');
      return processedBodies(b).length === 7 ? b : null;
    }, 60_000);
    expect(processedBodies(batches).map((x) => x.n).sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);

    const client = sdk();
    try {
      const listed = await client.send(new ListEventSourceMappingsCommand({ EventSourceArn: mqArn }));
      expect(listed.EventSourceMappings!.map((m) => [m.UUID, m.State, m.Queues])).toEqual([[uuid, 'Enabled', [queue]]]);
      const disabled = await client.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: false, BatchSize: 20, SourceAccessConfigurations: [{ Type: 'BASIC_AUTH', URI: RABBITMQ_URL }] }));
      expect(disabled).toMatchObject({ State: 'Disabling', BatchSize: 20 });
      expect(JSON.stringify(disabled)).not.toContain(rabbit.password || 'guest:guest');
      const got = await client.send(new GetEventSourceMappingCommand({ UUID: uuid }));
      expect(got).toMatchObject({ State: 'Disabled', LastProcessingResult: 'No records processed' });
      expect((await client.send(new DeleteEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Deleting');
      expect((await refusal(client.send(new GetEventSourceMappingCommand({ UUID: uuid })))).name).toBe('ResourceNotFoundException');
    } finally {
      client.destroy();
    }

    const history = (await listChanges(t.db, { resourceType: 'event_source_mapping', resourceName: uuid })).reverse();
    expect(history.map((c) => [c.seq, c.action, c.actor])).toEqual([
      [1, 'created', admin.id],
      [2, 'updated', admin.id],
      [3, 'deleted', admin.id],
    ]);
    expect(history[1]!.data).toEqual({ before: { batchSize: 5, enabled: true, url: '(sealed)' }, after: { batchSize: 20, enabled: false, url: '(changed)' } });
    expect(JSON.stringify(history)).not.toContain(rabbit.password || 'guest:guest');
  });

  it('refuses with Lambda error types and writes nothing; NATS mappings stay GraphQL/CLI only', async () => {
    const queue = await makeQueue('refusals');
    await brokerFunction(t.db, 'wire-refusals');
    const nats = await createBrokerMapping(t.db, { actor: 'test' }, { broker: 'nats', url: NATS_URL, stream: 'wire-none', functionName: 'wire-refusals', enabled: false }, { secretKey: SECRET_KEY });
    const client = sdk();
    try {
      const before = await counts();
      const auth = [{ Type: 'BASIC_AUTH' as const, URI: RABBITMQ_URL }];
      const create = (extra: Record<string, unknown>) =>
        client.send(new CreateEventSourceMappingCommand({ FunctionName: 'wire-refusals', EventSourceArn: mqArn, Queues: [queue], SourceAccessConfigurations: auth, ...extra }));
      const cases: [string, () => Promise<unknown>, string, number][] = [
        ['an unknown function', () => create({ FunctionName: 'nope' }), 'ResourceNotFoundException', 404],
        ['no BASIC_AUTH', () => create({ SourceAccessConfigurations: [{ Type: 'VIRTUAL_HOST', URI: '/' }] }), 'InvalidParameterValueException', 400],
        ['a Secrets Manager ARN for BASIC_AUTH', () => create({ SourceAccessConfigurations: [{ Type: 'BASIC_AUTH', URI: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:mq' }] }), 'InvalidParameterValueException', 400],
        ['a URL of another broker than the ARN', () => create({ EventSourceArn: 'arn:aws:mq:us-east-1:000000000000:broker:elsewhere:5672' }), 'InvalidParameterValueException', 400],
        ['two queues', () => create({ Queues: [queue, queue] }), 'InvalidParameterValueException', 400],
        ['a stream field on a broker', () => create({ StartingPosition: 'LATEST' }), 'InvalidParameterValueException', 400],
        ['a NATS mapping on the wire', () => client.send(new GetEventSourceMappingCommand({ UUID: nats.id })), 'InvalidParameterValueException', 400],
      ];
      for (const [what, send, name, status] of cases) {
        const e = await refusal(send());
        expect([what, e.name, e.$metadata.httpStatusCode]).toEqual([what, name, status]);
        expect(e.message).not.toContain(rabbit.password || 'guest:guest');
      }
      expect(await counts()).toEqual(before);
      expect((await client.send(new ListEventSourceMappingsCommand({ FunctionName: 'wire-refusals' }))).EventSourceMappings).toEqual([]);
    } finally {
      client.destroy();
    }
  });
});
