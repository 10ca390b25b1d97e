// Queues themselves: create, read, list, and their message counts.
import { sql } from 'kysely';
import { LedgerError } from '../errors.ts';
import type { Executor } from '../schema.ts';
import { parse, QUEUE_NAME, queueInputSchema } from './schemas.ts';

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
