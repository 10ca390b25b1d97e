// `invoke-ledger streams …`: native streams (docs/streams.md#the-cli), over db/streams.ts:
// create, list, describe (each shard's retained sequence range, each mapping's checkpoints
// and lag), put one record, delete. Mappings of a stream are made through GraphQL or the
// Lambda API (docs/streams.md); this command shows where they stand.
import {
  checkpointLags,
  createStream,
  deleteStream,
  formatSequenceNumber,
  getStream,
  listStreamMappings,
  listStreams,
  putRecord,
  shardRetention,
  type Stream,
} from '../../db/streams.ts';
import { CliError, type Io } from './cli.ts';
import { integer, withCommandDb } from './db-command.ts';

export interface CreateStreamOptions {
  shards?: string;
  retentionHours?: string;
  json?: boolean;
}

export interface PutOptions {
  partitionKey: string;
  data?: string;
  json?: boolean;
}


const seqOrDash = (n: number | null) => (n === null ? '-' : formatSequenceNumber(n));

export async function createStreamCommand(dbUrl: string, name: string, o: CreateStreamOptions, io: Io): Promise<number> {
  const input = { name, shardCount: integer(o.shards, '--shards') ?? 1, ...(o.retentionHours !== undefined ? { retentionHours: integer(o.retentionHours, '--retention-hours') } : {}) };
  return withCommandDb(dbUrl, 'streams', async (db) => {
    const s = await createStream(db, input);
    io.out.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : `created stream ${s.name}: ${s.shardCount} shard${s.shardCount > 1 ? 's' : ''}, retention ${s.retentionHours} h (${s.arn})\n`);
    return 0;
  });
}

export async function listStreamsCommand(dbUrl: string, o: { json?: boolean }, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'streams', async (db) => {
    const streams = await listStreams(db);
    const mappings = await listStreamMappings(db);
    const count = (s: Stream) => mappings.filter((m) => m.streamName === s.name).length;
    if (o.json) {
      io.out.write(`${JSON.stringify(streams.map((s) => ({ ...s, mappings: count(s) })), null, 2)}\n`);
      return 0;
    }
    io.out.write(`${['NAME', 'SHARDS', 'RETENTION_HOURS', 'RECORDS_PUT', 'MAPPINGS', 'CREATED'].join('\t')}\n`);
    for (const s of streams) {
      // sequence numbers count on per shard from 1: their sum is how many records were ever put
      const put = s.shards.reduce((n, h) => n + h.lastSequenceNumber, 0);
      io.out.write(`${[s.name, s.shardCount, s.retentionHours, put, count(s), s.createdAt.toISOString()].join('\t')}\n`);
    }
    return 0;
  });
}

export async function describeStreamCommand(dbUrl: string, name: string, o: { json?: boolean }, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'streams', async (db) => {
    const stream = await getStream(db, name);
    if (!stream) throw new CliError(`StreamNotFound: Stream not found: ${name}`);
    const retained = new Map((await shardRetention(db, name)).map((r) => [r.shardId, r]));
    const mappings = await listStreamMappings(db, { streamName: name });
    const lags = await checkpointLags(db, name);
    const shards = stream.shards.map((h) => ({
      shardId: h.shardId,
      startingHashKey: h.startingHashKey,
      endingHashKey: h.endingHashKey,
      firstRetainedSequenceNumber: seqOrDash(retained.get(h.shardId)?.firstRetainedSequenceNumber ?? null),
      lastRetainedSequenceNumber: seqOrDash(retained.get(h.shardId)?.lastRetainedSequenceNumber ?? null),
      lastSequenceNumber: seqOrDash(h.lastSequenceNumber === 0 ? null : h.lastSequenceNumber),
    }));
    const byMapping = mappings.map((m) => ({
      id: m.id,
      functionName: m.functionName,
      enabled: m.enabled,
      startingPosition: m.startingPosition,
      batchSize: m.batchSize,
      parallelizationFactor: m.parallelizationFactor,
      checkpoints: lags
        .filter((c) => c.mappingId === m.id)
        .map((c) => ({ shardId: c.shardId, lane: c.lane, sequenceNumber: formatSequenceNumber(c.sequenceNumber), lag: c.lag, retryAttempts: c.retryAttempts, heldBy: c.heldBy })),
    }));
    if (o.json) {
      const { shards: _, ...rest } = stream;
      io.out.write(`${JSON.stringify({ ...rest, shards, mappings: byMapping }, null, 2)}\n`);
      return 0;
    }
    io.out.write(`stream ${stream.name} (${stream.arn}): ${stream.shardCount} shard${stream.shardCount > 1 ? 's' : ''}, retention ${stream.retentionHours} h, created ${stream.createdAt.toISOString()}\n\n`);
    io.out.write(`${['SHARD', 'HASH_KEY_RANGE', 'FIRST_RETAINED', 'LAST'].join('\t')}\n`);
    for (const h of shards) io.out.write(`${[h.shardId, `${h.startingHashKey}-${h.endingHashKey}`, h.firstRetainedSequenceNumber, h.lastSequenceNumber].join('\t')}\n`);
    io.out.write(`\n${['MAPPING', 'FUNCTION', 'ENABLED', 'SHARD', 'LANE', 'CHECKPOINT', 'LAG', 'RETRIES', 'HELD_BY'].join('\t')}\n`);
    for (const m of byMapping) {
      for (const c of m.checkpoints) io.out.write(`${[m.id, m.functionName, m.enabled, c.shardId, c.lane, c.sequenceNumber, c.lag, c.retryAttempts, c.heldBy ?? '-'].join('\t')}\n`);
    }
    if (byMapping.length === 0) io.out.write('(no event source mappings)\n');
    return 0;
  });
}

async function readAll(input: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** The record's data: --data as UTF-8 text, else every byte of stdin (which must not be a terminal). */
export async function putRecordCommand(dbUrl: string, name: string, o: PutOptions, io: Io, stdin: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): Promise<number> {
  let data: Buffer;
  if (o.data !== undefined) data = Buffer.from(o.data, 'utf8');
  else if (stdin.isTTY) throw new CliError('give the data with --data <text>, or pipe it on stdin');
  else data = await readAll(stdin);
  return withCommandDb(dbUrl, 'streams', async (db) => {
    const r = await putRecord(db, name, { partitionKey: o.partitionKey, data });
    io.out.write(o.json ? `${JSON.stringify(r)}\n` : `${r.shardId}\t${r.sequenceNumber}\n`);
    return 0;
  });
}

export async function deleteStreamCommand(dbUrl: string, name: string, io: Io): Promise<number> {
  return withCommandDb(dbUrl, 'streams', async (db) => {
    const s = await deleteStream(db, name);
    io.out.write(`deleted stream ${s.name} with its records\n`);
    return 0;
  });
}
