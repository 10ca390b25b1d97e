// Kinesis's PutRecord and PutRecords on their own wire (docs/streams.md, "The Kinesis API"),
// driven by the real @aws-sdk/client-kinesis and the real AWS CLI (/usr/bin/aws) against a
// server this test starts with auth on: records land on the shard the MD5 of their key
// picks, as the native route puts them; refusals come as Kinesis's exception classes, and a
// refused request writes nothing.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KinesisClient, KinesisServiceException, PutRecordCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createStream, putRecords } from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { FIXTURES, silent, streamRuntimes } from './helpers.ts';
import { refusedWith } from '../helpers/refusal.ts';

const AWS = '/usr/bin/aws';

let t: TestDatabase;
let server: Listening;
let runtimes: Runtimes;
let producer: CreatedApiKey;
let auditor: CreatedApiKey;
let home: string;

// the Kinesis client speaks HTTP/2 by default (for SubscribeToShard); this server is HTTP/1.1,
// so it is given the SDK's HTTP/1.1 handler, as docs/streams.md tells a user to
const kinesis = (k: CreatedApiKey) =>
  new KinesisClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey },
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler(),
  });

const refusal = (p: Promise<unknown>): Promise<KinesisServiceException> => refusedWith(KinesisServiceException, p);

async function recordCount(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.stream_records`.execute(t.db);
  return rows[0]!.n;
}

beforeAll(async () => {
  t = await createTestDatabase();
  home = mkdtempSync(path.join(tmpdir(), 'kinesis-cli-'));
  runtimes = streamRuntimes();
  const { app } = composeApi({ db: t.db, instanceId: 'kinesis-api-test', runtimes, logger: silent, functionsDir: FIXTURES, auth: { enabled: true, cacheTtlMs: 0 } });
  server = await listen(app.fetch);
  producer = await createApiKey(t.db, { name: 'producer', scopes: ['invoke'] });
  auditor = await createApiKey(t.db, { name: 'auditor', scopes: ['audit'] });
  await createStream(t.db, { name: 'clicks', shardCount: 4, retentionHours: 24 });
});

afterAll(async () => {
  await server?.close();
  await runtimes?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe('the Kinesis API', () => {
  it('PutRecord and PutRecords put records on the shard the key picks, in order, as the native route does', async () => {
    const client = kinesis(producer);
    const one = await client.send(new PutRecordCommand({ StreamName: 'clicks', PartitionKey: 'user-1', Data: new TextEncoder().encode('first') }));
    expect(one.ShardId).toMatch(/^shardId-\d{12}$/);
    expect(one.SequenceNumber).toMatch(/^\d+$/);
    expect(one.EncryptionType).toBe('NONE');

    const keys = Array.from({ length: 40 }, (_, i) => `user-${i % 8}`);
    const many = await client.send(
      new PutRecordsCommand({
        StreamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/clicks',
        Records: keys.map((k, i) => ({ PartitionKey: k, Data: new TextEncoder().encode(`r${i}`) })),
      }),
    );
    expect(many.FailedRecordCount).toBe(0);
    expect(many.Records).toHaveLength(40);

    // the same key goes where the native producer puts it, and numbers increase per shard
    const native = await putRecords(t.db, 'clicks', keys.map((k) => ({ partitionKey: k, data: Buffer.from('n').toString('base64') })));
    for (const [i, r] of (many.Records ?? []).entries()) expect(r.ShardId).toBe(native[i]!.shardId);
    expect(many.Records?.find((_, i) => keys[i] === 'user-1')?.ShardId).toBe(one.ShardId);
    const byShard = new Map<string, bigint[]>();
    for (const r of many.Records ?? []) byShard.set(r.ShardId as string, [...(byShard.get(r.ShardId as string) ?? []), BigInt(r.SequenceNumber as string)]);
    for (const seqs of byShard.values()) expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));

    // the bytes as sent (sequence numbers count per shard)
    const { rows } = await sql<{ data: Buffer }>`
      select data from ledger.stream_records where stream_name = 'clicks'
        and shard_id = ${many.Records?.[3]?.ShardId} and sequence_number = ${many.Records?.[3]?.SequenceNumber}::numeric`.execute(t.db);
    expect(rows.map((r) => r.data.toString())).toEqual(['r3']);
  });

  it('the AWS CLI puts a record', async () => {
    if (!existsSync(AWS)) return expect.fail(`${AWS} is missing: .ci/run installs the AWS CLI v2`);
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        AWS,
        ['kinesis', 'put-record', '--stream-name', 'clicks', '--partition-key', 'cli', '--data', Buffer.from('from the cli').toString('base64'), '--endpoint-url', server.url, '--output', 'json'],
        {
          env: {
            PATH: process.env['PATH'] ?? '/usr/bin:/bin',
            HOME: home,
            AWS_ACCESS_KEY_ID: producer.accessKeyId,
            AWS_SECRET_ACCESS_KEY: producer.secretAccessKey,
            AWS_REGION: 'us-east-1',
            AWS_PAGER: '',
          },
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const answer = JSON.parse(out.stdout) as { ShardId: string; SequenceNumber: string };
    const { rows } = await sql<{ data: Buffer }>`
      select data from ledger.stream_records where stream_name = 'clicks' and shard_id = ${answer.ShardId} and sequence_number = ${answer.SequenceNumber}::numeric`.execute(t.db);
    expect(rows.map((r) => r.data.toString())).toEqual(['from the cli']);
  }, 120_000);

  it('refuses as Kinesis does, writing nothing', async () => {
    const client = kinesis(producer);
    const before = await recordCount();
    const data = new TextEncoder().encode('x');

    const missing = await refusal(client.send(new PutRecordCommand({ StreamName: 'nope', PartitionKey: 'k', Data: data })));
    expect(missing.name).toBe('ResourceNotFoundException');
    expect(missing.$metadata.httpStatusCode).toBe(404);

    // one record over 1 MB refuses the whole request
    const big = await refusal(
      client.send(new PutRecordsCommand({ StreamName: 'clicks', Records: [{ PartitionKey: 'ok', Data: data }, { PartitionKey: 'big', Data: new Uint8Array(1_048_577) }] })),
    );
    expect(big.name).toBe('ValidationException');
    expect(big.$metadata.httpStatusCode).toBe(400);

    const tooMany = await refusal(client.send(new PutRecordsCommand({ StreamName: 'clicks', Records: Array.from({ length: 501 }, () => ({ PartitionKey: 'k', Data: data })) })));
    expect(tooMany.name).toBe('InvalidArgumentException');

    const hashKey = await refusal(client.send(new PutRecordCommand({ StreamName: 'clicks', PartitionKey: 'k', Data: data, ExplicitHashKey: '1' })));
    expect(hashKey.name).toBe('InvalidArgumentException');
    expect(hashKey.message).toMatch(/ExplicitHashKey is not supported/);

    const emptyKey = await refusal(client.send(new PutRecordCommand({ StreamName: 'clicks', PartitionKey: '', Data: data })));
    expect(emptyKey.name).toBe('InvalidArgumentException');

    const arnMismatch = await refusal(
      client.send(new PutRecordCommand({ StreamName: 'clicks', StreamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/other', PartitionKey: 'k', Data: data })),
    );
    expect(arnMismatch.name).toBe('InvalidArgumentException');

    // a key without invoke may not produce
    const denied = await refusal(kinesis(auditor).send(new PutRecordCommand({ StreamName: 'clicks', PartitionKey: 'k', Data: data })));
    expect(denied.name).toBe('AccessDeniedException');
    expect(denied.$metadata.httpStatusCode).toBe(403);

    expect(await recordCount()).toBe(before);
  });

  it('answers other Kinesis operations and other POSTs to / with a clear refusal', async () => {
    // signed like the SDK would sign it: through the SDK's own client, an operation we do not serve
    const { ListStreamsCommand } = await import('@aws-sdk/client-kinesis');
    const other = await refusal(kinesis(producer).send(new ListStreamsCommand({})));
    expect(other.name).toBe('UnknownOperationException');
    expect(other.message).toMatch(/only PutRecord and PutRecords/);

    const unsigned = await fetch(`${server.url}/`, { method: 'POST', body: '{}' });
    expect(unsigned.status).toBe(401);
  });
});
