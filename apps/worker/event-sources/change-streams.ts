// Change streams from PostgreSQL tables (docs/streams.md, "Change streams from PostgreSQL
// tables"): one replication connection per enabled change stream mapping reads its slot
// with pgoutput (through pg-logical-replication) and appends each source transaction's
// changes, shaped as DynamoDB Streams records, to the mapping's stream at its commit. The
// stream poller (streams.ts) delivers them with the stream mapping's rules. The slot is
// confirmed only up to confirmableLsn: before the oldest change whose batch has not
// settled, so after any restart the server sends again whatever the ledger has not done.
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import {
  appendChangeTransaction,
  changeStreamArn,
  CHANGE_EVENT_SOURCE,
  confirmableLsn,
  listChangeSlots,
  listChangeSources,
  lsnToBigInt,
  openChangeSourceUrl,
  redactSourceUrl,
  type ChangeRecord,
  type ChangeSource,
} from '../../../db/change-streams.ts';
import { isDatabaseUnavailable } from '../../../db/errors.ts';
import type { Db } from '../../../db/schema.ts';

/** A DynamoDB attribute value. */
export type AttributeValue =
  | { S: string }
  | { N: string }
  | { B: string }
  | { BOOL: boolean }
  | { NULL: true }
  | { L: AttributeValue[] }
  | { M: Record<string, AttributeValue> };

const NUMERIC_TYPES = new Set(['int2', 'int4', 'int8', 'numeric', 'float4', 'float8', 'oid']);

/** A column value as a DynamoDB attribute: numbers N, text S, bytea B (base64), json M/L, timestamps S (ISO 8601). */
export function attributeValue(value: unknown, typeName: string | null = null): AttributeValue {
  if (value === null || value === undefined) return { NULL: true };
  if (typeName !== null && NUMERIC_TYPES.has(typeName)) return { N: String(value) };
  if (typeof value === 'number' || typeof value === 'bigint') return { N: String(value) };
  if (typeof value === 'boolean') return { BOOL: value };
  if (typeof value === 'string') return { S: value };
  if (value instanceof Date) return { S: value.toISOString() };
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { B: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return { L: value.map((v) => attributeValue(v)) };
  if (typeof value === 'object') return { M: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, attributeValue(v)])) };
  return { S: String(value) };
}

function image(relation: Pgoutput.MessageRelation, row: Record<string, unknown>): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const c of relation.columns) if (c.name in row && row[c.name] !== undefined) out[c.name] = attributeValue(row[c.name], c.typeName);
  return out;
}

/** SequenceNumber: the commit LSN as 20 digits, then the change's place in its transaction as 6: it grows in commit order. */
export const changeSequenceNumber = (commitLsn: string, index: number) => `${lsnToBigInt(commitLsn).toString().padStart(20, '0')}${String(index).padStart(6, '0')}`;

/**
 * One row change as a DynamoDB Streams record, with the images the view type asks for.
 * Returns null for a change of another table, or one without a row.
 */
export function changeRecord(
  source: ChangeSource,
  msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete,
  txn: { commitLsn: string; commitTime: bigint; index: number },
): ChangeRecord | null {
  const rel = msg.relation;
  if (rel.schema !== source.schemaName || rel.name !== source.tableName) return null;
  const newRow = msg.tag === 'delete' ? null : msg.new;
  // FULL: the old row; DEFAULT: only the key of a deleted row (or of an update that changed it)
  const oldRow = msg.tag === 'insert' ? null : (msg.old ?? null);
  const keyRow = newRow ?? oldRow ?? (msg.tag === 'insert' ? null : msg.key);
  if (!keyRow) return null;
  const keys: Record<string, AttributeValue> = {};
  for (const k of source.keyColumns) keys[k] = attributeValue(keyRow[k], rel.columns.find((c) => c.name === k)?.typeName ?? null);
  const view = source.streamViewType;
  const withNew = (view === 'NEW_IMAGE' || view === 'NEW_AND_OLD_IMAGES') && newRow;
  const withOld = (view === 'OLD_IMAGE' || view === 'NEW_AND_OLD_IMAGES') && oldRow;
  const seq = changeSequenceNumber(txn.commitLsn, txn.index);
  const dynamodb = {
    // seconds since the epoch, as DynamoDB Streams gives it (the source transaction's commit time)
    ApproximateCreationDateTime: Math.floor(Number(txn.commitTime / 1000n)) / 1000,
    Keys: keys,
    ...(withNew ? { NewImage: image(rel, newRow) } : {}),
    ...(withOld ? { OldImage: image(rel, oldRow) } : {}),
    SequenceNumber: seq,
    SizeBytes: 0,
    StreamViewType: view,
  };
  dynamodb.SizeBytes = Buffer.byteLength(JSON.stringify(dynamodb), 'utf8');
  const partitionKey = JSON.stringify(source.keyColumns.map((k) => keys[k]));
  return {
    partitionKey: partitionKey.length <= 256 ? partitionKey : `md5:${partitionKey.length}:${partitionKey.slice(0, 200)}`,
    record: {
      eventID: seq,
      eventName: msg.tag === 'insert' ? 'INSERT' : msg.tag === 'update' ? 'MODIFY' : 'REMOVE',
      eventVersion: '1.1',
      eventSource: CHANGE_EVENT_SOURCE,
      awsRegion: 'local',
      dynamodb,
      eventSourceARN: changeStreamArn(source),
    },
  };
}

export interface ChangeStreamReaderOptions {
  db: Db;
  /** the ledger's database: the replication connection of a table in it */
  connectionString: string;
  /** opens the sealed connection strings of mappings whose table is in another database */
  secretKey?: string | null;
  logger: Logger;
  registry?: Registry;
  /** how often the mappings are listed, slots (re)connected and confirmed (default 1000) */
  pollIntervalMs?: number;
}

export interface ChangeStreamReader {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** mappings whose slot this process reads */
  readonly reading: number;
}

interface Subscription {
  source: ChangeSource;
  service: LogicalReplicationService;
  done: Promise<void>;
  confirmed: bigint;
}

export function createChangeStreamReader(o: ChangeStreamReaderOptions): ChangeStreamReader {
  const pollIntervalMs = o.pollIntervalMs ?? 1_000;
  const log = o.logger.child({ component: 'change-streams' });
  const subs = new Map<string, Subscription>();
  let stopping = true;
  let timer: NodeJS.Timeout | null = null;
  let ticking: Promise<void> | null = null;
  if (o.registry) registerSlotMetrics(o.registry, o.db, o.secretKey ?? null);

  async function confirm(sub: Subscription): Promise<void> {
    const lsn = await confirmableLsn(o.db, sub.source);
    const n = lsnToBigInt(lsn);
    if (n < sub.confirmed) return;
    sub.confirmed = n;
    await sub.service.acknowledge(lsn);
  }

  function subscribe(source: ChangeSource, url: string | null): void {
    // the replication connection, and so the slot's confirmations, go to the table's database
    const connectionString = url ?? o.connectionString;
    const redact = (m: string) => (url ? redactSourceUrl(m, url) : m);
    // no automatic acknowledgement: the library would confirm what it received, not what the ledger did
    const service = new LogicalReplicationService({ connectionString }, { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } });
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [source.publicationName] });
    let txn: { commitLsn: string; commitTime: bigint; changes: ChangeRecord[] } | null = null;
    let broken = false;
    const sub: Subscription = { source, service, done: Promise.resolve(), confirmed: 0n };
    service.on('data', async (_lsn: string, msg: Pgoutput.Message) => {
      if (broken) return;
      try {
        if (msg.tag === 'begin') txn = { commitLsn: msg.commitLsn ?? '0/0', commitTime: msg.commitTime as bigint, changes: [] };
        else if ((msg.tag === 'insert' || msg.tag === 'update' || msg.tag === 'delete') && txn) {
          const r = changeRecord(source, msg, { commitLsn: txn.commitLsn, commitTime: txn.commitTime, index: txn.changes.length });
          if (r) txn.changes.push(r);
        } else if (msg.tag === 'commit' && txn) {
          const t = txn;
          txn = null;
          if (t.changes.length > 0) await appendChangeTransaction(o.db, source, t.commitLsn, t.changes);
        }
      } catch (e) {
        // nothing after a transaction that was not appended may be appended: read again from the slot
        broken = true;
        log.warn({ err: redact((e as Error)?.message ?? String(e)), mappingId: source.mappingId }, 'could not append a source transaction; the slot is read again from its confirmed position');
        void service.stop();
      }
    });
    service.on('heartbeat', (_lsn: string, _ts: number, shouldRespond: boolean) => {
      if (shouldRespond && !broken) void confirm(sub).catch(() => {});
    });
    service.on('error', (e: Error) => {
      if (!stopping) log.warn({ err: redact(e.message), mappingId: source.mappingId, source: source.endpoint ?? 'ledger' }, 'change stream replication connection failed');
    });
    sub.done = service
      .subscribe(plugin, source.slotName)
      .then(() => undefined)
      .catch((e: unknown) => {
        if (!stopping) log.warn({ err: redact((e as Error)?.message ?? String(e)), mappingId: source.mappingId }, 'change stream replication ended; reconnecting');
      })
      .finally(() => {
        if (subs.get(source.mappingId) === sub) subs.delete(source.mappingId);
        void service.destroy().catch(() => {});
      });
    subs.set(source.mappingId, sub);
  }

  async function tick(): Promise<void> {
    try {
      const sources = await listChangeSources(o.db, { enabledOnly: true });
      const wanted = new Set(sources.map((s) => s.mappingId));
      for (const [id, sub] of subs) if (!wanted.has(id)) await sub.service.stop();
      for (const s of sources) {
        if (subs.has(s.mappingId) || stopping) continue;
        let url: string | null;
        try {
          url = s.endpoint === null ? null : await openChangeSourceUrl(o.db, s.mappingId, o.secretKey);
        } catch (e) {
          // the key is missing or another one: the message names the mapping, never the URL
          log.error({ err: (e as Error).message, mappingId: s.mappingId }, 'cannot open the source database connection string of a change stream mapping');
          continue;
        }
        subscribe(s, url);
      }
      for (const sub of subs.values()) if (!sub.service.isStop()) await confirm(sub);
    } catch (e) {
      if (isDatabaseUnavailable(e)) log.warn({ err: (e as Error).message }, 'database unavailable; change streams retry');
      else log.error({ err: e }, 'change stream upkeep failed');
    }
  }

  function schedule(): void {
    if (stopping) return;
    timer = setTimeout(() => {
      ticking = tick().finally(() => {
        ticking = null;
        schedule();
      });
    }, pollIntervalMs);
  }

  return {
    get reading() {
      return subs.size;
    },
    async start() {
      if (!stopping) return;
      stopping = false;
      ticking = tick().finally(() => {
        ticking = null;
        schedule();
      });
      await ticking;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      if (timer) clearTimeout(timer);
      await ticking;
      const all = [...subs.values()];
      for (const sub of all) await sub.service.stop();
      await Promise.all(all.map((s) => s.done));
    },
  };
}

/** Per mapping: WAL written since the slot's confirmed position, and WAL the server keeps for it; and orphaned slots. */
function registerSlotMetrics(registry: Registry, db: Db, secretKey: string | null): void {
  if (registry.getSingleMetric('ledger_change_stream_slot_lag_bytes')) return;
  let last: Promise<Awaited<ReturnType<typeof listChangeSlots>>> | null = null;
  // the source databases' slots too: each is on the database its table is in
  const read = () => (last ??= listChangeSlots(db, { secretKey }).finally(() => setTimeout(() => (last = null), 500)));
  new Gauge({
    name: 'ledger_change_stream_slot_lag_bytes',
    help: 'Bytes of WAL written since a change stream slot was last confirmed (docs/streams.md)',
    labelNames: ['mapping_id', 'slot', 'source'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read().catch(() => [])) this.set({ mapping_id: s.mappingId ?? 'orphaned', slot: s.slotName, ...(s.source ? { source: s.source } : {}) }, s.lagBytes);
    },
  });
  new Gauge({
    name: 'ledger_change_stream_retained_wal_bytes',
    help: 'Bytes of WAL the server keeps for a change stream slot (docs/streams.md)',
    labelNames: ['mapping_id', 'slot', 'source'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const s of await read().catch(() => [])) this.set({ mapping_id: s.mappingId ?? 'orphaned', slot: s.slotName, ...(s.source ? { source: s.source } : {}) }, s.retainedBytes);
    },
  });
}
