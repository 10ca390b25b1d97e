// Shared by the stream tests: an in-process stream poller over inline runtimes, and reads
// of what the ledger says each batch delivered.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { createStreamPoller, type StreamPoller, type StreamPollerOptions } from '../../apps/worker/event-sources/streams.ts';
import { createFunction, type FunctionVersion } from '../../db/functions.ts';
import type { Db } from '../../db/schema.ts';
import { listCheckpoints } from '../../db/streams.ts';
import { silent } from '../worker/helpers.ts';

export { silent, waitFor } from '../worker/helpers.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export function streamRuntimes(): Runtimes {
  return createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
}

export async function startStreamPoller(db: Db, runtimes: Runtimes, overrides: Partial<StreamPollerOptions> = {}): Promise<StreamPoller> {
  const poller = createStreamPoller({
    db,
    runtimes,
    logger: silent,
    registry: new Registry(),
    workerId: `streams-${randomUUID().slice(0, 8)}`,
    pollIntervalMs: 20,
    leaseGraceMs: 5_000,
    retryBaseMs: 5,
    retryMaxMs: 50,
    ...overrides,
  });
  await poller.start();
  return poller;
}

export function consumer(db: Db, name: string): Promise<FunctionVersion> {
  return createFunction(db, name, { runtime: 'MODULE', handler: 'stream-consumer.ts', isolation: 'inline', timeoutMs: 10_000 });
}

export const json = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');

export interface DeliveredBatch {
  invocationId: string;
  status: string;
  shardId: string;
  first: number;
  last: number;
  /** the records as the function received them */
  records: { partitionKey: string; sequenceNumber: string; data: string; eventID: string }[];
  source: unknown;
}

/** The poll invocations of a mapping, in the order they were accepted. */
export async function deliveredBatches(db: Db, mappingId: string): Promise<DeliveredBatch[]> {
  const { rows } = await sql<{
    invocation_id: string;
    status: string;
    shard_id: string;
    first_sequence_number: string;
    last_sequence_number: string;
    payload: { Records: { kinesis: { partitionKey: string; sequenceNumber: string; data: string }; eventID: string }[] };
    source: unknown;
  }>`
    select b.invocation_id, i.status, b.shard_id, b.first_sequence_number, b.last_sequence_number,
      a.data -> 'payload' as payload, a.data -> 'stream' as source
    from ledger.stream_batches b
    join ledger.invocations i on i.id = b.invocation_id
    join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
    where b.mapping_id = ${mappingId}::uuid
    order by a.position`.execute(db);
  return rows.map((r) => ({
    invocationId: r.invocation_id,
    status: r.status,
    shardId: r.shard_id,
    first: Number(r.first_sequence_number),
    last: Number(r.last_sequence_number),
    records: r.payload.Records.map((x) => ({ ...x.kinesis, eventID: x.eventID })),
    source: r.source,
  }));
}

/** Waits until every checkpoint of the mapping is at its shard's last record. */
export async function caughtUp(db: Db, mappingId: string): Promise<boolean> {
  const cps = await listCheckpoints(db, mappingId);
  const { rows } = await sql<{ shard_id: string; last: string }>`
    select h.shard_id, h.last_sequence_number::text as last from ledger.stream_shards h
    join ledger.stream_mappings m on m.stream_name = h.stream_name where m.id = ${mappingId}::uuid`.execute(db);
  const last = new Map(rows.map((r) => [r.shard_id, Number(r.last)]));
  return cps.length > 0 && cps.every((c) => c.sequenceNumber === last.get(c.shardId));
}

/** Slow tests run once per CI run, in the DATABASE_URL run, as the broker tests do. */
export { once, SLOW_TESTS } from '../helpers/once.ts';
