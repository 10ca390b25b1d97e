// Native streams with Kinesis semantics (docs/streams.md, migrations/0027_streams.sql):
// streams and their shards, records put by partition key, stream event source mappings
// and their per-shard checkpoints. Records are operational data; each batch a mapping
// delivers is a `poll` invocation in the ledger, written by the caller in the transaction
// that holds the shard (receive) or moves its checkpoint (settle).
import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { z } from 'zod';
import { appendChange } from './changes.ts';
import type { ChangeContext } from './control-plane.ts';
import { LedgerError } from './errors.ts';
import { FUNCTION_NAME, getFunction, inTransaction } from './functions.ts';
import { UUID } from './invocations.ts';
import { parse } from './queues/schemas.ts';
import type { Db, Executor } from './schema.ts';

export const STREAM_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
/** Kinesis: a record's data and partition key together */
export const MAX_RECORD_BYTES = 1_048_576;
export const MAX_PUT_RECORDS_ENTRIES = 500;
export const MAX_PUT_RECORDS_BYTES = 5_242_880;
/** a PutRecords request's JSON body: 5 MB of records as base64, with room for the keys and the JSON around them */
export const MAX_PUT_RECORDS_BODY_BYTES = Math.ceil((MAX_PUT_RECORDS_BYTES * 4) / 3) + 512 * 1024;
export const MAX_PARTITION_KEY_LENGTH = 256;
export const STREAM_RECORDS_CHANNEL = 'ledger_stream_records';
export const STREAM_ARN_PREFIX = 'arn:aws:kinesis:local:000000000000:stream/';
const HASH_SPACE = 1n << 128n;

// ---------------------------------------------------------------------------------
// streams and shards

export const streamInputSchema = z
  .object({
    name: z.string().regex(STREAM_NAME, `stream name must match ${STREAM_NAME.source}`),
    shardCount: z.number().int().min(1).max(64),
    retentionHours: z.number().int().min(1).max(8760).default(24),
  })
  .strict();
export type StreamInput = z.input<typeof streamInputSchema>;

export interface Shard {
  shardId: string;
  /** decimal strings: unsigned 128-bit integers */
  startingHashKey: string;
  endingHashKey: string;
  lastSequenceNumber: number;
}

export interface Stream {
  name: string;
  arn: string;
  shardCount: number;
  retentionHours: number;
  createdAt: Date;
  shards: Shard[];
}

export const shardIdOf = (i: number) => `shardId-${String(i).padStart(12, '0')}`;
/** Sequence numbers are per shard; as strings (Kinesis, Lambda) they are zero-padded so they sort as text too. */
export const formatSequenceNumber = (n: number | bigint) => String(n).padStart(20, '0');
export const streamArn = (name: string) => `${STREAM_ARN_PREFIX}${name}`;

/** Even split of the MD5 space, as Kinesis's CreateStream does. */
export function shardRanges(count: number): { shardId: string; start: bigint; end: bigint }[] {
  return Array.from({ length: count }, (_, i) => ({
    shardId: shardIdOf(i),
    start: (HASH_SPACE * BigInt(i)) / BigInt(count),
    end: (HASH_SPACE * BigInt(i + 1)) / BigInt(count) - 1n,
  }));
}

/** MD5 of the partition key (UTF-8) as an unsigned 128-bit integer: Kinesis's hash key. */
export function hashKeyOf(partitionKey: string): bigint {
  return BigInt(`0x${createHash('md5').update(partitionKey, 'utf8').digest('hex')}`);
}

/** The shard whose hash range holds the key's MD5. */
export function shardForKey(shards: readonly Pick<Shard, 'shardId' | 'startingHashKey' | 'endingHashKey'>[], partitionKey: string): string {
  const h = hashKeyOf(partitionKey);
  const s = shards.find((x) => BigInt(x.startingHashKey) <= h && h <= BigInt(x.endingHashKey));
  if (!s) throw new Error(`no shard covers hash key ${h}`);
  return s.shardId;
}

/** The lane of a partition key among `lanes` (ParallelizationFactor): as ledger.stream_lane in SQL. */
export function laneOf(partitionKey: string, lanes: number): number {
  return (createHash('md5').update(partitionKey, 'utf8').digest().readUInt32BE(0) & 0x7fffffff) % lanes;
}

interface StreamRow {
  name: string;
  shard_count: number;
  retention_hours: number;
  created_at: Date;
  shards: { shard_id: string; starting_hash_key: string; ending_hash_key: string; last_sequence_number: string }[];
}

const toStream = (r: StreamRow): Stream => ({
  name: r.name,
  arn: streamArn(r.name),
  shardCount: r.shard_count,
  retentionHours: r.retention_hours,
  createdAt: r.created_at,
  shards: r.shards.map((s) => ({
    shardId: s.shard_id,
    startingHashKey: String(s.starting_hash_key),
    endingHashKey: String(s.ending_hash_key),
    lastSequenceNumber: Number(s.last_sequence_number),
  })),
});

export async function createStream(db: Db, input: unknown): Promise<Stream> {
  const s = parse(streamInputSchema, input);
  const ranges = shardRanges(s.shardCount);
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ name: string }>`
      insert into ledger.streams (name, shard_count, retention_hours) values (${s.name}, ${s.shardCount}, ${s.retentionHours})
      on conflict (name) do nothing returning name`.execute(tx);
    if (!rows[0]) throw new LedgerError('StreamExists', `stream ${s.name} already exists`);
    await sql`
      insert into ledger.stream_shards (stream_name, shard_id, starting_hash_key, ending_hash_key)
      select ${s.name}, id, lo, hi from unnest(${ranges.map((r) => r.shardId)}::text[], ${ranges.map((r) => r.start.toString())}::numeric[],
        ${ranges.map((r) => r.end.toString())}::numeric[]) as t(id, lo, hi)`.execute(tx);
    return (await getStream(tx, s.name)) as Stream;
  });
}

export async function getStream(db: Executor, name: string): Promise<Stream | null> {
  if (!STREAM_NAME.test(name)) return null;
  const { rows } = await sql<StreamRow>`
    select s.*, (select coalesce(json_agg(json_build_object('shard_id', h.shard_id, 'starting_hash_key', h.starting_hash_key::text,
        'ending_hash_key', h.ending_hash_key::text, 'last_sequence_number', h.last_sequence_number) order by h.shard_id), '[]')
      from ledger.stream_shards h where h.stream_name = s.name) as shards
    from ledger.streams s where s.name = ${name}`.execute(db);
  return rows[0] ? toStream(rows[0]) : null;
}

export async function requireStream(db: Executor, name: string): Promise<Stream> {
  const s = await getStream(db, name);
  if (!s) throw new LedgerError('StreamNotFound', `Stream not found: ${name}`);
  return s;
}

export async function listStreams(db: Executor): Promise<Stream[]> {
  const { rows } = await sql<{ name: string }>`select name from ledger.streams order by name`.execute(db);
  return (await Promise.all(rows.map((r) => getStream(db, r.name)))).filter((s): s is Stream => s !== null);
}

// ---------------------------------------------------------------------------------
// records

export interface PutEntry {
  partitionKey: string;
  /** base64, as in Kinesis's JSON API; or the bytes */
  data: string | Uint8Array;
}

export interface PutResult {
  shardId: string;
  sequenceNumber: string;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The bytes of an entry, or why it is refused (PutRecords refuses the whole request). */
function entryBytes(e: unknown, i: number): { key: string; data: Buffer } {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new LedgerError('InvalidParameter', `record ${i}: not an object with partitionKey and data`);
  const { partitionKey, data, ...rest } = e as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new LedgerError('InvalidParameter', `record ${i}: unknown field ${extra[0]}`);
  if (typeof partitionKey !== 'string' || partitionKey.length < 1 || [...partitionKey].length > MAX_PARTITION_KEY_LENGTH) {
    throw new LedgerError('InvalidParameter', `record ${i}: partitionKey must be a string of 1 to ${MAX_PARTITION_KEY_LENGTH} characters`);
  }
  if (partitionKey.includes('\u0000') || LONE_SURROGATE.test(partitionKey)) {
    throw new LedgerError('InvalidParameter', `record ${i}: partitionKey must be valid Unicode without U+0000`);
  }
  let bytes: Buffer;
  if (data instanceof Uint8Array) bytes = Buffer.from(data);
  else if (typeof data === 'string') {
    if (!BASE64.test(data)) throw new LedgerError('InvalidParameter', `record ${i}: data must be base64`);
    bytes = Buffer.from(data, 'base64');
  } else throw new LedgerError('InvalidParameter', `record ${i}: data must be a base64 string`);
  const size = bytes.byteLength + Buffer.byteLength(partitionKey, 'utf8');
  if (size > MAX_RECORD_BYTES) {
    throw new LedgerError('PayloadTooLarge', `record ${i} is ${size} bytes (data and partition key); the limit is ${MAX_RECORD_BYTES}`);
  }
  return { key: partitionKey, data: bytes };
}

/**
 * PutRecords: 1 to 500 records, at most 5 MB, each at most 1 MB; any entry refused
 * refuses the request and nothing is written. Each record goes to the shard whose hash
 * range holds MD5(partitionKey); within a shard, sequence numbers follow the order of
 * the entries and increase in commit order (the shard's row is locked while counting).
 */
export async function putRecords(db: Db, streamName: string, entries: readonly unknown[]): Promise<PutResult[]> {
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_PUT_RECORDS_ENTRIES) {
    throw new LedgerError('InvalidParameter', `PutRecords takes 1 to ${MAX_PUT_RECORDS_ENTRIES} records`);
  }
  const parsed = entries.map((e, i) => entryBytes(e, i));
  const total = parsed.reduce((n, p) => n + p.data.byteLength + Buffer.byteLength(p.key, 'utf8'), 0);
  if (total > MAX_PUT_RECORDS_BYTES) throw new LedgerError('PayloadTooLarge', `a PutRecords request is at most ${MAX_PUT_RECORDS_BYTES} bytes; this one is ${total}`);
  const stream = await requireStream(db, streamName);
  return db.transaction().execute((tx) => appendRecords(tx, stream, parsed));
}

/**
 * In the caller's transaction: appends records to their shards (by MD5 of the key), in
 * entry order within each shard. The shards are locked in one order (no deadlock between
 * two appends) and counted on from their last numbers. `sourceLsn`: the commit LSN of the
 * source transaction of a change record (docs/streams.md, change streams).
 */
export async function appendRecords(
  tx: Executor,
  stream: Pick<Stream, 'name' | 'shards'>,
  parsed: readonly { key: string; data: Buffer }[],
  sourceLsn: string | null = null,
): Promise<PutResult[]> {
  const streamName = stream.name;
  const shardIds = parsed.map((p) => shardForKey(stream.shards, p.key));
  {
    const touched = [...new Set(shardIds)].sort();
    const { rows } = await sql<{ shard_id: string; last: string }>`
      select shard_id, last_sequence_number::text as last from ledger.stream_shards
      where stream_name = ${streamName} and shard_id = any(${touched}::text[]) order by shard_id for no key update`.execute(tx);
    const next = new Map(rows.map((r) => [r.shard_id, BigInt(r.last)]));
    if (next.size !== touched.length) throw new LedgerError('StreamNotFound', `Stream not found: ${streamName}`);
    const seqs = shardIds.map((s) => {
      const n = (next.get(s) as bigint) + 1n;
      next.set(s, n);
      return n;
    });
    await sql`
      update ledger.stream_shards h set last_sequence_number = t.last
      from unnest(${[...next.keys()]}::text[], ${[...next.values()].map(String)}::bigint[]) as t(shard_id, last)
      where h.stream_name = ${streamName} and h.shard_id = t.shard_id`.execute(tx);
    await sql`
      insert into ledger.stream_records (stream_name, shard_id, sequence_number, partition_key, data, source_lsn)
      select ${streamName}, s, n, k, d, ${sourceLsn}::pg_lsn from unnest(${shardIds}::text[], ${seqs.map(String)}::bigint[], ${parsed.map((p) => p.key)}::text[],
        ${parsed.map((p) => p.data)}::bytea[]) as t(s, n, k, d)`.execute(tx);
    await sql`select pg_notify(${STREAM_RECORDS_CHANNEL}, ${streamName})`.execute(tx);
    return shardIds.map((shardId, i) => ({ shardId, sequenceNumber: formatSequenceNumber(seqs[i] as bigint) }));
  }
}

export async function putRecord(db: Db, streamName: string, entry: unknown): Promise<PutResult> {
  return (await putRecords(db, streamName, [entry]))[0] as PutResult;
}

export interface StreamRecord {
  shardId: string;
  sequenceNumber: number;
  partitionKey: string;
  data: Buffer;
  arrivedAt: Date;
  /** a change record's source commit LSN (docs/streams.md, change streams); null for put records */
  sourceLsn: string | null;
}

/** Records of a shard after `afterSeq` (and up to `untilSeq`), in order. */
export async function readShard(
  db: Executor,
  streamName: string,
  shardId: string,
  o: { afterSeq: number; untilSeq?: number | null; limit: number; lane?: { lane: number; lanes: number } },
): Promise<StreamRecord[]> {
  const lanes = o.lane?.lanes ?? 1;
  const { rows } = await sql<{ sequence_number: string; partition_key: string; data: Buffer; arrived_at: Date; source_lsn: string | null }>`
    select sequence_number, partition_key, data, arrived_at, source_lsn::text as source_lsn from ledger.stream_records
    where stream_name = ${streamName} and shard_id = ${shardId} and sequence_number > ${o.afterSeq}
      and (${o.untilSeq ?? null}::bigint is null or sequence_number <= ${o.untilSeq ?? null}::bigint)
      and (${lanes}::int = 1 or ledger.stream_lane(partition_key, ${lanes}::int) = ${o.lane?.lane ?? 0}::int)
    order by sequence_number limit ${o.limit}`.execute(db);
  return rows.map((r) => ({ shardId, sequenceNumber: Number(r.sequence_number), partitionKey: r.partition_key, data: r.data, arrivedAt: r.arrived_at, sourceLsn: r.source_lsn }));
}

/** Upkeep: deletes records older than their stream's retention. Returns how many. */
export async function trimExpiredRecords(db: Executor): Promise<number> {
  const res = await sql`
    delete from ledger.stream_records r using ledger.streams s
    where r.stream_name = s.name and r.arrived_at < now() - make_interval(hours => s.retention_hours)`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}

// ---------------------------------------------------------------------------------
// stream event source mappings

const destination = z
  .string()
  .max(2048)
  .refine((d) => /^function:[A-Za-z0-9_-]{1,64}$/.test(d) || /^https?:\/\/\S+$/.test(d), 'a destination is function:<name> or an http(s) URL');

const mappingFields = {
  batchSize: z.number().int().min(1).max(10_000),
  maximumBatchingWindowInSeconds: z.number().int().min(0).max(300),
  maximumRetryAttempts: z.number().int().min(-1).max(10_000),
  maximumRecordAgeInSeconds: z.number().int().refine((n) => n === -1 || (n >= 60 && n <= 604_800), 'maximumRecordAgeInSeconds is -1 or 60 … 604800'),
  bisectBatchOnFunctionError: z.boolean(),
  reportBatchItemFailures: z.boolean(),
  onFailure: destination.nullable(),
  enabled: z.boolean(),
  // Lambda's TumblingWindowInSeconds: 0 (none) … 900
  tumblingWindowInSeconds: z.number().int().min(0).max(900),
};

export const streamMappingInputSchema = z
  .object({
    streamName: z.string().regex(STREAM_NAME, 'streamName is not a stream name'),
    functionName: z.string().regex(FUNCTION_NAME, `functionName must match ${FUNCTION_NAME.source}`),
    startingPosition: z.enum(['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP']),
    startingPositionTimestamp: z.coerce.date().nullish(),
    batchSize: mappingFields.batchSize.default(100),
    maximumBatchingWindowInSeconds: mappingFields.maximumBatchingWindowInSeconds.default(0),
    maximumRetryAttempts: mappingFields.maximumRetryAttempts.default(-1),
    maximumRecordAgeInSeconds: mappingFields.maximumRecordAgeInSeconds.default(-1),
    bisectBatchOnFunctionError: mappingFields.bisectBatchOnFunctionError.default(false),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.default(false),
    onFailure: mappingFields.onFailure.default(null),
    enabled: mappingFields.enabled.default(true),
    tumblingWindowInSeconds: mappingFields.tumblingWindowInSeconds.default(0),
    // set at creation only: each lane has its own checkpoint
    parallelizationFactor: z.number().int().min(1).max(10).default(1),
  })
  .strict()
  .refine((m) => (m.startingPosition === 'AT_TIMESTAMP') === (m.startingPositionTimestamp != null), {
    message: 'startingPositionTimestamp is given exactly when startingPosition is AT_TIMESTAMP',
    path: ['startingPositionTimestamp'],
  });
export type StreamMappingInput = z.input<typeof streamMappingInputSchema>;

export const streamMappingUpdateSchema = z
  .object({
    batchSize: mappingFields.batchSize.optional(),
    maximumBatchingWindowInSeconds: mappingFields.maximumBatchingWindowInSeconds.optional(),
    maximumRetryAttempts: mappingFields.maximumRetryAttempts.optional(),
    maximumRecordAgeInSeconds: mappingFields.maximumRecordAgeInSeconds.optional(),
    bisectBatchOnFunctionError: mappingFields.bisectBatchOnFunctionError.optional(),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.optional(),
    onFailure: mappingFields.onFailure.optional(),
    enabled: mappingFields.enabled.optional(),
    tumblingWindowInSeconds: mappingFields.tumblingWindowInSeconds.optional(),
  })
  .strict();

export interface StreamMapping {
  id: string;
  streamName: string;
  functionName: string;
  startingPosition: 'TRIM_HORIZON' | 'LATEST' | 'AT_TIMESTAMP';
  startingPositionTimestamp: Date | null;
  batchSize: number;
  maximumBatchingWindowInSeconds: number;
  maximumRetryAttempts: number;
  maximumRecordAgeInSeconds: number;
  bisectBatchOnFunctionError: boolean;
  reportBatchItemFailures: boolean;
  onFailure: string | null;
  enabled: boolean;
  /** concurrent batches per shard, each for its lane of the partition keys */
  parallelizationFactor: number;
  /** 0, or the length of a tumbling window (docs/streams.md, "Tumbling windows") */
  tumblingWindowInSeconds: number;
  /** a change stream mapping's source table (`schema.table`); null for a native stream's */
  sourceTable: string | null;
  createdAt: Date;
  updatedAt: Date;
}

interface MappingRow {
  id: string;
  stream_name: string;
  function_name: string;
  starting_position: StreamMapping['startingPosition'];
  starting_position_timestamp: Date | null;
  batch_size: number;
  max_batching_window_ms: number;
  maximum_retry_attempts: number;
  maximum_record_age_seconds: number;
  bisect_batch_on_function_error: boolean;
  report_batch_item_failures: boolean;
  on_failure_destination: string | null;
  enabled: boolean;
  parallelization_factor: number;
  tumbling_window_seconds: number;
  source_table: string | null;
  created_at: Date;
  updated_at: Date;
}

const toMapping = (r: MappingRow): StreamMapping => ({
  id: r.id,
  streamName: r.stream_name,
  functionName: r.function_name,
  startingPosition: r.starting_position,
  startingPositionTimestamp: r.starting_position_timestamp,
  batchSize: r.batch_size,
  maximumBatchingWindowInSeconds: r.max_batching_window_ms / 1000,
  maximumRetryAttempts: r.maximum_retry_attempts,
  maximumRecordAgeInSeconds: r.maximum_record_age_seconds,
  bisectBatchOnFunctionError: r.bisect_batch_on_function_error,
  reportBatchItemFailures: r.report_batch_item_failures,
  onFailure: r.on_failure_destination,
  enabled: r.enabled,
  parallelizationFactor: r.parallelization_factor,
  tumblingWindowInSeconds: r.tumbling_window_seconds ?? 0,
  sourceTable: r.source_table ?? null,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const mappingNotFound = (id: string) => new LedgerError('EventSourceMappingNotFound', `Event source mapping not found: ${id}`);

/** Who made a mapping change; `system` for a direct library call. */
const SYSTEM: ChangeContext = { actor: 'system' };
/** Stream mappings share the `event_source_mapping` stream of ledger.changes with queue and broker mappings (docs/changes.md); UUIDs keep them apart. */
export const STREAM_MAPPING_CHANGES = 'event_source_mapping';

/** What ledger.changes keeps of a stream mapping: its settings, not its id or timestamps. */
function streamMappingDefinition(m: StreamMapping): Record<string, unknown> {
  const { id: _id, createdAt: _c, updatedAt: _u, startingPositionTimestamp, ...settings } = m;
  return { ...settings, startingPositionTimestamp: startingPositionTimestamp?.toISOString() ?? null };
}

/** The keys whose values differ, before and after. */
function streamMappingDiff(before: StreamMapping, after: StreamMapping): { before: Record<string, unknown>; after: Record<string, unknown> } {
  const b = streamMappingDefinition(before);
  const a = streamMappingDefinition(after);
  const changed = Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return { before: Object.fromEntries(changed.map((k) => [k, b[k]])), after: Object.fromEntries(changed.map((k) => [k, a[k]])) };
}

/**
 * Creates the mapping and its checkpoints: TRIM_HORIZON before the oldest record kept,
 * LATEST after the shard's last record, AT_TIMESTAMP before the first record that
 * arrived at or after the timestamp.
 */
export async function createStreamMapping(db: Db, input: unknown, by: ChangeContext = SYSTEM, opts: { refuseDuplicate?: boolean } = {}): Promise<StreamMapping> {
  const m = parse(streamMappingInputSchema, input);
  return db.transaction().execute(async (tx) => {
    await requireStream(tx, m.streamName);
    if (!(await getFunction(tx, m.functionName))) throw new LedgerError('FunctionNotFound', `Function not found: ${m.functionName}`);
    if (opts.refuseDuplicate) await refuseDuplicateStreamMapping(tx, m.streamName, m.functionName);
    const id = randomUUID();
    const { rows } = await sql<MappingRow>`
      insert into ledger.stream_mappings (id, stream_name, function_name, starting_position, starting_position_timestamp, batch_size,
        max_batching_window_ms, maximum_retry_attempts, maximum_record_age_seconds, bisect_batch_on_function_error,
        report_batch_item_failures, on_failure_destination, enabled, parallelization_factor, tumbling_window_seconds)
      values (${id}::uuid, ${m.streamName}, ${m.functionName}, ${m.startingPosition}, ${m.startingPositionTimestamp ?? null}, ${m.batchSize},
        ${m.maximumBatchingWindowInSeconds * 1000}, ${m.maximumRetryAttempts}, ${m.maximumRecordAgeInSeconds}, ${m.bisectBatchOnFunctionError},
        ${m.reportBatchItemFailures}, ${m.onFailure}, ${m.enabled}, ${m.parallelizationFactor}, ${m.tumblingWindowInSeconds})
      returning *`.execute(tx);
    // the shard rows are locked so no put commits between reading LATEST and the checkpoint
    await sql`
      insert into ledger.stream_checkpoints (mapping_id, stream_name, shard_id, lane, sequence_number)
      select ${id}::uuid, h.stream_name, h.shard_id, lane,
        case ${m.startingPosition}
          when 'LATEST' then h.last_sequence_number
          when 'TRIM_HORIZON' then 0
          else coalesce((select max(r.sequence_number) from ledger.stream_records r
            where r.stream_name = h.stream_name and r.shard_id = h.shard_id and r.arrived_at < ${m.startingPositionTimestamp ?? null}::timestamptz), 0)
        end
      from (select * from ledger.stream_shards where stream_name = ${m.streamName} order by shard_id for share) h
      cross join generate_series(0, ${m.parallelizationFactor - 1}::int) as lane`.execute(tx);
    const created = toMapping(rows[0] as MappingRow);
    await appendChange(tx, {
      resourceType: STREAM_MAPPING_CHANGES,
      resourceName: id,
      action: 'created',
      actor: by.actor,
      requestId: by.requestId,
      data: { before: null, after: streamMappingDefinition(created) },
      expectedSeq: 0,
    });
    await sql`select pg_notify(${STREAM_RECORDS_CHANNEL}, ${m.streamName})`.execute(tx);
    return created;
  });
}

/**
 * Lambda's one mapping per stream and function (the Lambda wire asks for it; GraphQL may map
 * a stream to a function twice, say a paused mapping beside a live one): under a
 * transaction-level advisory lock on the pair, so of concurrent creates only one passes.
 */
async function refuseDuplicateStreamMapping(tx: Executor, streamName: string, functionName: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`stream-mapping:${streamName}:${functionName}`}, 0))`.execute(tx);
  const existing = await listStreamMappings(tx, { streamName, functionName });
  if (existing[0]) {
    throw new LedgerError(
      'EventSourceMappingExists',
      `An event source mapping of stream ${streamName} to function ${functionName} already exists: update or delete the mapping with UUID ${existing[0].id}`,
      { uuid: existing[0].id },
    );
  }
}

export async function getStreamMapping(db: Executor, id: string): Promise<StreamMapping | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<MappingRow>`select * from ledger.stream_mappings where id = ${id}::uuid`.execute(db);
  return rows[0] ? toMapping(rows[0]) : null;
}

export async function listStreamMappings(db: Executor, filter: { streamName?: string | null; functionName?: string | null } = {}): Promise<StreamMapping[]> {
  const { rows } = await sql<MappingRow>`
    select * from ledger.stream_mappings
    where (${filter.streamName ?? null}::text is null or stream_name = ${filter.streamName ?? null})
      and (${filter.functionName ?? null}::text is null or function_name = ${filter.functionName ?? null})
    order by created_at, id`.execute(db);
  return rows.map(toMapping);
}

/**
 * Applies a partial change and records it in the same transaction: `enabled` or `disabled`
 * when that is all that changed, else `updated` with the settings before and after; a change
 * that changes nothing writes nothing.
 */
export async function updateStreamMapping(db: Executor, id: string, patch: unknown, by: ChangeContext = SYSTEM): Promise<StreamMapping> {
  const p = parse(streamMappingUpdateSchema, patch);
  if (!UUID.test(id)) throw mappingNotFound(id);
  return inTransaction(db, async (tx) => {
    const { rows: locked } = await sql<MappingRow>`select * from ledger.stream_mappings where id = ${id}::uuid for update`.execute(tx);
    if (!locked[0]) throw mappingNotFound(id);
    const before = toMapping(locked[0]);
    const next: StreamMapping = { ...before, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) };
    const d = streamMappingDiff(before, next);
    if (Object.keys(d.after).length === 0) return before;
    const set = (v: unknown) => v !== undefined;
    const { rows } = await sql<MappingRow>`
      update ledger.stream_mappings set
        batch_size = case when ${set(p.batchSize)} then ${p.batchSize ?? null}::int else batch_size end,
        max_batching_window_ms = case when ${set(p.maximumBatchingWindowInSeconds)} then ${p.maximumBatchingWindowInSeconds === undefined ? null : p.maximumBatchingWindowInSeconds * 1000}::int else max_batching_window_ms end,
        maximum_retry_attempts = case when ${set(p.maximumRetryAttempts)} then ${p.maximumRetryAttempts ?? null}::int else maximum_retry_attempts end,
        maximum_record_age_seconds = case when ${set(p.maximumRecordAgeInSeconds)} then ${p.maximumRecordAgeInSeconds ?? null}::int else maximum_record_age_seconds end,
        bisect_batch_on_function_error = case when ${set(p.bisectBatchOnFunctionError)} then ${p.bisectBatchOnFunctionError ?? null}::boolean else bisect_batch_on_function_error end,
        report_batch_item_failures = case when ${set(p.reportBatchItemFailures)} then ${p.reportBatchItemFailures ?? null}::boolean else report_batch_item_failures end,
        on_failure_destination = case when ${set(p.onFailure)} then ${p.onFailure ?? null}::text else on_failure_destination end,
        enabled = case when ${set(p.enabled)} then ${p.enabled ?? null}::boolean else enabled end,
        tumbling_window_seconds = case when ${set(p.tumblingWindowInSeconds)} then ${p.tumblingWindowInSeconds ?? null}::int else tumbling_window_seconds end,
        updated_at = now()
      where id = ${id}::uuid returning *`.execute(tx);
    const updated = toMapping(rows[0] as MappingRow);
    const onlyEnabled = Object.keys(d.after).length === 1 && 'enabled' in d.after;
    await appendChange(tx, {
      resourceType: STREAM_MAPPING_CHANGES,
      resourceName: id,
      action: onlyEnabled ? (updated.enabled ? 'enabled' : 'disabled') : 'updated',
      actor: by.actor,
      requestId: by.requestId,
      data: d,
    });
    await sql`select pg_notify(${STREAM_RECORDS_CHANNEL}, ${updated.streamName})`.execute(tx);
    return updated;
  });
}

/**
 * Deletes the mapping (its checkpoints go with it) and records it (`deleted`). A change
 * stream mapping goes only with its slot (db/change-streams.ts passes `changeStream`), or
 * the slot would hold WAL forever.
 */
export async function deleteStreamMapping(db: Executor, id: string, by: ChangeContext = SYSTEM, o: { changeStream?: boolean } = {}): Promise<StreamMapping> {
  if (!UUID.test(id)) throw mappingNotFound(id);
  return inTransaction(db, async (tx) => {
    const { rows } = await sql<MappingRow>`
      delete from ledger.stream_mappings where id = ${id}::uuid and (source_table is null or ${o.changeStream ?? false}) returning *`.execute(tx);
    if (!rows[0]) {
      if (await getStreamMapping(tx, id)) throw new LedgerError('InvalidParameter', `${id} is a change stream mapping: delete it with deleteChangeStreamEventSourceMapping, which drops its slot`);
      throw mappingNotFound(id);
    }
    const deleted = toMapping(rows[0]);
    await appendChange(tx, {
      resourceType: STREAM_MAPPING_CHANGES,
      resourceName: id,
      action: 'deleted',
      actor: by.actor,
      requestId: by.requestId,
      data: { before: streamMappingDefinition(deleted), after: null },
    });
    return deleted;
  });
}

// ---------------------------------------------------------------------------------
// checkpoints: what the poller reads and writes

export interface Checkpoint {
  mappingId: string;
  streamName: string;
  shardId: string;
  /** the lane of the shard's keys (0 without parallelization) */
  lane: number;
  /** every record (of the lane) up to this one is done */
  sequenceNumber: number;
  retryAttempts: number;
  /** a failed batch is retried up to here (a bisected half), or null: a full batch */
  retryLastSequenceNumber: number | null;
  /** the open tumbling window of the shard (lane) and its state; null: none */
  window: OpenWindow | null;
  /** the end of the last closed window: later records count from here on */
  windowClosedUntil: Date | null;
}

/** A tumbling window in progress: [start, end) and the state its last invocation returned. */
export interface OpenWindow {
  start: Date;
  end: Date;
  state: Record<string, unknown>;
  /** the state passed its limit: the next invocation ends the window early */
  terminatedEarly: boolean;
}

interface WindowColumns {
  window_start: Date | null;
  window_end: Date | null;
  window_state: Record<string, unknown> | null;
  window_terminated_early: boolean;
  window_closed_until: Date | null;
}

const windowOf = (r: WindowColumns): Pick<Checkpoint, 'window' | 'windowClosedUntil'> => ({
  window:
    r.window_start && r.window_end && r.window_state
      ? { start: r.window_start, end: r.window_end, state: r.window_state, terminatedEarly: r.window_terminated_early }
      : null,
  windowClosedUntil: r.window_closed_until,
});

export interface ShardToPoll extends Checkpoint {
  mapping: StreamMapping;
  /** the function's latest version; null when it was deleted */
  functionVersion: number | null;
  /** the shard has records after the checkpoint */
  behind: boolean;
}

/** Shards of enabled mappings that no live batch holds and whose retry (if any) is due. */
export async function listShardsToPoll(db: Executor): Promise<ShardToPoll[]> {
  const { rows } = await sql<
    MappingRow &
      WindowColumns & { shard_id: string; lane: number; sequence_number: string; retry_attempts: number; retry_last_sequence_number: string | null; latest_version: number | null; last: string }
  >`
    select m.*, c.shard_id, c.lane, c.sequence_number, c.retry_attempts, c.retry_last_sequence_number, h.last_sequence_number as last,
      c.window_start, c.window_end, c.window_state, c.window_terminated_early, c.window_closed_until,
      case when f.deleted_at is null then f.latest_version end as latest_version
    from ledger.stream_checkpoints c
    join ledger.stream_mappings m on m.id = c.mapping_id
    join ledger.stream_shards h on h.stream_name = c.stream_name and h.shard_id = c.shard_id
    join ledger.functions f on f.name = m.function_name
    where m.enabled and (c.held_until is null or c.held_until < now()) and (c.retry_at is null or c.retry_at <= now())
      and (h.last_sequence_number > c.sequence_number
        -- an open tumbling window that is due its final invocation
        or (c.window_start is not null and (c.window_end <= now() or c.window_terminated_early or m.tumbling_window_seconds = 0)))
    order by m.created_at, m.id, c.shard_id, c.lane`.execute(db);
  return rows.map((r) => ({
    mapping: toMapping(r),
    mappingId: r.id,
    streamName: r.stream_name,
    shardId: r.shard_id,
    lane: r.lane,
    sequenceNumber: Number(r.sequence_number),
    retryAttempts: r.retry_attempts,
    retryLastSequenceNumber: r.retry_last_sequence_number === null ? null : Number(r.retry_last_sequence_number),
    functionVersion: r.latest_version,
    behind: BigInt(r.last) > BigInt(r.sequence_number),
    ...windowOf(r),
  }));
}

/**
 * In the receiving transaction: locks the checkpoint if the mapping is still enabled, no
 * live batch holds the shard, and its retry is due; null otherwise (another worker took
 * it: SKIP LOCKED). `now` is the transaction's clock.
 */
export async function lockCheckpoint(tx: Executor, mappingId: string, shardId: string, lane: number): Promise<(Checkpoint & { now: Date }) | null> {
  const { rows } = await sql<WindowColumns & { stream_name: string; sequence_number: string; retry_attempts: number; retry_last_sequence_number: string | null; now: Date }>`
    select c.stream_name, c.sequence_number, c.retry_attempts, c.retry_last_sequence_number, now() as now,
      c.window_start, c.window_end, c.window_state, c.window_terminated_early, c.window_closed_until
    from ledger.stream_checkpoints c join ledger.stream_mappings m on m.id = c.mapping_id
    where c.mapping_id = ${mappingId}::uuid and c.shard_id = ${shardId} and c.lane = ${lane} and m.enabled
      and (c.held_until is null or c.held_until < now()) and (c.retry_at is null or c.retry_at <= now())
    for no key update of c skip locked`.execute(tx);
  const r = rows[0];
  if (!r) return null;
  return {
    mappingId,
    shardId,
    lane,
    streamName: r.stream_name,
    sequenceNumber: Number(r.sequence_number),
    retryAttempts: r.retry_attempts,
    retryLastSequenceNumber: r.retry_last_sequence_number === null ? null : Number(r.retry_last_sequence_number),
    ...windowOf(r),
    now: r.now,
  };
}

/** The shard is held by a batch's poll invocation until its lease ends; the batch is recorded. */
export async function holdShard(
  tx: Executor,
  b: {
    mappingId: string;
    streamName: string;
    shardId: string;
    lane: number;
    invocationId: string;
    leaseMs: number;
    sequenceNumbers: readonly number[];
    /** the checkpoint the batch starts from: an empty batch (a window's final invocation) names the range after it, which holds no record */
    from: number;
    /** the tumbling window the batch carries */
    window?: { start: Date; end: Date; isFinalInvokeForWindow: boolean; isWindowTerminatedEarly: boolean } | null;
  },
): Promise<void> {
  const w = b.window ?? null;
  await sql`
    with hold as (
      update ledger.stream_checkpoints set held_by = ${b.invocationId}::uuid, held_until = now() + make_interval(secs => ${b.leaseMs / 1000}), updated_at = now()
      where mapping_id = ${b.mappingId}::uuid and shard_id = ${b.shardId} and lane = ${b.lane}
    )
    insert into ledger.stream_batches (invocation_id, mapping_id, stream_name, shard_id, lane, first_sequence_number, last_sequence_number,
      record_count, sequence_numbers, window_start, window_end, final_invoke_for_window, window_terminated_early)
    values (${b.invocationId}::uuid, ${b.mappingId}::uuid, ${b.streamName}, ${b.shardId}, ${b.lane}, ${b.sequenceNumbers[0] ?? b.from + 1},
      ${b.sequenceNumbers.at(-1) ?? b.from}, ${b.sequenceNumbers.length}, ${b.sequenceNumbers.map(String)}::bigint[],
      ${w?.start ?? null}::timestamptz, ${w?.end ?? null}::timestamptz, ${w?.isFinalInvokeForWindow ?? null}::boolean, ${w?.isWindowTerminatedEarly ?? null}::boolean)`.execute(tx);
}

/** Heartbeat: a batch waiting for a runtime thread keeps its shard. */
export async function extendShardHolds(db: Executor, invocationIds: readonly string[], graceMs: number): Promise<void> {
  if (invocationIds.length === 0) return;
  await sql`
    update ledger.stream_checkpoints set held_until = greatest(held_until, now() + make_interval(secs => ${graceMs / 1000}))
    where held_by = any(${invocationIds}::uuid[])`.execute(db);
}

export type CheckpointMoveReason = 'processed' | 'partial' | 'on_failure';

/**
 * Ends a batch's hold on its shard, only if it still holds it (a batch that outlived its
 * lease has lost the shard to another and changes nothing: returns false). The
 * checkpoint moves from `from` to `to` (a move is recorded with the invocation and the
 * reason); with `retry`, what is left of the batch is tried again from `retry.delayMs`
 * on (up to `retry.lastSeq`: a bisected half), else the retry state is cleared.
 */
export async function settleShard(
  tx: Executor,
  s: {
    invocationId: string;
    mappingId: string;
    shardId: string;
    lane: number;
    from: number;
    to: number;
    reason: CheckpointMoveReason;
    retry: { attempts: number; lastSeq: number | null; delayMs: number } | null;
    /**
     * the tumbling window after the batch: `open` stores it with its state, `closed` ends
     * it (later records count from `until` on), absent: unchanged
     */
    window?: { open: OpenWindow } | { closed: { until: Date } };
  },
): Promise<boolean> {
  const w = s.window;
  const open = w && 'open' in w ? w.open : null;
  const closed = w && 'closed' in w ? w.closed : null;
  const { rows } = await sql<{ n: number }>`
    with moved as (
      update ledger.stream_checkpoints set sequence_number = ${s.to}, held_by = null, held_until = null,
        retry_attempts = ${s.retry?.attempts ?? 0}, retry_last_sequence_number = ${s.retry?.lastSeq ?? null}::bigint,
        retry_at = case when ${s.retry !== null} then now() + make_interval(secs => ${(s.retry?.delayMs ?? 0) / 1000}) end,
        window_start = case when ${w === undefined} then window_start when ${open !== null} then ${open?.start ?? null}::timestamptz end,
        window_end = case when ${w === undefined} then window_end when ${open !== null} then ${open?.end ?? null}::timestamptz end,
        window_state = case when ${w === undefined} then window_state when ${open !== null} then ${open === null ? null : JSON.stringify(open.state)}::jsonb end,
        window_terminated_early = case when ${w === undefined} then window_terminated_early else ${open?.terminatedEarly ?? false}::boolean end,
        window_closed_until = case when ${closed !== null} then ${closed?.until ?? null}::timestamptz else window_closed_until end,
        updated_at = now()
      where mapping_id = ${s.mappingId}::uuid and shard_id = ${s.shardId} and lane = ${s.lane} and held_by = ${s.invocationId}::uuid
        and sequence_number = ${s.from}
      returning stream_name
    ), rec as (
      insert into ledger.stream_checkpoint_moves (mapping_id, stream_name, shard_id, lane, invocation_id, from_sequence_number, to_sequence_number, reason)
      select ${s.mappingId}::uuid, stream_name, ${s.shardId}, ${s.lane}, ${s.invocationId}::uuid, ${s.from}, ${s.to}, ${s.reason}
      from moved where ${s.to}::bigint > ${s.from}::bigint
    )
    select count(*)::int as n from moved`.execute(tx);
  return (rows[0]?.n ?? 0) > 0;
}

export async function listCheckpoints(db: Executor, mappingId: string): Promise<Checkpoint[]> {
  const { rows } = await sql<
    WindowColumns & { stream_name: string; shard_id: string; lane: number; sequence_number: string; retry_attempts: number; retry_last_sequence_number: string | null }
  >`
    select stream_name, shard_id, lane, sequence_number, retry_attempts, retry_last_sequence_number,
      window_start, window_end, window_state, window_terminated_early, window_closed_until from ledger.stream_checkpoints
    where mapping_id = ${mappingId}::uuid order by shard_id, lane`.execute(db);
  return rows.map((r) => ({
    mappingId,
    streamName: r.stream_name,
    shardId: r.shard_id,
    lane: r.lane,
    sequenceNumber: Number(r.sequence_number),
    retryAttempts: r.retry_attempts,
    retryLastSequenceNumber: r.retry_last_sequence_number === null ? null : Number(r.retry_last_sequence_number),
    ...windowOf(r),
  }));
}

export interface RecordDelivery {
  invocationId: string;
  status: string;
  firstSequenceNumber: number;
  lastSequenceNumber: number;
  checkpointReason: CheckpointMoveReason | null;
  checkpointTo: number | null;
  deliveredAt: Date;
}

/** Which poll invocations delivered a record, in order (audit.stream_deliveries). */
export async function deliveriesOfRecord(db: Executor, streamName: string, shardId: string, sequenceNumber: number): Promise<RecordDelivery[]> {
  const { rows } = await sql<{
    invocation_id: string;
    status: string;
    first_sequence_number: string;
    last_sequence_number: string;
    checkpoint_reason: CheckpointMoveReason | null;
    checkpoint_to: string | null;
    delivered_at: Date;
  }>`
    select invocation_id, status, first_sequence_number, last_sequence_number, checkpoint_reason, checkpoint_to, delivered_at
    from audit.stream_deliveries
    where stream_name = ${streamName} and shard_id = ${shardId} and ${sequenceNumber}::bigint between first_sequence_number and last_sequence_number
      and (sequence_numbers is null or ${sequenceNumber}::bigint = any(sequence_numbers))
    order by delivered_at, invocation_id`.execute(db);
  return rows.map((r) => ({
    invocationId: r.invocation_id,
    status: r.status,
    firstSequenceNumber: Number(r.first_sequence_number),
    lastSequenceNumber: Number(r.last_sequence_number),
    checkpointReason: r.checkpoint_reason,
    checkpointTo: r.checkpoint_to === null ? null : Number(r.checkpoint_to),
    deliveredAt: r.delivered_at,
  }));
}

// ---------------------------------------------------------------------------------
// operating a stream (`invoke-ledger streams`, apps/cli/streams.ts): deleting it, and where
// each shard and each mapping's checkpoint stand

/**
 * Deletes a stream with its shards and records. Refused (InvalidParameter) while any event
 * source mapping reads it, a change stream's included: delete those first. A mapping
 * created concurrently is caught by its foreign key (the delete waits for its insert and
 * then fails), and refused the same way. The history of its batches and checkpoint moves
 * stays, as the poll invocations in the ledger do.
 */
export async function deleteStream(db: Db, name: string): Promise<Stream> {
  const inUse = (ids: readonly string[]) =>
    new LedgerError('InvalidParameter', `stream ${name} is read by event source mapping${ids.length === 1 ? '' : 's'} ${ids.join(', ')}: delete them first`, { mappings: ids });
  try {
    return await db.transaction().execute(async (tx) => {
      const stream = await requireStream(tx, name);
      const mappings = await listStreamMappings(tx, { streamName: name });
      if (mappings.length > 0) throw inUse(mappings.map((m) => m.id));
      await sql`delete from ledger.streams where name = ${name}`.execute(tx);
      return stream;
    });
  } catch (e) {
    if ((e as { code?: unknown }).code !== '23503') throw e;
    throw inUse((await listStreamMappings(db, { streamName: name })).map((m) => m.id));
  }
}

/** A shard's retained records: the first and last sequence numbers still kept (null when none is). */
export interface ShardRetention {
  shardId: string;
  firstRetainedSequenceNumber: number | null;
  lastRetainedSequenceNumber: number | null;
}

export async function shardRetention(db: Executor, streamName: string): Promise<ShardRetention[]> {
  const { rows } = await sql<{ shard_id: string; first: string | null; last: string | null }>`
    select h.shard_id,
      (select min(r.sequence_number) from ledger.stream_records r where r.stream_name = h.stream_name and r.shard_id = h.shard_id) as first,
      (select max(r.sequence_number) from ledger.stream_records r where r.stream_name = h.stream_name and r.shard_id = h.shard_id) as last
    from ledger.stream_shards h where h.stream_name = ${streamName} order by h.shard_id`.execute(db);
  return rows.map((r) => ({ shardId: r.shard_id, firstRetainedSequenceNumber: r.first === null ? null : Number(r.first), lastRetainedSequenceNumber: r.last === null ? null : Number(r.last) }));
}

/** Where one mapping's lane of a shard stands: its checkpoint, and how many retained records of its lane lie beyond it. */
export interface CheckpointLag {
  mappingId: string;
  shardId: string;
  lane: number;
  sequenceNumber: number;
  /** retained records after the checkpoint that this lane delivers (its partition keys) */
  lag: number;
  retryAttempts: number;
  heldBy: string | null;
}

/** Every checkpoint of every mapping of a stream, with its lag counted exactly (one count per checkpoint: an operator's question, not a hot path). */
export async function checkpointLags(db: Executor, streamName: string): Promise<CheckpointLag[]> {
  const { rows } = await sql<{ mapping_id: string; shard_id: string; lane: number; sequence_number: string; lag: number; retry_attempts: number; held_by: string | null }>`
    select c.mapping_id, c.shard_id, c.lane, c.sequence_number, c.retry_attempts,
      case when c.held_until > now() then c.held_by end as held_by,
      (select count(*)::int from ledger.stream_records r
        where r.stream_name = c.stream_name and r.shard_id = c.shard_id and r.sequence_number > c.sequence_number
          and (m.parallelization_factor = 1 or ledger.stream_lane(r.partition_key, m.parallelization_factor) = c.lane)) as lag
    from ledger.stream_checkpoints c join ledger.stream_mappings m on m.id = c.mapping_id
    where c.stream_name = ${streamName}
    order by m.created_at, m.id, c.shard_id, c.lane`.execute(db);
  return rows.map((r) => ({
    mappingId: r.mapping_id,
    shardId: r.shard_id,
    lane: r.lane,
    sequenceNumber: Number(r.sequence_number),
    lag: r.lag,
    retryAttempts: r.retry_attempts,
    heldBy: r.held_by,
  }));
}
