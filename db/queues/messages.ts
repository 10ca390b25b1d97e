// Messages: send, read, receive (lock and mark received by a poll invocation), and
// settle a batch (delete the succeeded, return or dead-letter the failed).
// Messages are operational state, not ledger events; each batch is a `poll` invocation
// in the ledger, written by the caller in the same transaction as the receive/settle.
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { LedgerError } from '../errors.ts';
import { UUID } from '../invocations.ts';
import type { Executor } from '../schema.ts';
import { whyNotStorableJson } from '../storable.ts';
import { MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, MAX_RECEIVE_COUNT_EXCEEDED, MAX_SEND_BATCH_ENTRIES, MESSAGES_CHANNEL, parse, QUEUE_NAME, sendEntrySchema } from './schemas.ts';

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

export interface MessageRow {
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

export const toMessage = (r: MessageRow): QueueMessage => ({
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
 * 256 KB of JSON (PayloadTooLarge) that PostgreSQL can store (InvalidRequestContent,
 * db/storable.ts), a delay 0–900 s.
 */
export async function sendMessages(
  db: Executor,
  queueName: string,
  entries: readonly unknown[],
  /** the sender's chain: the poll invocation delivering these is this deep (docs/worker.md) */
  o: { chainDepth?: number } = {},
): Promise<string[]> {
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_SEND_BATCH_ENTRIES) {
    throw new LedgerError('InvalidParameter', `a send batch has 1 to ${MAX_SEND_BATCH_ENTRIES} entries`);
  }
  const parsed = entries.map((e) => parse(sendEntrySchema, e));
  parsed.forEach((e, i) => {
    const why = whyNotStorableJson(e.body);
    if (why !== null) throw new LedgerError('InvalidRequestContent', `message ${i} cannot be stored: ${why}`);
  });
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
  // The limits hold for what is stored and served, which is jsonb's text: numbers come
  // back written out in full (`1e308` is 309 digits), so 252 KB as sent can be 11 MB.
  const { rows } = await sql<{ queues: number; inserted: number; too_big: number | null; too_big_bytes: number | null; total: string }>`
    with m as materialized (
      select b.id, b.body, octet_length(b.body::text) as bytes, b.delay, b.ord
      from unnest(${ids}::uuid[], ${bodies}::jsonb[], ${parsed.map((e) => e.delaySeconds ?? 0)}::int[])
        with ordinality as b(id, body, delay, ord)
    ), fits as (
      select not exists (select 1 from m where bytes > ${MAX_MESSAGE_BYTES})
        and (select sum(bytes) from m) <= ${MAX_BATCH_BYTES} as ok
    ), q as (
      select name from ledger.message_queues where name = ${queueName} for share
    ), ins as (
      insert into ledger.messages (id, queue_name, body, body_bytes, visible_at, chain_depth)
      select m.id, q.name, m.body, m.bytes, now() + make_interval(secs => m.delay), ${o.chainDepth ?? 0}::int
      from m cross join q cross join fits
      where fits.ok
      order by m.ord
      returning 1
    ), wake as (
      select pg_notify(${MESSAGES_CHANNEL}, ${queueName}) from q cross join fits where fits.ok
    )
    select (select count(*) from q)::int as queues, (select count(*) from ins)::int as inserted,
      (select ord - 1 from m where bytes > ${MAX_MESSAGE_BYTES} order by ord limit 1)::int as too_big,
      (select bytes from m where bytes > ${MAX_MESSAGE_BYTES} order by ord limit 1) as too_big_bytes,
      (select sum(bytes) from m)::text as total,
      (select count(*) from wake) as woke`.execute(db);
  const r = rows[0] as (typeof rows)[number];
  if (r.queues === 0) throw new LedgerError('QueueNotFound', `Queue not found: ${queueName}`);
  if (r.too_big !== null) {
    throw new LedgerError(
      'PayloadTooLarge',
      `message ${r.too_big} is ${r.too_big_bytes} bytes as stored (JSON numbers are stored and served written out in full: 1e308 is 309 digits); the limit is ${MAX_MESSAGE_BYTES}`,
    );
  }
  if (r.inserted === 0) {
    throw new LedgerError('PayloadTooLarge', `a send batch is at most ${MAX_BATCH_BYTES} bytes as stored; this one is ${r.total}`);
  }
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
  chainDepth: number;
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
    chain_depth: number;
    db_now: Date;
  }>`
    select id, body, body_bytes, sent_at, visible_at, receive_count, chain_depth, now() as db_now from ledger.messages
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
      chainDepth: r.chain_depth,
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
