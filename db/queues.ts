// Durable message queues and event source mappings (poll-based invocation).
// A message is received by a batch (its receive count grows and it stays invisible for
// the queue's visibility timeout), then deleted when the batch succeeds, returned when
// it fails, or dead-lettered once it has been received max_receive_count times.
// Messages are operational state, not ledger events; each batch is a `poll` invocation
// in the ledger, written by the caller in the same transaction as the receive/settle.
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { z } from 'zod';
import { LedgerError } from './errors.ts';
import { FUNCTION_NAME, getFunction } from './functions.ts';
import { UUID } from './invocations.ts';
import type { Db, Executor } from './schema.ts';

export const QUEUE_NAME = FUNCTION_NAME;
/** like SQS */
export const MAX_MESSAGE_BYTES = 262_144;
export const MAX_SEND_BATCH_ENTRIES = 1_000;
/** a send batch and a delivered batch stay within a sync invoke's payload */
export const MAX_BATCH_BYTES = 6_291_456;
export const MESSAGES_CHANNEL = 'ledger_queue_messages';
export const MAX_RECEIVE_COUNT_EXCEEDED = 'MaxReceiveCountExceeded';

// ---------------------------------------------------------------------------------
// validation

const name = (what: string) => z.string().regex(QUEUE_NAME, `${what} must match ${QUEUE_NAME.source}`);

export const queueInputSchema = z
  .object({
    name: name('queue name'),
    visibilityTimeoutSeconds: z.number().int().min(0).max(43_200).default(30),
    maxReceiveCount: z.number().int().min(1).max(1_000).default(5),
  })
  .strict();
export type QueueInput = z.input<typeof queueInputSchema>;

const mappingFields = {
  batchSize: z.number().int().min(1).max(10_000),
  maxBatchingWindowMs: z.number().int().min(0).max(300_000),
  reportBatchItemFailures: z.boolean(),
  maximumConcurrency: z.number().int().min(2).max(1_000).nullable(),
  enabled: z.boolean(),
};

export const mappingInputSchema = z
  .object({
    queueName: name('queueName'),
    functionName: name('functionName'),
    batchSize: mappingFields.batchSize.default(10),
    maxBatchingWindowMs: mappingFields.maxBatchingWindowMs.default(0),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.default(false),
    maximumConcurrency: mappingFields.maximumConcurrency.default(null),
    enabled: mappingFields.enabled.default(true),
  })
  .strict();
export type EventSourceMappingInput = z.input<typeof mappingInputSchema>;

export const mappingUpdateSchema = z
  .object({
    functionName: name('functionName').optional(),
    batchSize: mappingFields.batchSize.optional(),
    maxBatchingWindowMs: mappingFields.maxBatchingWindowMs.optional(),
    reportBatchItemFailures: mappingFields.reportBatchItemFailures.optional(),
    maximumConcurrency: mappingFields.maximumConcurrency.optional(),
    enabled: mappingFields.enabled.optional(),
  })
  .strict();
export type EventSourceMappingUpdate = z.input<typeof mappingUpdateSchema>;

const sendEntrySchema = z
  .object({
    body: z.unknown().refine((b) => b !== undefined, 'body is required'),
    delaySeconds: z.number().int().min(0).max(900).nullish(),
  })
  .strict();
export type SendEntry = z.input<typeof sendEntrySchema>;

function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
    throw new LedgerError('InvalidParameter', msg, { issues: parsed.error.issues });
  }
  return parsed.data;
}


// ---------------------------------------------------------------------------------
// queues

export interface Queue {
  name: string;
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  createdAt: Date;
}

interface QueueRow {
  name: string;
  visibility_timeout_seconds: number;
  max_receive_count: number;
  created_at: Date;
}

const toQueue = (r: QueueRow): Queue => ({
  name: r.name,
  visibilityTimeoutSeconds: r.visibility_timeout_seconds,
  maxReceiveCount: r.max_receive_count,
  createdAt: r.created_at,
});

export async function createQueue(db: Executor, input: unknown): Promise<Queue> {
  const q = parse(queueInputSchema, input);
  const { rows } = await sql<QueueRow>`
    insert into ledger.message_queues (name, visibility_timeout_seconds, max_receive_count)
    values (${q.name}, ${q.visibilityTimeoutSeconds}, ${q.maxReceiveCount})
    on conflict (name) do nothing
    returning *`.execute(db);
  if (!rows[0]) throw new LedgerError('QueueExists', `queue ${q.name} already exists`);
  return toQueue(rows[0]);
}

export async function getQueue(db: Executor, queueName: string): Promise<Queue | null> {
  if (!QUEUE_NAME.test(queueName)) return null;
  const { rows } = await sql<QueueRow>`select * from ledger.message_queues where name = ${queueName}`.execute(db);
  return rows[0] ? toQueue(rows[0]) : null;
}

export async function requireQueue(db: Executor, queueName: string): Promise<Queue> {
  const q = await getQueue(db, queueName);
  if (!q) throw new LedgerError('QueueNotFound', `Queue not found: ${queueName}`);
  return q;
}

export async function listQueues(db: Executor): Promise<Queue[]> {
  const { rows } = await sql<QueueRow>`select * from ledger.message_queues order by name`.execute(db);
  return rows.map(toQueue);
}

/** SQS's ApproximateNumberOfMessages* (exact here, at the moment of the query). */
export interface QueueCounts {
  /** receivable now */
  visible: number;
  /** received, not yet deleted or returned */
  inFlight: number;
  /** sent with a delay not yet over */
  delayed: number;
  deadLettered: number;
}

export async function queueCounts(db: Executor, queueNames: readonly string[]): Promise<Map<string, QueueCounts>> {
  const { rows } = await sql<{ queue_name: string } & QueueCounts>`
    select queue_name,
      count(*) filter (where dead_lettered_at is null and visible_at <= now())::int as visible,
      count(*) filter (where dead_lettered_at is null and visible_at > now() and receipt is not null)::int as "inFlight",
      count(*) filter (where dead_lettered_at is null and visible_at > now() and receipt is null)::int as delayed,
      count(*) filter (where dead_lettered_at is not null)::int as "deadLettered"
    from ledger.messages where queue_name = any(${queueNames}::text[]) group by queue_name`.execute(db);
  const out = new Map<string, QueueCounts>(queueNames.map((n) => [n, { visible: 0, inFlight: 0, delayed: 0, deadLettered: 0 }]));
  for (const { queue_name, ...counts } of rows) out.set(queue_name, counts);
  return out;
}

// ---------------------------------------------------------------------------------
// messages

export interface QueueMessage {
  id: string;
  queueName: string;
  body: unknown;
  sentAt: Date;
  visibleAt: Date;
  receiveCount: number;
  firstReceivedAt: Date | null;
  /** the poll invocation holding the message, while it is in flight */
  receipt: string | null;
  deadLetteredAt: Date | null;
  deadLetterReason: string | null;
}

interface MessageRow {
  id: string;
  queue_name: string;
  body: unknown;
  sent_at: Date;
  visible_at: Date;
  receive_count: number;
  first_received_at: Date | null;
  receipt: string | null;
  dead_lettered_at: Date | null;
  dead_letter_reason: string | null;
}

const toMessage = (r: MessageRow): QueueMessage => ({
  id: r.id,
  queueName: r.queue_name,
  body: r.body,
  sentAt: r.sent_at,
  visibleAt: r.visible_at,
  receiveCount: r.receive_count,
  firstReceivedAt: r.first_received_at,
  receipt: r.receipt,
  deadLetteredAt: r.dead_lettered_at,
  deadLetterReason: r.dead_letter_reason,
});

/**
 * Sends messages in one statement; returns their ids in order. Each body is at most
 * 256 KB of JSON (PayloadTooLarge), a delay 0–900 s.
 */
export async function sendMessages(db: Executor, queueName: string, entries: readonly unknown[]): Promise<string[]> {
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_SEND_BATCH_ENTRIES) {
    throw new LedgerError('InvalidParameter', `a send batch has 1 to ${MAX_SEND_BATCH_ENTRIES} entries`);
  }
  const parsed = entries.map((e) => parse(sendEntrySchema, e));
  const bodies = parsed.map((e) => JSON.stringify(e.body));
  const sizes = bodies.map((b) => Buffer.byteLength(b, 'utf8'));
  const tooBig = sizes.findIndex((s) => s > MAX_MESSAGE_BYTES);
  if (tooBig !== -1) {
    throw new LedgerError('PayloadTooLarge', `message ${tooBig} is ${sizes[tooBig]} bytes; the limit is ${MAX_MESSAGE_BYTES}`);
  }
  if (sizes.reduce((a, b) => a + b, 0) > MAX_BATCH_BYTES) {
    throw new LedgerError('PayloadTooLarge', `a send batch is at most ${MAX_BATCH_BYTES} bytes`);
  }
  if (!QUEUE_NAME.test(queueName)) throw new LedgerError('QueueNotFound', `Queue not found: ${queueName}`);
  const ids = parsed.map(() => randomUUID());
  const { rows } = await sql<{ id: string }>`
    with q as (
      select name from ledger.message_queues where name = ${queueName} for share
    ), ins as (
      insert into ledger.messages (id, queue_name, body, body_bytes, visible_at)
      select m.id, q.name, m.body, m.bytes, now() + make_interval(secs => m.delay)
      from unnest(${ids}::uuid[], ${bodies}::jsonb[], ${sizes}::int[], ${parsed.map((e) => e.delaySeconds ?? 0)}::int[])
        with ordinality as m(id, body, bytes, delay, ord)
      cross join q
      order by m.ord
      returning id
    ), wake as (
      select pg_notify(${MESSAGES_CHANNEL}, ${queueName}) from q
    )
    select id from ins, (select count(*) from wake) w`.execute(db);
  if (rows.length === 0) throw new LedgerError('QueueNotFound', `Queue not found: ${queueName}`);
  return ids;
}

export async function getMessage(db: Executor, id: string): Promise<QueueMessage | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<MessageRow>`
    select id, queue_name, body, sent_at, visible_at, receive_count, first_received_at, receipt, dead_lettered_at,
      dead_letter_reason from ledger.messages where id = ${id}::uuid`.execute(db);
  return rows[0] ? toMessage(rows[0]) : null;
}

/** A receivable message, row-locked by the receiving transaction. */
export interface ReceivableMessage {
  id: string;
  body: unknown;
  bodyBytes: number;
  sentAt: Date;
  visibleAt: Date;
  receiveCount: number;
}

/**
 * Locks up to `limit` receivable messages (visible, not dead-lettered), oldest first.
 * SKIP LOCKED: several workers receive from one queue without waiting on each other.
 * `now` is the transaction's clock (null when nothing was found), for the batching window.
 */
export async function lockReceivableMessages(
  tx: Executor,
  queueName: string,
  limit: number,
): Promise<{ messages: ReceivableMessage[]; now: Date | null }> {
  const { rows } = await sql<{
    id: string;
    body: unknown;
    body_bytes: number;
    sent_at: Date;
    visible_at: Date;
    receive_count: number;
    db_now: Date;
  }>`
    select id, body, body_bytes, sent_at, visible_at, receive_count, now() as db_now from ledger.messages
    where queue_name = ${queueName} and dead_lettered_at is null and visible_at <= now()
    order by visible_at, seq
    limit ${limit}
    for update skip locked`.execute(tx);
  return {
    now: rows[0]?.db_now ?? null,
    messages: rows.map((r) => ({
      id: r.id,
      body: r.body,
      bodyBytes: r.body_bytes,
      sentAt: r.sent_at,
      visibleAt: r.visible_at,
      receiveCount: r.receive_count,
    })),
  };
}

/**
 * Marks locked messages as received by the poll invocation `receipt`: receive count + 1,
 * invisible for `visibilityTimeoutSeconds`; and records the batch as in flight until
 * `leaseMs` from now. One statement.
 */
export async function markReceived(
  tx: Executor,
  batch: { receipt: string; mappingId: string; workerId: string; messageIds: readonly string[]; visibilityTimeoutSeconds: number; leaseMs: number },
): Promise<void> {
  await sql`
    with rcv as (
      update ledger.messages set receive_count = receive_count + 1, receipt = ${batch.receipt}::uuid,
        visible_at = now() + make_interval(secs => ${batch.visibilityTimeoutSeconds}),
        first_received_at = coalesce(first_received_at, now())
      where id = any(${batch.messageIds}::uuid[])
      returning 1
    )
    insert into ledger.message_batches (invocation_id, mapping_id, worker_id, message_count, expires_at)
    select ${batch.receipt}::uuid, ${batch.mappingId}::uuid, ${batch.workerId}, count(*), now() + make_interval(secs => ${batch.leaseMs / 1000})
    from rcv`.execute(tx);
}

/** Moves messages to the queue's dead letters (kept until redriven). */
export async function deadLetterMessages(tx: Executor, ids: readonly string[], reason: string): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await sql`
    update ledger.messages set dead_lettered_at = now(), dead_letter_reason = ${reason}, receipt = null
    where id = any(${ids}::uuid[]) and dead_lettered_at is null`.execute(tx);
  return Number(res.numAffectedRows ?? 0);
}

export interface SettleResult {
  deleted: number;
  /** visible again */
  returned: number;
  /** returned after their last allowed receive */
  deadLettered: number;
}

/**
 * Ends a batch: deletes the messages that succeeded, makes the failed ones visible
 * again (or dead-letters those received max_receive_count times), and removes the
 * in-flight batch row. Only messages still held by `receipt` are touched: one whose
 * visibility expired and that another batch received belongs to that batch now.
 */
export async function settleBatch(
  tx: Executor,
  receipt: string,
  outcome: { succeeded: readonly string[]; failed: readonly string[] },
): Promise<SettleResult> {
  const { rows } = await sql<SettleResult>`
    with del as (
      delete from ledger.messages where receipt = ${receipt}::uuid and id = any(${outcome.succeeded}::uuid[])
      returning 1
    ), ret as (
      update ledger.messages m set receipt = null, visible_at = now(),
        dead_lettered_at = case when m.receive_count >= q.max_receive_count then now() end,
        dead_letter_reason = case when m.receive_count >= q.max_receive_count then ${MAX_RECEIVE_COUNT_EXCEEDED} end
      from ledger.message_queues q
      where q.name = m.queue_name and m.receipt = ${receipt}::uuid and m.id = any(${outcome.failed}::uuid[])
      returning m.dead_lettered_at is not null as dead
    ), batch as (
      delete from ledger.message_batches where invocation_id = ${receipt}::uuid
    )
    select (select count(*) from del)::int as deleted,
           (select count(*) from ret where not dead)::int as returned,
           (select count(*) from ret where dead)::int as "deadLettered"`.execute(tx);
  return rows[0] as SettleResult;
}

export interface Page<T> {
  edges: { cursor: string; node: T }[];
  hasNextPage: boolean;
}

// a dead letter's position: its dead-lettering time in microseconds (a Date would drop them) and id
const encodeCursor = (micros: string, id: string) => Buffer.from(`${micros}|${id}`, 'utf8').toString('base64url');
function decodeCursor(cursor: string): { micros: string; id: string } {
  const [micros, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!micros || !/^\d{1,19}$/.test(micros) || !id || !UUID.test(id)) throw new LedgerError('InvalidParameter', 'invalid cursor');
  return { micros, id };
}

/** A queue's dead letters, newest first. */
export async function listDeadLetterMessages(
  db: Executor,
  queueName: string,
  page: { first?: number | null; after?: string | null } = {},
): Promise<Page<QueueMessage>> {
  await requireQueue(db, queueName);
  const first = page.first ?? 50;
  if (!Number.isInteger(first) || first < 1 || first > 1000) throw new LedgerError('InvalidParameter', 'first must be 1 to 1000');
  const after = page.after ? decodeCursor(page.after) : null;
  const { rows } = await sql<MessageRow & { micros: string }>`
    select * from (
      select id, queue_name, body, sent_at, visible_at, receive_count, first_received_at, receipt, dead_lettered_at,
        dead_letter_reason, (extract(epoch from dead_lettered_at) * 1000000)::bigint as micros
      from ledger.messages where queue_name = ${queueName} and dead_lettered_at is not null
    ) m
    where ${after === null} or (m.micros, m.id) < (${after?.micros ?? null}::bigint, ${after?.id ?? null}::uuid)
    order by m.micros desc, m.id desc
    limit ${first + 1}`.execute(db);
  return {
    edges: rows.slice(0, first).map((r) => ({ cursor: encodeCursor(r.micros, r.id), node: toMessage(r) })),
    hasNextPage: rows.length > first,
  };
}

/**
 * Returns dead letters to the queue with a fresh receive budget: all of the queue's, or
 * the given ids. Returns how many were redriven.
 */
export async function redriveDeadLetterMessages(db: Executor, queueName: string, messageIds?: readonly string[] | null): Promise<number> {
  await requireQueue(db, queueName);
  if (messageIds) for (const id of messageIds) if (!UUID.test(id)) throw new LedgerError('InvalidParameter', `not a message id: ${id}`);
  const res = await sql`
    update ledger.messages set dead_lettered_at = null, dead_letter_reason = null, receive_count = 0,
      first_received_at = null, receipt = null, visible_at = now()
    where queue_name = ${queueName} and dead_lettered_at is not null
      and (${messageIds == null} or id = any(${messageIds ?? []}::uuid[]))`.execute(db);
  const n = Number(res.numAffectedRows ?? 0);
  if (n > 0) await sql`select pg_notify(${MESSAGES_CHANNEL}, ${queueName})`.execute(db);
  return n;
}

// ---------------------------------------------------------------------------------
// event source mappings

export interface EventSourceMapping {
  id: string;
  queueName: string;
  functionName: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  reportBatchItemFailures: boolean;
  maximumConcurrency: number | null;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

interface MappingRow {
  id: string;
  queue_name: string;
  function_name: string;
  batch_size: number;
  max_batching_window_ms: number;
  report_batch_item_failures: boolean;
  maximum_concurrency: number | null;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

const toMapping = (r: MappingRow): EventSourceMapping => ({
  id: r.id,
  queueName: r.queue_name,
  functionName: r.function_name,
  batchSize: r.batch_size,
  maxBatchingWindowMs: r.max_batching_window_ms,
  reportBatchItemFailures: r.report_batch_item_failures,
  maximumConcurrency: r.maximum_concurrency,
  enabled: r.enabled,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

async function requireLiveFunction(db: Executor, functionName: string): Promise<void> {
  if (!(await getFunction(db, functionName))) throw new LedgerError('FunctionNotFound', `Function not found: ${functionName}`);
}

export async function createEventSourceMapping(db: Db, input: unknown): Promise<EventSourceMapping> {
  const m = parse(mappingInputSchema, input);
  return db.transaction().execute(async (tx) => {
    await requireQueue(tx, m.queueName);
    await requireLiveFunction(tx, m.functionName);
    const { rows } = await sql<MappingRow>`
      insert into ledger.event_source_mappings (id, queue_name, function_name, batch_size, max_batching_window_ms,
        report_batch_item_failures, maximum_concurrency, enabled)
      values (${randomUUID()}::uuid, ${m.queueName}, ${m.functionName}, ${m.batchSize}, ${m.maxBatchingWindowMs},
        ${m.reportBatchItemFailures}, ${m.maximumConcurrency}, ${m.enabled})
      returning *`.execute(tx);
    if (m.enabled) await sql`select pg_notify(${MESSAGES_CHANNEL}, ${m.queueName})`.execute(tx);
    return toMapping(rows[0] as MappingRow);
  });
}

export async function getEventSourceMapping(db: Executor, id: string): Promise<EventSourceMapping | null> {
  if (!UUID.test(id)) return null;
  const { rows } = await sql<MappingRow>`select * from ledger.event_source_mappings where id = ${id}::uuid`.execute(db);
  return rows[0] ? toMapping(rows[0]) : null;
}

const mappingNotFound = (id: string) => new LedgerError('EventSourceMappingNotFound', `Event source mapping not found: ${id}`);

/** Applies a partial change; `enabled: false` stops new batches (running ones finish). */
export async function updateEventSourceMapping(db: Db, id: string, patch: unknown): Promise<EventSourceMapping> {
  const p = parse(mappingUpdateSchema, patch);
  if (!UUID.test(id)) throw mappingNotFound(id);
  return db.transaction().execute(async (tx) => {
    if (p.functionName !== undefined) await requireLiveFunction(tx, p.functionName);
    const set = (v: unknown) => v !== undefined;
    const { rows } = await sql<MappingRow>`
      update ledger.event_source_mappings set
        function_name = case when ${set(p.functionName)} then ${p.functionName ?? null} else function_name end,
        batch_size = case when ${set(p.batchSize)} then ${p.batchSize ?? null}::int else batch_size end,
        max_batching_window_ms = case when ${set(p.maxBatchingWindowMs)} then ${p.maxBatchingWindowMs ?? null}::int else max_batching_window_ms end,
        report_batch_item_failures = case when ${set(p.reportBatchItemFailures)} then ${p.reportBatchItemFailures ?? null}::boolean else report_batch_item_failures end,
        maximum_concurrency = case when ${set(p.maximumConcurrency)} then ${p.maximumConcurrency ?? null}::int else maximum_concurrency end,
        enabled = case when ${set(p.enabled)} then ${p.enabled ?? null}::boolean else enabled end,
        updated_at = now()
      where id = ${id}::uuid
      returning *`.execute(tx);
    if (!rows[0]) throw mappingNotFound(id);
    if (rows[0].enabled) await sql`select pg_notify(${MESSAGES_CHANNEL}, ${rows[0].queue_name})`.execute(tx);
    return toMapping(rows[0]);
  });
}

/** Deletes the mapping; batches already running finish and settle their messages. */
export async function deleteEventSourceMapping(db: Executor, id: string): Promise<EventSourceMapping> {
  if (!UUID.test(id)) throw mappingNotFound(id);
  const { rows } = await sql<MappingRow>`delete from ledger.event_source_mappings where id = ${id}::uuid returning *`.execute(db);
  if (!rows[0]) throw mappingNotFound(id);
  return toMapping(rows[0]);
}

export async function listEventSourceMappings(
  db: Executor,
  filter: { queueName?: string | null; functionName?: string | null } = {},
): Promise<EventSourceMapping[]> {
  const { rows } = await sql<MappingRow>`
    select * from ledger.event_source_mappings
    where (${filter.queueName ?? null}::text is null or queue_name = ${filter.queueName ?? null})
      and (${filter.functionName ?? null}::text is null or function_name = ${filter.functionName ?? null})
    order by created_at, id`.execute(db);
  return rows.map(toMapping);
}

/** An enabled mapping with what a poller needs to receive for it. */
export interface PollableMapping extends EventSourceMapping {
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  /** latest version of the function; null when it was deleted */
  functionVersion: number | null;
}

export async function listPollableMappings(db: Executor): Promise<PollableMapping[]> {
  const { rows } = await sql<MappingRow & { visibility_timeout_seconds: number; max_receive_count: number; latest_version: number | null }>`
    select m.*, q.visibility_timeout_seconds, q.max_receive_count,
      case when f.deleted_at is null then f.latest_version end as latest_version
    from ledger.event_source_mappings m
    join ledger.message_queues q on q.name = m.queue_name
    join ledger.functions f on f.name = m.function_name
    where m.enabled
    order by m.created_at, m.id`.execute(db);
  return rows.map((r) => ({
    ...toMapping(r),
    visibilityTimeoutSeconds: r.visibility_timeout_seconds,
    maxReceiveCount: r.max_receive_count,
    functionVersion: r.latest_version,
  }));
}

/**
 * In the receiving transaction: the mapping's current maximumConcurrency and batches in
 * flight, or null when it was deleted or disabled since it was listed. With
 * maximumConcurrency the mapping row is locked, so two workers cannot both take the last
 * slot; without, nothing is locked and receivers only meet at the messages (SKIP LOCKED).
 */
export async function mappingForReceive(
  tx: Executor,
  id: string,
  lock: boolean,
): Promise<{ maximumConcurrency: number | null; inFlight: number } | null> {
  const { rows } = await sql<{ enabled: boolean; maximum_concurrency: number | null }>`
    select enabled, maximum_concurrency from ledger.event_source_mappings where id = ${id}::uuid
    ${lock ? sql`for no key update` : sql``}`.execute(tx);
  const r = rows[0];
  if (!r || !r.enabled) return null;
  if (r.maximum_concurrency === null) return { maximumConcurrency: null, inFlight: 0 };
  // a limit set since the mapping was listed: count under the lock after all
  if (!lock) return mappingForReceive(tx, id, true);
  // a statement of its own: its snapshot, taken after the lock was granted, sees the
  // batch rows of the transactions that held the lock before us
  const { rows: counted } = await sql<{ n: number }>`
    select count(*)::int as n from ledger.message_batches where mapping_id = ${id}::uuid and expires_at > now()`.execute(tx);
  return { maximumConcurrency: r.maximum_concurrency, inFlight: counted[0]?.n ?? 0 };
}

/** A batch whose worker died stops counting at its lease's end; its row goes here. */
export async function pruneExpiredBatches(db: Executor): Promise<number> {
  const res = await sql`delete from ledger.message_batches where expires_at < now()`.execute(db);
  return Number(res.numAffectedRows ?? 0);
}

/** Heartbeat: batches still running stay counted against maximumConcurrency. */
export async function extendBatches(db: Executor, invocationIds: readonly string[], graceMs: number): Promise<void> {
  if (invocationIds.length === 0) return;
  await sql`
    update ledger.message_batches set expires_at = greatest(expires_at, now() + make_interval(secs => ${graceMs / 1000}))
    where invocation_id = any(${invocationIds}::uuid[])`.execute(db);
}
