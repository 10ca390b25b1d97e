// Shared by the queue tests: in-process pollers over inline runtimes, and reads of the
// poll invocations a mapping made.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createFunction, type FunctionConfigInput, type FunctionVersion } from '../../db/functions.ts';
import type { Db } from '../../db/schema.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { createEventSourcePoller, type EventSourcePoller, type EventSourcePollerOptions } from '../../apps/worker/event-sources/index.ts';
import { silent } from '../worker/helpers.ts';

export { silent, waitFor } from '../worker/helpers.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export function queueRuntimes(): Runtimes {
  return createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
}

export interface RunningPoller extends EventSourcePoller {
  workerId: string;
  registry: Registry;
}

export async function startPoller(
  db: Db,
  runtimes: Runtimes,
  overrides: Partial<EventSourcePollerOptions> = {},
): Promise<RunningPoller> {
  const registry = new Registry();
  const workerId = overrides.workerId ?? `poller-${randomUUID().slice(0, 8)}`;
  const poller = createEventSourcePoller({ db, runtimes, logger: silent, registry, workerId, pollIntervalMs: 50, leaseGraceMs: 2_000, ...overrides });
  await poller.start();
  return Object.assign(poller, { workerId, registry });
}

export function batchFunction(db: Db, name: string, config: Partial<FunctionConfigInput> = {}): Promise<FunctionVersion> {
  return createFunction(db, name, { runtime: 'MODULE', handler: 'batch.ts', isolation: 'inline', timeoutMs: 10_000, ...config });
}

export interface PollInvocation {
  id: string;
  status: string;
  messageIds: string[];
  receiveCounts: number[];
  /** SentTimestamp of each record, epoch ms */
  sentTimestamps: number[];
  result: unknown;
  errorType: string | null;
  workerId: string;
  acceptedAt: Date;
}

/** The poll invocations of a function, in the order they were accepted. */
export async function pollInvocations(db: Db, functionName: string): Promise<PollInvocation[]> {
  const { rows } = await sql<{
    id: string;
    status: string;
    error_type: string | null;
    accepted_at: Date;
    payload: { Records: { messageId: string; attributes: { ApproximateReceiveCount: string; SentTimestamp: string } }[] };
    worker_id: string;
    result: unknown;
  }>`
    select i.id, i.status, i.error_type, i.accepted_at, a.data -> 'payload' as payload, s.data ->> 'workerId' as worker_id,
      r.data -> 'result' as result
    from ledger.invocations i
    join ledger.events a on a.invocation_id = i.id and a.seq = 1
    join ledger.events s on s.invocation_id = i.id and s.seq = 2
    left join ledger.events r on r.invocation_id = i.id and r.type = 'succeeded'
    where i.function_name = ${functionName} and i.invocation_type = 'poll'
    order by a.position`.execute(db);
  return rows.map((r) => ({
    id: r.id,
    status: r.status,
    messageIds: r.payload.Records.map((x) => x.messageId),
    receiveCounts: r.payload.Records.map((x) => Number(x.attributes.ApproximateReceiveCount)),
    sentTimestamps: r.payload.Records.map((x) => Number(x.attributes.SentTimestamp)),
    result: r.result,
    errorType: r.error_type,
    workerId: r.worker_id,
    acceptedAt: r.accepted_at,
  }));
}

/** Messages still in a queue (in flight, visible, delayed or dead-lettered). */
export async function remainingMessages(db: Db, queueName: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.messages where queue_name = ${queueName}`.execute(db);
  return rows[0]?.n ?? 0;
}

export const terminal = (s: string) => s === 'succeeded' || s === 'failed';

