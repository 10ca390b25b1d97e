// A failing stream batch (docs/streams.md): retried before any later record of its shard,
// bisected to isolate a poison record, sent to the on-failure destination once its
// retries are used, and the shard moves on; other shards are not held; with
// ReportBatchItemFailures the checkpoint moves to just before the lowest failed record.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { listDestinationDeliveries } from '../../apps/worker/index.ts';
import { createStream, createStreamMapping, deliveriesOfRecord, listCheckpoints, putRecords, shardForKey, updateStreamMapping } from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { caughtUp, consumer, deliveredBatches, json, startStreamPoller, streamRuntimes, waitFor } from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let poller: StreamPoller;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = streamRuntimes();
  poller = await startStreamPoller(t.db, runtimes);
  await consumer(t.db, 'consumer');
  await consumer(t.db, 'failures-sink');
});

afterAll(async () => {
  await poller?.stop();
  await runtimes?.close();
});

const seqs = (records: { sequenceNumber: string }[]) => records.map((r) => Number(r.sequenceNumber));

describe('a failing batch', () => {
  it('a poison record is bisected out to the on-failure destination; every other record is processed once, in order', { timeout: 60_000 }, async () => {
    await createStream(t.db, { name: 'poison', shardCount: 1 });
    await putRecords(t.db, 'poison', Array.from({ length: 40 }, (_, i) => ({ partitionKey: 'k', data: json({ i: i + 1, poison: i + 1 === 17 }) })));
    const m = await createStreamMapping(t.db, {
      streamName: 'poison',
      functionName: 'consumer',
      startingPosition: 'TRIM_HORIZON',
      batchSize: 10,
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 2,
      onFailure: 'function:failures-sink',
    });
    await waitFor('the shard past every record', () => caughtUp(t.db, m.id), 40_000);
    const batches = await deliveredBatches(t.db, m.id);
    const processed = batches.filter((b) => b.status === 'succeeded').flatMap((b) => seqs(b.records));
    expect(processed).toEqual(Array.from({ length: 40 }, (_, i) => i + 1).filter((n) => n !== 17));
    // every failed batch held the poison record, and none after it ran before it was settled
    const failed = batches.filter((b) => b.status === 'failed');
    expect(failed.every((b) => b.first <= 17 && 17 <= b.last)).toBe(true);
    // isolated: tried alone 1 + 2 retries times, then sent on
    expect(failed.filter((b) => b.first === 17 && b.last === 17)).toHaveLength(3);
    const [delivery] = await listDestinationDeliveries(t.db, { invocationId: failed.at(-1)?.invocationId as string });
    expect(delivery).toMatchObject({ condition: 'RetriesExhausted', destination: 'function:failures-sink', status: 'delivered' });
    expect(delivery?.record).toMatchObject({
      requestContext: { condition: 'RetryAttemptsExhausted', approximateInvokeCount: 3 },
      responseContext: { functionError: 'Unhandled' },
      KinesisBatchInfo: { shardId: 'shardId-000000000000', startSequenceNumber: '00000000000000000017', endSequenceNumber: '00000000000000000017', batchSize: 1 },
    });
    const moves = await sql<{ reason: string; from_sequence_number: string; to_sequence_number: string }>`
      select reason, from_sequence_number, to_sequence_number from ledger.stream_checkpoint_moves where mapping_id = ${m.id}::uuid order by id`.execute(t.db);
    expect(moves.rows.find((r) => r.reason === 'on_failure')).toMatchObject({ from_sequence_number: '16', to_sequence_number: '17' });
    // the auditor's view: record 17 delivered by every failed batch, processed by none
    const of17 = await deliveriesOfRecord(t.db, 'poison', 'shardId-000000000000', 17);
    expect(of17.map((d) => d.status).filter((s) => s === 'succeeded')).toEqual([]);
    expect(of17.length).toBe(failed.length);
  });

  it('a blocked shard holds only itself: its later records wait, the other shard is processed', { timeout: 60_000 }, async () => {
    const s = await createStream(t.db, { name: 'blocked', shardCount: 2 });
    // a key of each shard
    const keys: string[] = [];
    for (let i = 0; keys.length < 2; i++) {
      const k = `key-${i}`;
      const shard = shardForKey(s.shards, k);
      if (!keys.some((x) => shardForKey(s.shards, x) === shard)) keys.push(k);
    }
    const [blockedKey, freeKey] = keys as [string, string];
    await putRecords(t.db, 'blocked', [{ partitionKey: blockedKey, data: json({ poison: true }) }]);
    await putRecords(t.db, 'blocked', Array.from({ length: 30 }, (_, i) => ({ partitionKey: i % 2 ? blockedKey : freeKey, data: json({ i }) })));
    const m = await createStreamMapping(t.db, { streamName: 'blocked', functionName: 'consumer', startingPosition: 'TRIM_HORIZON', batchSize: 5 });
    const blockedShard = shardForKey(s.shards, blockedKey);
    await waitFor(
      'the free shard done and the blocked one retried a few times',
      async () => {
        const cps = await listCheckpoints(t.db, m.id);
        const free = cps.find((c) => c.shardId !== blockedShard);
        const blocked = cps.find((c) => c.shardId === blockedShard);
        return free?.sequenceNumber === 15 && (blocked?.retryAttempts ?? 0) >= 3;
      },
      40_000,
    );
    await updateStreamMapping(t.db, m.id, { enabled: false });
    // a poll that listed the shard before the mapping was disabled may still start one more
    // batch (as Lambda's Disabling state does): wait until every batch has ended
    const ended = (b: { status: string }) => b.status === 'succeeded' || b.status === 'failed';
    await waitFor('no batch running', async () => poller.inFlight === 0 && (await deliveredBatches(t.db, m.id)).every(ended));
    const batches = await deliveredBatches(t.db, m.id);
    const onBlocked = batches.filter((b) => b.shardId === blockedShard);
    expect(onBlocked.every((b) => b.status === 'failed' && b.first === 1 && b.last === 5)).toBe(true);
    expect((await listCheckpoints(t.db, m.id)).find((c) => c.shardId === blockedShard)?.sequenceNumber).toBe(0);
    expect(batches.filter((b) => b.shardId !== blockedShard).every((b) => b.status === 'succeeded')).toBe(true);
  });

  it('ReportBatchItemFailures: the checkpoint moves to just before the lowest failed sequence number', { timeout: 60_000 }, async () => {
    await createStream(t.db, { name: 'partial', shardCount: 1 });
    await putRecords(t.db, 'partial', Array.from({ length: 10 }, (_, i) => ({ partitionKey: 'k', data: json({ i: i + 1, reportFail: i + 1 === 4 || i + 1 === 7 ? 1 : 0 }) })));
    const m = await createStreamMapping(t.db, { streamName: 'partial', functionName: 'consumer', startingPosition: 'TRIM_HORIZON', batchSize: 10, reportBatchItemFailures: true });
    await waitFor('the shard past every record', () => caughtUp(t.db, m.id), 40_000);
    const batches = await deliveredBatches(t.db, m.id);
    expect(batches.map((b) => [b.status, b.first, b.last])).toEqual([
      ['succeeded', 1, 10], // 4 and 7 reported
      ['succeeded', 4, 10], // 7 failed on its first delivery only
    ]);
    const moves = await sql<{ reason: string; from_sequence_number: string; to_sequence_number: string }>`
      select reason, from_sequence_number, to_sequence_number from ledger.stream_checkpoint_moves where mapping_id = ${m.id}::uuid order by id`.execute(t.db);
    expect(moves.rows).toEqual([
      { reason: 'partial', from_sequence_number: '0', to_sequence_number: '3' },
      { reason: 'processed', from_sequence_number: '3', to_sequence_number: '10' },
    ]);
    expect((await deliveriesOfRecord(t.db, 'partial', 'shardId-000000000000', 5)).length).toBe(2);
    expect((await deliveriesOfRecord(t.db, 'partial', 'shardId-000000000000', 2)).length).toBe(1);
  });
});
