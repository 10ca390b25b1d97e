// Native streams (docs/streams.md): records put by partition key land on the shard whose
// MD5 hash range holds the key, numbered in order per shard; oversize or malformed input
// is refused alone with nothing written; a mapping delivers each shard in order, shaped
// as Lambda delivers Kinesis records, and the audit view says which invocation delivered
// a record.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { LedgerError } from '../../db/errors.ts';
import {
  createStream,
  createStreamMapping,
  deliveriesOfRecord,
  laneOf,
  listCheckpoints,
  putRecord,
  putRecords,
  trimExpiredRecords,
  updateStreamMapping,
} from '../../db/streams.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { caughtUp, consumer, deliveredBatches, json, startStreamPoller, streamRuntimes, waitFor } from './helpers.ts';

let t: TestDatabase;
let runtimes: Runtimes;
let poller: StreamPoller;

beforeAll(async () => {
  t = await createTestDatabase();
  runtimes = streamRuntimes();
  poller = await startStreamPoller(t.db, runtimes);
});

afterAll(async () => {
  await poller?.stop();
  await runtimes?.close();
});

const count = async (stream: string) =>
  (await sql<{ n: number }>`select count(*)::int as n from ledger.stream_records where stream_name = ${stream}`.execute(t.db)).rows[0]?.n;

/** The shard Kinesis would pick, computed here from MD5 and an even split of 2^128. */
function expectedShard(key: string, shards: number): string {
  const h = BigInt(`0x${createHash('md5').update(key).digest('hex')}`);
  const i = Number((h * BigInt(shards)) / (1n << 128n));
  return `shardId-${String(i).padStart(12, '0')}`;
}

describe('producing', () => {
  it('puts each record on the shard of its key, sequence numbers increasing per shard', async () => {
    const s = await createStream(t.db, { name: 'produce', shardCount: 4, retentionHours: 24 });
    expect(s.shards.map((x) => x.shardId)).toEqual(['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002', 'shardId-000000000003']);
    expect(s.shards[0]?.startingHashKey).toBe('0');
    expect(s.shards[3]?.endingHashKey).toBe(((1n << 128n) - 1n).toString());
    const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`);
    const results = await putRecords(t.db, 'produce', keys.map((k) => ({ partitionKey: k, data: json({ k }) })));
    results.forEach((r, i) => expect(r.shardId).toBe(expectedShard(keys[i] as string, 4)));
    for (const shard of new Set(results.map((r) => r.shardId))) {
      const seqs = results.filter((r) => r.shardId === shard).map((r) => r.sequenceNumber);
      expect(seqs).toEqual([...seqs].sort());
      expect(Number(seqs[0])).toBe(1);
    }
    const one = await putRecord(t.db, 'produce', { partitionKey: 'key-0', data: json('again') });
    expect(one.shardId).toBe(results[0]?.shardId);
    expect(one.sequenceNumber > (results.filter((r) => r.shardId === one.shardId).at(-1)?.sequenceNumber as string)).toBe(true);
  });

  it('refuses oversize or malformed input alone, with a clear error, and writes nothing', async () => {
    await createStream(t.db, { name: 'limits', shardCount: 2 });
    const ok = { partitionKey: 'a', data: json(1) };
    const cases: [unknown[], string, RegExp][] = [
      [Array.from({ length: 501 }, () => ok), 'InvalidParameter', /1 to 500 records/],
      [[ok, { partitionKey: 'a', data: Buffer.alloc(1_048_576).toString('base64') }], 'PayloadTooLarge', /record 1 is 1048577 bytes/],
      [Array.from({ length: 6 }, () => ({ partitionKey: 'k', data: Buffer.alloc(1_000_000).toString('base64') })), 'PayloadTooLarge', /at most 5242880 bytes/],
      [[ok, { partitionKey: 'a', data: 'not base64!' }], 'InvalidParameter', /record 1: data must be base64/],
      [[{ partitionKey: '', data: json(1) }], 'InvalidParameter', /record 0: partitionKey/],
      [[{ partitionKey: 'x'.repeat(257), data: json(1) }], 'InvalidParameter', /partitionKey/],
      [[{ partitionKey: 'a', data: json(1), extra: 1 }], 'InvalidParameter', /unknown field extra/],
    ];
    for (const [entries, code, message] of cases) {
      const e = await putRecords(t.db, 'limits', entries).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(LedgerError);
      expect((e as LedgerError).code).toBe(code);
      expect((e as LedgerError).message).toMatch(message);
    }
    expect(await count('limits')).toBe(0);
    await expect(putRecords(t.db, 'nope', [ok])).rejects.toMatchObject({ code: 'StreamNotFound' });
    // a record of exactly 1 MB (data and key) is accepted
    await putRecord(t.db, 'limits', { partitionKey: 'a', data: Buffer.alloc(1_048_575).toString('base64') });
    expect(await count('limits')).toBe(1);
  });

  it('records are immutable for the application; past retention they are trimmed', async () => {
    await createStream(t.db, { name: 'trim', shardCount: 1, retentionHours: 1 });
    await putRecords(t.db, 'trim', [{ partitionKey: 'a', data: json(1) }, { partitionKey: 'a', data: json(2) }]);
    await expect(sql`update ledger.stream_records set data = '\\x00' where stream_name = 'trim'`.execute(t.db)).rejects.toThrow(/never changed|permission denied/);
    // as the owner: a record that arrived two hours ago (the trigger refuses UPDATE, so it is inserted so)
    await adminQuery(
      t.ownerUrl,
      `insert into ledger.stream_records (stream_name, shard_id, sequence_number, partition_key, data, arrived_at)
       values ('trim', 'shardId-000000000000', 0, 'old', '\\x01', now() - interval '2 hours')`,
    );
    expect(await trimExpiredRecords(t.db)).toBe(1);
    expect(await count('trim')).toBe(2);
    // the owner is refused too (a trigger); the batch history is append-only; a shard's range is fixed
    await expect(adminQuery(t.ownerUrl, `update ledger.stream_records set data = '\\x00' where stream_name = 'trim'`)).rejects.toThrow(/never changed/);
    await expect(adminQuery(t.ownerUrl, `truncate ledger.stream_checkpoint_moves`)).rejects.toThrow(/append-only/);
    await expect(sql`delete from ledger.stream_batches`.execute(t.db)).rejects.toThrow(/permission denied|append-only/);
    await expect(sql`update ledger.stream_shards set ending_hash_key = 0 where stream_name = 'trim'`.execute(t.db)).rejects.toThrow(/permission denied/);
  });
});

describe('delivering', () => {
  it('delivers every record of each shard in order, per key in put order, shaped as Lambda delivers Kinesis records', { timeout: 120_000 }, async () => {
    await createStream(t.db, { name: 'orders', shardCount: 4 });
    await consumer(t.db, 'orders-consumer');
    const keys = Array.from({ length: 16 }, (_, i) => `customer-${i}`);
    const put: { key: string; n: number; shardId: string; seq: string }[] = [];
    let mappingId = '';
    for (let round = 0; round < 6; round++) {
      const entries = Array.from({ length: 500 }, (_, i) => ({ key: keys[i % 16] as string, n: round * 500 + i }));
      const results = await putRecords(t.db, 'orders', entries.map((e) => ({ partitionKey: e.key, data: json({ n: e.n }) })));
      entries.forEach((e, i) => put.push({ ...e, shardId: results[i]?.shardId as string, seq: results[i]?.sequenceNumber as string }));
      // the mapping starts at TRIM_HORIZON after the first round has been put
      if (round === 0) {
        mappingId = (await createStreamMapping(t.db, { streamName: 'orders', functionName: 'orders-consumer', startingPosition: 'TRIM_HORIZON', batchSize: 100 })).id;
      }
    }
    await waitFor('every shard checkpointed at its last record', () => caughtUp(t.db, mappingId), 90_000);
    const batches = await deliveredBatches(t.db, mappingId);
    expect(batches.every((b) => b.status === 'succeeded')).toBe(true);
    const first = batches[0];
    expect(first?.source).toEqual({
      mappingId,
      streamName: 'orders',
      shardId: first?.shardId,
      firstSequenceNumber: first?.records[0]?.sequenceNumber,
      lastSequenceNumber: first?.records.at(-1)?.sequenceNumber,
    });
    // per key: the values in put order, each once
    const got = new Map<string, number[]>();
    for (const b of batches) for (const r of b.records) {
      const list = got.get(r.partitionKey) ?? [];
      list.push((JSON.parse(Buffer.from(r.data, 'base64').toString()) as { n: number }).n);
      got.set(r.partitionKey, list);
      expect(r.eventID).toBe(`${b.shardId}:${r.sequenceNumber}`);
    }
    for (const k of keys) expect(got.get(k)).toEqual(put.filter((p) => p.key === k).map((p) => p.n));
    // per shard: sequence numbers contiguous from 1
    for (const shard of new Set(put.map((p) => p.shardId))) {
      const seqs = batches.filter((b) => b.shardId === shard).flatMap((b) => b.records.map((r) => Number(r.sequenceNumber)));
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
      expect(seqs.length).toBe(put.filter((p) => p.shardId === shard).length);
    }
    // the auditor's question: which invocation delivered record X, and how often
    const x = put[1234] as (typeof put)[number];
    const deliveries = await deliveriesOfRecord(t.db, 'orders', x.shardId, Number(x.seq));
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ status: 'succeeded', checkpointReason: 'processed' });
    expect(batches.find((b) => b.invocationId === deliveries[0]?.invocationId)?.records.map((r) => r.sequenceNumber)).toContain(x.seq);
    await updateStreamMapping(t.db, mappingId, { enabled: false });
  });

  it('ParallelizationFactor 4: lanes of a shard run their own batches, and every key keeps its order', { timeout: 120_000 }, async () => {
    await createStream(t.db, { name: 'parallel', shardCount: 2 });
    await consumer(t.db, 'parallel-consumer');
    const keys = Array.from({ length: 16 }, (_, i) => `device-${i}`);
    const m = await createStreamMapping(t.db, { streamName: 'parallel', functionName: 'parallel-consumer', startingPosition: 'TRIM_HORIZON', batchSize: 50, parallelizationFactor: 4 });
    expect((await listCheckpoints(t.db, m.id)).map((c) => `${c.shardId}/${c.lane}`)).toHaveLength(8);
    for (let round = 0; round < 4; round++) {
      await putRecords(t.db, 'parallel', Array.from({ length: 500 }, (_, i) => ({ partitionKey: keys[i % 16] as string, data: json({ n: round * 500 + i }) })));
    }
    await waitFor('every lane past its last record', async () => {
      const batches = await deliveredBatches(t.db, m.id);
      return batches.filter((b) => b.status === 'succeeded').reduce((n, b) => n + b.records.length, 0) === 2000 && batches.every((b) => b.status !== 'running');
    }, 90_000);
    const batches = await deliveredBatches(t.db, m.id);
    const got = new Map<string, number[]>();
    const lanesOfKey = new Map<string, Set<string>>();
    for (const b of batches) for (const r of b.records) {
      got.set(r.partitionKey, [...(got.get(r.partitionKey) ?? []), (JSON.parse(Buffer.from(r.data, 'base64').toString()) as { n: number }).n]);
      lanesOfKey.set(r.partitionKey, (lanesOfKey.get(r.partitionKey) ?? new Set()).add(`${b.shardId}/${laneOf(r.partitionKey, 4)}`));
    }
    // record n was put with key (n mod 500) mod 16
    const all = Array.from({ length: 2000 }, (_, n) => n);
    keys.forEach((k, i) => expect(got.get(k)).toEqual(all.filter((n) => (n % 500) % 16 === i)));
    // a key's records all came through one lane; the lanes of a shard each had batches of their own
    expect([...lanesOfKey.values()].every((s) => s.size === 1)).toBe(true);
    expect(new Set(batches.map((b) => b.records.map((r) => laneOf(r.partitionKey, 4)).join())).size).toBeGreaterThan(2);
    for (const b of batches) expect(new Set(b.records.map((r) => laneOf(r.partitionKey, 4))).size).toBe(1);
    // the audit view lists only what a lane's batch delivered, though its range spans other lanes' records
    const x = batches[0]?.records[1] as { sequenceNumber: string };
    const seen = await deliveriesOfRecord(t.db, 'parallel', batches[0]?.shardId as string, Number(x.sequenceNumber));
    expect(seen.map((d) => d.invocationId)).toEqual([batches[0]?.invocationId]);
  });

  it('LATEST starts after the records already there; AT_TIMESTAMP at the first record from then', async () => {
    await createStream(t.db, { name: 'positions', shardCount: 1 });
    await consumer(t.db, 'positions-consumer');
    await putRecords(t.db, 'positions', [1, 2, 3].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    const { rows } = await sql<{ now: Date }>`select now() as now`.execute(t.db);
    await putRecords(t.db, 'positions', [4, 5].map((n) => ({ partitionKey: 'k', data: json({ n }) })));
    const latest = await createStreamMapping(t.db, { streamName: 'positions', functionName: 'positions-consumer', startingPosition: 'LATEST', enabled: false });
    const at = await createStreamMapping(t.db, {
      streamName: 'positions',
      functionName: 'positions-consumer',
      startingPosition: 'AT_TIMESTAMP',
      startingPositionTimestamp: rows[0]?.now.toISOString(),
      enabled: false,
    });
    expect((await listCheckpoints(t.db, latest.id))[0]?.sequenceNumber).toBe(5);
    expect((await listCheckpoints(t.db, at.id))[0]?.sequenceNumber).toBe(3);
    await expect(createStreamMapping(t.db, { streamName: 'positions', functionName: 'positions-consumer', startingPosition: 'AT_TIMESTAMP' })).rejects.toMatchObject({
      code: 'InvalidParameter',
    });
  });

  it('the auditor reads audit.stream_deliveries and nothing of ledger.stream_*', async () => {
    const auditor = t.open({ role: 'ledger_auditor' });
    await sql`select * from audit.stream_deliveries limit 1`.execute(auditor.db);
    await expect(sql`select * from ledger.stream_records limit 1`.execute(auditor.db)).rejects.toThrow(/permission denied/);
  });
});
