// Change streams from PostgreSQL tables (docs/streams.md, "Change streams from PostgreSQL
// tables"), the DynamoDB Streams analogue. A mapping is a stream of the ledger's own (only
// this mapping reads it), a stream mapping on it, and a change source: a publication of
// the table and a logical replication slot (pgoutput). The worker appends each source
// transaction's changes to the stream in commit order (appendChangeTransaction) and
// confirms the slot only up to where every appended change has been processed
// (confirmableLsn), so the stream mapping machinery does the rest.
import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { openConnectionUrl, sealUrl } from './brokers.ts';
import type { ChangeContext } from './control-plane.ts';
import { LedgerError } from './errors.ts';
import { FUNCTION_NAME, getFunction } from './functions.ts';
import { UUID } from './invocations.ts';
import { parse } from './queues/schemas.ts';
import type { Database, Db, Executor } from './schema.ts';
import {
  appendRecords,
  createStream,
  createStreamMapping,
  deleteStreamMapping,
  getStreamMapping,
  requireStream,
  type Stream,
  type StreamMapping,
} from './streams.ts';

/** Slots and publications of change streams are named with this prefix (docs/streams.md). */
export const CHANGE_SLOT_PREFIX = 'ledger_cs_';
export const STREAM_VIEW_TYPES = ['KEYS_ONLY', 'NEW_IMAGE', 'OLD_IMAGE', 'NEW_AND_OLD_IMAGES'] as const;
export type StreamViewType = (typeof STREAM_VIEW_TYPES)[number];
export const CHANGE_EVENT_SOURCE = 'aws:dynamodb';
export const CHANGE_STREAM_ARN_PREFIX = 'arn:aws:dynamodb:local:000000000000:table/';

const TABLE = /^(?:([A-Za-z_][A-Za-z0-9_$]{0,62})\.)?([A-Za-z_][A-Za-z0-9_$]{0,62})$/;

const destination = z
  .string()
  .max(2048)
  .refine((d) => /^function:[A-Za-z0-9_-]{1,64}$/.test(d) || /^https?:\/\/\S+$/.test(d), 'a destination is function:<name> or an http(s) URL');

export const changeStreamMappingInputSchema = z
  .object({
    /** `table` (schema public) or `schema.table`, unquoted identifiers */
    table: z.string().regex(TABLE, 'table is table or schema.table (unquoted identifiers)'),
    functionName: z.string().regex(FUNCTION_NAME, `functionName must match ${FUNCTION_NAME.source}`),
    streamViewType: z.enum(STREAM_VIEW_TYPES).default('NEW_AND_OLD_IMAGES'),
    shardCount: z.number().int().min(1).max(64).default(4),
    retentionHours: z.number().int().min(1).max(8760).default(24),
    batchSize: z.number().int().min(1).max(10_000).default(100),
    maximumBatchingWindowInSeconds: z.number().int().min(0).max(300).default(0),
    maximumRetryAttempts: z.number().int().min(-1).max(10_000).default(-1),
    maximumRecordAgeInSeconds: z
      .number()
      .int()
      .refine((n) => n === -1 || (n >= 60 && n <= 604_800), 'maximumRecordAgeInSeconds is -1 or 60 … 604800')
      .default(-1),
    bisectBatchOnFunctionError: z.boolean().default(false),
    reportBatchItemFailures: z.boolean().default(false),
    onFailure: destination.nullable().default(null),
    enabled: z.boolean().default(true),
    parallelizationFactor: z.number().int().min(1).max(10).default(1),
    // Lambda's TumblingWindowInSeconds: windows by the source commit time (docs/streams.md, "Tumbling windows")
    tumblingWindowInSeconds: z.number().int().min(0).max(900).default(0),
    /** where the mapping starts: both mean the first change committed after creation (the slot has nothing older); kept as given, as Lambda answers it */
    startingPosition: z.enum(['TRIM_HORIZON', 'LATEST']).default('TRIM_HORIZON'),
    /**
     * the table is in another PostgreSQL database: its connection string (postgres://…),
     * sealed with LEDGER_SECRET_KEY as broker URLs are, never answered or logged; null: the ledger's own
     */
    sourceDatabaseUrl: z
      .string()
      .max(4096)
      .refine((u) => {
        try {
          return ['postgres:', 'postgresql:'].includes(new URL(u).protocol);
        } catch {
          return false;
        }
      }, 'sourceDatabaseUrl must be a postgres:// or postgresql:// URL')
      .nullable()
      .default(null),
  })
  .strict();
export type ChangeStreamMappingInput = z.input<typeof changeStreamMappingInputSchema>;

export interface ChangeSource {
  mappingId: string;
  streamName: string;
  schemaName: string;
  tableName: string;
  keyColumns: string[];
  streamViewType: StreamViewType;
  slotName: string;
  publicationName: string;
  /** every source transaction committed at or before this LSN is in the stream */
  ingestedLsn: string;
  /** host:port/database of the source database, without credentials; null: the ledger's own */
  endpoint: string | null;
}

export interface ChangeStreamMapping extends StreamMapping {
  source: ChangeSource;
}

interface SourceRow {
  mapping_id: string;
  stream_name: string;
  schema_name: string;
  table_name: string;
  key_columns: string[];
  stream_view_type: StreamViewType;
  slot_name: string;
  publication_name: string;
  ingested_lsn: string;
  source_endpoint: string | null;
}

const toSource = (r: SourceRow): ChangeSource => ({
  mappingId: r.mapping_id,
  streamName: r.stream_name,
  schemaName: r.schema_name,
  tableName: r.table_name,
  keyColumns: r.key_columns,
  streamViewType: r.stream_view_type,
  slotName: r.slot_name,
  publicationName: r.publication_name,
  ingestedLsn: r.ingested_lsn,
  endpoint: r.source_endpoint,
});

// ---------------------------------------------------------------------------------
// source tables in another database (docs/streams.md, "Source tables in another database")

const CHANGE_SOURCE_URL = 'change stream source';

/** host:port/database of a postgres:// URL: what people see, never user info or options. */
export function sourceEndpointOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '5432'}/${decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default)'}`;
}

/** The message without the URL, its password or its user info, however they were spelled. */
export function redactSourceUrl(message: string, url: string): string {
  const secrets = new Set<string>([url]);
  try {
    const u = new URL(url);
    for (const p of [u.password, decodeURIComponent(u.password)]) if (p) secrets.add(p);
    if (u.username || u.password) secrets.add(`${u.username}:${u.password}`);
    for (const [, v] of u.searchParams) if (v.length >= 4) secrets.add(v);
  } catch {
    // not a URL: the whole string is removed
  }
  let out = message;
  for (const x of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(x).join('(redacted)');
  return out;
}

/** An error from the source database as one that names its endpoint only. */
function sourceError(e: unknown, url: string): LedgerError {
  if (e instanceof LedgerError) return new LedgerError(e.code, redactSourceUrl(e.message, url), {});
  let endpoint = '(source database)';
  try {
    endpoint = sourceEndpointOf(url);
  } catch {
    // keep the placeholder
  }
  return new LedgerError('InvalidParameter', `source database ${endpoint}: ${redactSourceUrl((e as Error)?.message ?? String(e), url)}`);
}

/** A short-lived connection to a source database, as its login (which owns the table and may replicate). */
async function withSourceDb<T>(url: string, fn: (src: Db) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 5_000, application_name: 'invoke-ledger change streams' });
  pool.on('error', () => {});
  const src = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    return await fn(src);
  } catch (e) {
    throw sourceError(e, url);
  } finally {
    await src.destroy().catch(() => {});
  }
}

/** The mapping's source connection string, opened with the server's secret key; null for a table in the ledger's database. */
export async function openChangeSourceUrl(db: Executor, mappingId: string, secretKey: string | null | undefined): Promise<string | null> {
  const { rows } = await sql<{ connection_sealed: Buffer | null }>`
    select connection_sealed from ledger.change_sources where mapping_id = ${mappingId}::uuid`.execute(db);
  const sealed = rows[0]?.connection_sealed;
  if (!sealed) return null;
  return openConnectionUrl({ id: mappingId, connectionFormat: 'aes-256-gcm', connectionSealed: sealed }, secretKey, CHANGE_SOURCE_URL);
}

export const changeStreamArn = (s: Pick<ChangeSource, 'schemaName' | 'tableName' | 'mappingId'>) =>
  `${CHANGE_STREAM_ARN_PREFIX}${s.schemaName}.${s.tableName}/stream/${s.mappingId}`;

/** An LSN (`X/Y`) as a 64-bit integer, and back. */
export const lsnToBigInt = (lsn: string): bigint => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi ?? '0'}`) << 32n) | BigInt(`0x${lo ?? '0'}`);
};
export const bigIntToLsn = (n: bigint): string => `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;

/**
 * The replica identity a view type needs: the old image of an update or a delete is sent
 * by pgoutput only with REPLICA IDENTITY FULL; the keys of a delete come with DEFAULT (the
 * primary key) too. Returns why the table cannot give the images, or null.
 */
export function whyNotReplicaIdentity(viewType: StreamViewType, identity: 'd' | 'f' | 'i' | 'n'): string | null {
  const needsOld = viewType === 'OLD_IMAGE' || viewType === 'NEW_AND_OLD_IMAGES';
  if (needsOld && identity !== 'f') return `${viewType} needs the old row of updates and deletes: ALTER TABLE … REPLICA IDENTITY FULL`;
  if (identity !== 'd' && identity !== 'f') return `${viewType} needs the primary key of deleted rows: REPLICA IDENTITY DEFAULT (with a primary key) or FULL`;
  return null;
}

/**
 * Runs `fn` in a transaction as the login role (the application role cannot): creating a
 * publication needs the table's owner, a slot the REPLICATION attribute, ending another
 * session's walsender the same role (docs/streams.md says what the login role needs).
 */
async function asLoginRole<T>(db: Db, fn: (tx: Executor) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (tx) => {
    await sql`set local role none`.execute(tx);
    return fn(tx);
  });
}

/** Who made a mapping change; `system` for a direct library call. */
const SYSTEM: ChangeContext = { actor: 'system' };

/** `table` or `schema.table` as [schema, table], or null when it is neither. */
export function tableOf(name: string): [string, string] | null {
  const m = TABLE.exec(name);
  return m ? [m[1] ?? 'public', m[2] as string] : null;
}

/**
 * The richest view type the table's replica identity gives: NEW_AND_OLD_IMAGES with
 * REPLICA IDENTITY FULL, else NEW_IMAGE (the Lambda wire has no StreamViewType: DynamoDB
 * sets it on the table). Refuses a table that cannot be a source at all.
 */
export async function richestStreamViewType(db: Executor, name: string): Promise<StreamViewType> {
  const t = tableOf(name);
  if (!t) throw new LedgerError('InvalidParameter', 'table is table or schema.table (unquoted identifiers)');
  const { identity } = await describeTable(db, t[0], t[1]);
  return identity === 'f' ? 'NEW_AND_OLD_IMAGES' : 'NEW_IMAGE';
}

/** A change stream mapping of the table to the function, other than `except`: Lambda's one mapping per stream and function. */
async function existingChangeMapping(db: Executor, schema: string, table: string, functionName: string, except: string | null, endpoint: string | null = null): Promise<string | null> {
  const { rows } = await sql<{ id: string }>`
    select m.id from ledger.change_sources s join ledger.stream_mappings m on m.id = s.mapping_id
    where s.schema_name = ${schema} and s.table_name = ${table} and m.function_name = ${functionName} and (${except}::uuid is null or m.id <> ${except}::uuid)
      and s.source_endpoint is not distinct from ${endpoint}::text
    order by m.created_at, m.id limit 1`.execute(db);
  return rows[0]?.id ?? null;
}

const changeMappingExists = (schema: string, table: string, functionName: string, uuid: string) =>
  new LedgerError('EventSourceMappingExists', `A change stream mapping of table ${schema}.${table} to function ${functionName} already exists: update or delete the mapping with UUID ${uuid}`, { uuid });

/** The table's primary key columns and replica identity, or why it cannot be a source. */
/**
 * The ledger's own schemas, the auditor's views, restored archives and PostgreSQL's catalogs:
 * never a source. A change stream hands every row to a function, so mapping one of these
 * would let an admin key read the service's secrets (key hashes, sealed broker URLs) through
 * a function (docs/streams.md).
 */
const NOT_A_SOURCE = /^(ledger|audit|ledger_archive|information_schema|pg_.*)$/;
/** In another database the ledger's schema names are a user's own: only PostgreSQL's catalogs are refused there. */
const NOT_A_SOURCE_ELSEWHERE = /^(information_schema|pg_.*)$/;

async function describeTable(db: Executor, schema: string, table: string, ledgerDatabase = true): Promise<{ keyColumns: string[]; identity: 'd' | 'f' | 'i' | 'n' }> {
  // a connection string may name a ledger's database (this one's, through another login): it is refused as the ledger's own
  const isLedger =
    ledgerDatabase ||
    (await sql<{ ledger: boolean }>`select to_regclass('ledger.events') is not null and to_regclass('ledger.change_sources') is not null as ledger`.execute(db)).rows[0]?.ledger === true;
  if ((isLedger ? NOT_A_SOURCE : NOT_A_SOURCE_ELSEWHERE).test(schema)) {
    throw new LedgerError('InvalidParameter', `table ${schema}.${table} is not a source: change streams read application tables, not the ledger's own schemas or PostgreSQL's catalogs`);
  }
  const { rows } = await sql<{ relreplident: 'd' | 'f' | 'i' | 'n'; keys: string[] | null; relkind: string }>`
    select c.relreplident, c.relkind,
      (select array_agg(a.attname::text order by k.ord) from pg_index i
         cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
       where i.indrelid = c.oid and i.indisprimary) as keys
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relname = ${table}`.execute(db);
  const r = rows[0];
  if (!r || r.relkind !== 'r') throw new LedgerError('InvalidParameter', `table ${schema}.${table} does not exist (or is not a plain table)`);
  if (!r.keys || r.keys.length === 0) throw new LedgerError('InvalidParameter', `table ${schema}.${table} has no primary key: change streams need one (dynamodb.Keys, shard by key)`);
  return { keyColumns: r.keys, identity: r.relreplident };
}

/**
 * Creates the change stream mapping: checks the table (a primary key, a replica identity
 * that gives the asked images), creates its publication and slot (the slot's position is
 * where the stream starts: changes committed after creation), the stream, the stream
 * mapping and the change source. What was made is undone when a later step fails.
 */
export async function createChangeStreamMapping(
  db: Db,
  input: unknown,
  by: ChangeContext = SYSTEM,
  opts: { refuseDuplicate?: boolean; secretKey?: string | null } = {},
): Promise<ChangeStreamMapping> {
  const m = parse(changeStreamMappingInputSchema, input);
  const url = m.sourceDatabaseUrl;
  if (url === null) return createOn(db, db, m, null, by, opts);
  // never stored in plain text: without the server's key there is nothing to seal it with
  if (!opts.secretKey) throw new LedgerError('InvalidParameter', 'sourceDatabaseUrl is stored sealed with LEDGER_SECRET_KEY, and the server has none (docs/streams.md)');
  sealUrl(randomUUID(), 'check', opts.secretKey); // a key too short is refused before anything is made
  const endpoint = sourceEndpointOf(url);
  return withSourceDb(url, (src) => createOn(db, src, m, { url, endpoint, secretKey: opts.secretKey as string }, by, opts));
}

async function createOn(
  db: Db,
  src: Db,
  m: z.output<typeof changeStreamMappingInputSchema>,
  remote: { url: string; endpoint: string; secretKey: string } | null,
  by: ChangeContext,
  opts: { refuseDuplicate?: boolean },
): Promise<ChangeStreamMapping> {
  const [, schemaPart, tablePart] = TABLE.exec(m.table) as RegExpExecArray;
  const schema = schemaPart ?? 'public';
  const table = tablePart as string;
  const endpoint = remote?.endpoint ?? null;
  if (!(await getFunction(db, m.functionName))) throw new LedgerError('FunctionNotFound', `Function not found: ${m.functionName}`);
  const { keyColumns, identity } = await describeTable(src, schema, table, remote === null);
  if (opts.refuseDuplicate) {
    const existing = await existingChangeMapping(db, schema, table, m.functionName, null, endpoint);
    if (existing) throw changeMappingExists(schema, table, m.functionName, existing);
  }
  const why = whyNotReplicaIdentity(m.streamViewType, identity);
  if (why) throw new LedgerError('InvalidParameter', `table ${schema}.${table} has REPLICA IDENTITY ${({ d: 'DEFAULT', f: 'FULL', i: 'USING INDEX', n: 'NOTHING' } as const)[identity]}; ${why}`);
  const { rows: level } = await sql<{ wal_level: string }>`select current_setting('wal_level') as wal_level`.execute(src);
  if (level[0]?.wal_level !== 'logical') throw new LedgerError('InvalidParameter', `change streams need wal_level=logical on the server; it is ${level[0]?.wal_level}`);

  const token = randomUUID().replaceAll('-', '');
  const name = `${CHANGE_SLOT_PREFIX}${token}`;
  const streamName = `pg.${schema}.${table}.${token.slice(0, 8)}`.slice(0, 128);
  const undo: (() => Promise<unknown>)[] = [];
  try {
    await asLoginRole(src, (tx) => sql`create publication ${sql.id(name)} for table ${sql.id(schema, table)}`.execute(tx));
    undo.push(() => asLoginRole(src, (tx) => sql`drop publication if exists ${sql.id(name)}`.execute(tx)));
    // its own transaction: a logical slot cannot be created in a transaction that wrote
    const { rows: slot } = await asLoginRole(src, (tx) => sql<{ lsn: string }>`select lsn::text from pg_create_logical_replication_slot(${name}, 'pgoutput')`.execute(tx));
    undo.push(() => dropSlot(src, name));
    await createStream(db, { name: streamName, shardCount: m.shardCount, retentionHours: m.retentionHours });
    undo.push(() => sql`delete from ledger.streams where name = ${streamName}`.execute(db));
    const mapping = await createStreamMapping(db, {
      streamName,
      functionName: m.functionName,
      startingPosition: m.startingPosition,
      batchSize: m.batchSize,
      maximumBatchingWindowInSeconds: m.maximumBatchingWindowInSeconds,
      maximumRetryAttempts: m.maximumRetryAttempts,
      maximumRecordAgeInSeconds: m.maximumRecordAgeInSeconds,
      bisectBatchOnFunctionError: m.bisectBatchOnFunctionError,
      reportBatchItemFailures: m.reportBatchItemFailures,
      onFailure: m.onFailure,
      enabled: m.enabled,
      parallelizationFactor: m.parallelizationFactor,
      tumblingWindowInSeconds: m.tumblingWindowInSeconds,
    }, by);
    undo.push(() => deleteStreamMapping(db, mapping.id, by, { changeStream: true }));
    await db.transaction().execute(async (tx) => {
      if (opts.refuseDuplicate) {
        // a concurrent create of the same pair passed the check above too: under a lock on
        // the pair, the one that commits its source second sees the first and is undone
        await sql`select pg_advisory_xact_lock(hashtextextended(${`change-mapping:${endpoint ?? ''}:${schema}.${table}:${m.functionName}`}, 0))`.execute(tx);
        const existing = await existingChangeMapping(tx, schema, table, m.functionName, mapping.id, endpoint);
        if (existing) throw changeMappingExists(schema, table, m.functionName, existing);
      }
      await sql`update ledger.stream_mappings set source_table = ${`${schema}.${table}`} where id = ${mapping.id}::uuid`.execute(tx);
      // sealed for this mapping's id (a sealed URL copied onto another mapping does not open)
      const sealed = remote ? sealUrl(mapping.id, remote.url, remote.secretKey) : null;
      await sql`
        insert into ledger.change_sources (mapping_id, stream_name, schema_name, table_name, key_columns, stream_view_type, slot_name, publication_name, ingested_lsn,
          connection_format, connection_sealed, source_endpoint)
        values (${mapping.id}::uuid, ${streamName}, ${schema}, ${table}, ${keyColumns}::text[], ${m.streamViewType}, ${name}, ${name}, ${slot[0]?.lsn ?? '0/0'}::pg_lsn,
          ${sealed?.format ?? null}, ${sealed?.sealed ?? null}, ${endpoint})`.execute(tx);
    });
    return (await getChangeStreamMapping(db, mapping.id)) as ChangeStreamMapping;
  } catch (e) {
    for (const u of undo.reverse()) await u().catch(() => {});
    throw e;
  }
}

export async function getChangeSource(db: Executor, mappingId: string): Promise<ChangeSource | null> {
  if (!UUID.test(mappingId)) return null;
  const { rows } = await sql<SourceRow>`select *, ingested_lsn::text as ingested_lsn from ledger.change_sources where mapping_id = ${mappingId}::uuid`.execute(db);
  return rows[0] ? toSource(rows[0]) : null;
}

export async function getChangeStreamMapping(db: Executor, id: string): Promise<ChangeStreamMapping | null> {
  const [mapping, source] = await Promise.all([getStreamMapping(db, id), getChangeSource(db, id)]);
  return mapping && source ? { ...mapping, source } : null;
}

/** Change sources of enabled mappings (whose slots the worker reads), or of all. */
export async function listChangeSources(db: Executor, o: { enabledOnly?: boolean } = {}): Promise<ChangeSource[]> {
  const { rows } = await sql<SourceRow>`
    select s.*, s.ingested_lsn::text as ingested_lsn from ledger.change_sources s join ledger.stream_mappings m on m.id = s.mapping_id
    where (not ${o.enabledOnly ?? false} or m.enabled) order by s.created_at, s.mapping_id`.execute(db);
  return rows.map(toSource);
}

export async function listChangeStreamMappings(db: Executor, filter: { functionName?: string | null; table?: string | null } = {}): Promise<ChangeStreamMapping[]> {
  const sources = await listChangeSources(db);
  const out: ChangeStreamMapping[] = [];
  for (const source of sources) {
    if (filter.table && filter.table !== `${source.schemaName}.${source.tableName}` && filter.table !== source.tableName) continue;
    const mapping = await getStreamMapping(db, source.mappingId);
    if (mapping && (!filter.functionName || mapping.functionName === filter.functionName)) out.push({ ...mapping, source });
  }
  return out;
}

/** Drops a slot, ending the walsender that reads it first (a worker's connection). */
async function dropSlot(db: Db, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await asLoginRole(db, (tx) => sql`select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = ${slot} and active_pid is not null`.execute(tx));
    try {
      await asLoginRole(db, (tx) => sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot}`.execute(tx));
      return;
    } catch (e) {
      // the worker reconnected between the two statements: end it again
      if (attempt >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Deletes the mapping with its slot, publication and stream: a forgotten slot would hold
 * the server's WAL forever. The mapping row goes first, so no worker reconnects to the slot.
 */
export async function deleteChangeStreamMapping(db: Db, id: string, by: ChangeContext = SYSTEM, opts: { secretKey?: string | null } = {}): Promise<ChangeStreamMapping> {
  const found = await getChangeStreamMapping(db, id);
  if (!found) throw new LedgerError('EventSourceMappingNotFound', `Event source mapping not found: ${id}`);
  let url: string | null;
  try {
    url = await openChangeSourceUrl(db, id, opts.secretKey);
  } catch (e) {
    throw new LedgerError('InvalidParameter', `${(e as Error).message}: the mapping is kept, its slot is on ${found.source.endpoint ?? 'the source database'}`);
  }
  const drop = async (src: Db) => {
    await deleteStreamMapping(db, id, by, { changeStream: true });
    await dropSlot(src, found.source.slotName);
    await asLoginRole(src, (tx) => sql`drop publication if exists ${sql.id(found.source.publicationName)}`.execute(tx));
  };
  if (url === null) await drop(db);
  else
    await withSourceDb(url, async (src) => {
      await sql`select 1`.execute(src); // reachable before the mapping goes: an unreachable source keeps the mapping (and the slot known)
      await drop(src);
    });
  await sql`delete from ledger.streams where name = ${found.source.streamName}`.execute(db);
  return found;
}

export interface ChangeRecord {
  /** the JSON of the key attributes: the partition key (shard and lane by its MD5) */
  partitionKey: string;
  /** the DynamoDB Streams-shaped record, as delivered */
  record: unknown;
}

/**
 * Appends one source transaction's changes to the mapping's stream, in their order, and
 * marks the transaction ingested, in one transaction. A transaction at or before the
 * ingested LSN (sent again by the slot after a restart) is skipped. Returns whether it
 * was appended.
 */
export async function appendChangeTransaction(db: Db, source: ChangeSource, commitLsn: string, changes: readonly ChangeRecord[]): Promise<boolean> {
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ done: boolean }>`
      select ingested_lsn >= ${commitLsn}::pg_lsn as done from ledger.change_sources where mapping_id = ${source.mappingId}::uuid for update`.execute(tx);
    if (!rows[0] || rows[0].done) return false;
    if (changes.length > 0) {
      const stream: Pick<Stream, 'name' | 'shards'> = await requireStream(tx, source.streamName);
      const parsed = changes.map((c) => ({ key: c.partitionKey, data: Buffer.from(JSON.stringify(c.record), 'utf8') }));
      await appendRecords(tx, stream, parsed, commitLsn);
    }
    await sql`update ledger.change_sources set ingested_lsn = ${commitLsn}::pg_lsn where mapping_id = ${source.mappingId}::uuid`.execute(tx);
    return true;
  });
}

/**
 * How far the slot may be confirmed: just before the commit LSN of the oldest change whose
 * batch has not settled (the checkpoint of its shard and lane is before it), or, when all
 * appended changes are done, the ingested LSN. The slot sends again every transaction that
 * commits after the confirmed position.
 */
export async function confirmableLsn(db: Executor, source: ChangeSource): Promise<string> {
  const { rows } = await sql<{ pending: string | null; ingested: string }>`
    select (select min(r.source_lsn)::text from ledger.stream_checkpoints c
              join ledger.stream_mappings m on m.id = c.mapping_id
              join ledger.stream_records r on r.stream_name = c.stream_name and r.shard_id = c.shard_id and r.sequence_number > c.sequence_number
            where c.mapping_id = ${source.mappingId}::uuid
              and (m.parallelization_factor = 1 or ledger.stream_lane(r.partition_key, m.parallelization_factor) = c.lane)) as pending,
      (select ingested_lsn::text from ledger.change_sources where mapping_id = ${source.mappingId}::uuid) as ingested`.execute(db);
  const r = rows[0];
  if (!r || r.ingested === null) return '0/0';
  if (r.pending === null) return r.ingested;
  return bigIntToLsn(lsnToBigInt(r.pending) - 1n);
}

export interface SlotState {
  slotName: string;
  /** the mapping the slot belongs to; null: an orphaned slot (our prefix, no mapping) */
  mappingId: string | null;
  active: boolean;
  /** bytes of WAL written since the slot's confirmed position */
  lagBytes: number;
  /** bytes of WAL the server keeps for the slot (since its restart position) */
  retainedBytes: number;
  /** host:port/database of the source database the slot is on; null: the ledger's */
  source: string | null;
}

/**
 * Every logical slot named with our prefix in the ledger's database, with its lag and
 * retained WAL; with `secretKey` given, those in each source database of a mapping too.
 */
export async function listChangeSlots(db: Executor, opts: { secretKey?: string | null } = {}): Promise<SlotState[]> {
  const { rows } = await sql<{ slot_name: string; mapping_id: string | null; active: boolean; lag: string | null; retained: string | null }>`
    select s.slot_name, c.mapping_id, s.active,
      pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text as lag,
      pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::text as retained
    from pg_replication_slots s left join ledger.change_sources c on c.slot_name = s.slot_name
    where s.slot_name like ${`${CHANGE_SLOT_PREFIX}%`} and s.database = current_database()
    order by s.slot_name`.execute(db);
  const out: SlotState[] = rows.map((r) => ({ slotName: r.slot_name, mappingId: r.mapping_id, active: r.active, lagBytes: Number(r.lag ?? 0), retainedBytes: Number(r.retained ?? 0), source: null }));
  if (opts.secretKey !== undefined) for (const s of await sourceDatabases(db, opts.secretKey)) out.push(...(await onSource(s, (src) => slotsOn(src, s)).catch(() => [])));
  return out;
}

interface SourceDatabase {
  url: string;
  endpoint: string;
  /** slot and publication name → mapping id, of every mapping of the ledger (any source) */
  owners: Map<string, string>;
}

/** The distinct source databases of the mappings whose URL opens with the key. */
async function sourceDatabases(db: Executor, secretKey: string | null): Promise<SourceDatabase[]> {
  const { rows } = await sql<{ mapping_id: string; slot_name: string; publication_name: string; source_endpoint: string | null }>`
    select mapping_id, slot_name, publication_name, source_endpoint from ledger.change_sources`.execute(db);
  const owners = new Map<string, string>();
  for (const r of rows) owners.set(r.slot_name, r.mapping_id).set(r.publication_name, r.mapping_id);
  const byUrl = new Map<string, SourceDatabase>();
  for (const r of rows) {
    if (r.source_endpoint === null) continue;
    const url = await openChangeSourceUrl(db, r.mapping_id, secretKey).catch(() => null);
    if (url && !byUrl.has(url)) byUrl.set(url, { url, endpoint: r.source_endpoint, owners });
  }
  return [...byUrl.values()];
}

const onSource = <T>(s: SourceDatabase, fn: (src: Db) => Promise<T>) => withSourceDb(s.url, fn);

async function slotsOn(src: Db, s: SourceDatabase): Promise<SlotState[]> {
  const { rows } = await sql<{ slot_name: string; active: boolean; lag: string | null; retained: string | null }>`
    select slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text as lag, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as retained
    from pg_replication_slots where slot_name like ${`${CHANGE_SLOT_PREFIX}%`} and database = current_database() order by slot_name`.execute(src);
  return rows.map((r) => ({ slotName: r.slot_name, mappingId: s.owners.get(r.slot_name) ?? null, active: r.active, lagBytes: Number(r.lag ?? 0), retainedBytes: Number(r.retained ?? 0), source: s.endpoint }));
}

/** The verify check: slots and publications named by our prefix that no mapping owns. */
/** A slot or publication no mapping owns, and the statement that removes it (run where it is). */
export interface ChangeOrphan {
  kind: 'slot' | 'publication';
  /** `name`, or `name on host:port/db` in a source database */
  label: string;
  /** `select pg_drop_replication_slot('…')` or `drop publication …`, prefixed `in <db>: ` for a source database */
  repair: string;
}

export async function findOrphanedChangeSlots(
  db: Executor,
  opts: { secretKey?: string | null } = {},
): Promise<{ slots: string[]; publications: string[]; orphans: ChangeOrphan[] }> {
  const orphans: ChangeOrphan[] = [];
  const at = (kind: ChangeOrphan['kind'], s: { source: string | null; name: string }) => {
    const label = s.source ? `${s.name} on ${s.source}` : s.name;
    const statement = kind === 'slot' ? `select pg_drop_replication_slot('${s.name}')` : `drop publication ${s.name}`;
    orphans.push({ kind, label, repair: `${s.source ? `in ${s.source}: ` : ''}${statement}` });
    return label;
  };
  const slots = (await listChangeSlots(db, opts)).filter((s) => s.mappingId === null).map((s) => at('slot', { source: s.source, name: s.slotName }));
  const { rows } = await sql<{ pubname: string }>`
    select p.pubname from pg_publication p left join ledger.change_sources c on c.publication_name = p.pubname
    where p.pubname like ${`${CHANGE_SLOT_PREFIX}%`} and c.mapping_id is null order by p.pubname`.execute(db);
  const publications = rows.map((r) => at('publication', { source: null, name: r.pubname }));
  if (opts.secretKey !== undefined) {
    for (const s of await sourceDatabases(db, opts.secretKey)) {
      const names = await onSource(s, async (src) => {
        const { rows: pubs } = await sql<{ pubname: string }>`select pubname from pg_publication where pubname like ${`${CHANGE_SLOT_PREFIX}%`} order by pubname`.execute(src);
        return pubs.map((p) => p.pubname);
      }).catch(() => []);
      for (const n of names) if (!s.owners.has(n)) publications.push(at('publication', { source: s.endpoint, name: n }));
    }
  }
  return { slots, publications, orphans };
}

