// A queue's dead letters: paged newest first (db/cursor.ts), and redriven to the queue.
import { sql } from 'kysely';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { LedgerError } from '../errors.ts';
import { UUID } from '../invocations.ts';
import type { Executor } from '../schema.ts';
import { toMessage, type MessageRow, type QueueMessage } from './messages.ts';
import { requireQueue } from './queues.ts';
import { MESSAGES_CHANNEL } from './schemas.ts';

export interface Page<T> {
  edges: { cursor: string; node: T }[];
  hasNextPage: boolean;
}

// a dead letter's position: its dead-lettering time in microseconds (a Date would drop them) and id
const DEAD_LETTER_SHAPE = [/^\d{1,19}$/, UUID] as const;

/** A queue's dead letters, newest first. */
export async function listDeadLetterMessages(
  db: Executor,
  queueName: string,
  page: { first?: number | null; after?: string | null } = {},
): Promise<Page<QueueMessage>> {
  await requireQueue(db, queueName);
  const first = page.first ?? 50;
  if (!Number.isInteger(first) || first < 1 || first > 1000) throw new LedgerError('InvalidParameter', 'first must be 1 to 1000');
  const after = page.after ? decodeCursor(page.after, DEAD_LETTER_SHAPE) : null;
  const [afterMicros, afterId] = after ?? [null, null];
  const { rows } = await sql<MessageRow & { micros: string }>`
    select * from (
      select id, queue_name, body, sent_at, visible_at, receive_count, first_received_at, receipt, dead_lettered_at,
        dead_letter_reason, (extract(epoch from dead_lettered_at) * 1000000)::bigint as micros
      from ledger.messages where queue_name = ${queueName} and dead_lettered_at is not null
    ) m
    where ${after === null} or (m.micros, m.id) < (${afterMicros}::bigint, ${afterId}::uuid)
    order by m.micros desc, m.id desc
    limit ${first + 1}`.execute(db);
  return {
    edges: rows.slice(0, first).map((r) => ({ cursor: encodeCursor([r.micros, r.id]), node: toMessage(r) })),
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
