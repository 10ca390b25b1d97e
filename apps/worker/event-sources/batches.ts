// One batch of an event source mapping, from receive to settle. The receive (messages
// locked, counted, made invisible) and the poll invocation's `accepted` + `started`
// commit in one transaction; the message deletes/returns and its `succeeded` | `failed`
// in another. Either both happen or neither.
import { recordOutcomes } from '../../../db/attempts.ts';
import { SequenceConflict } from '../../../db/errors.ts';
import type { FunctionVersion } from '../../../db/functions.ts';
import { acceptInvocations } from '../../../db/invocations.ts';
import type { InvocationState } from '../../../db/lifecycle.ts';
import {
  deadLetterMessages,
  lockReceivableMessages,
  mappingForReceive,
  markReceived,
  MAX_BATCH_BYTES,
  MAX_RECEIVE_COUNT_EXCEEDED,
  settleBatch,
  type PollableMapping,
  type SettleResult,
} from '../../../db/queues.ts';
import type { Db } from '../../../db/schema.ts';
import type { AttemptOutcome } from '../../runtimes/index.ts';
import { decideBatch, type BatchDecision } from './batch-response.ts';

export const EVENT_SOURCE = 'ledger:queue';
/** bytes a record adds to its body in the event (ids, attributes, names) */
const RECORD_OVERHEAD_BYTES = 300;

/** What the function receives for each message. */
export interface QueueRecord {
  messageId: string;
  body: unknown;
  attributes: { ApproximateReceiveCount: string; SentTimestamp: string };
  eventSource: typeof EVENT_SOURCE;
  eventSourceQueue: string;
}

export interface ReceivedBatch {
  mapping: PollableMapping;
  fn: FunctionVersion;
  /** the running poll invocation; its id is the messages' receipt */
  state: InvocationState;
  records: QueueRecord[];
}

export type ReceiveResult =
  | { kind: 'batch'; batch: ReceivedBatch }
  /** fewer than batchSize messages, and the oldest has not waited maxBatchingWindowMs */
  | { kind: 'wait'; ms: number }
  /** messages were dead-lettered instead of delivered: receive again */
  | { kind: 'again' }
  /** nothing to do now: no messages, disabled, or at maximumConcurrency */
  | { kind: 'idle'; reason: 'empty' | 'disabled' | 'maximumConcurrency' };

export interface ReceiveOptions {
  workerId: string;
  /** the poll invocation's lease = function timeout + this */
  leaseGraceMs: number;
}

/**
 * Receives up to batchSize messages for a mapping and starts the poll invocation that
 * delivers them, in one transaction. A message already received maxReceiveCount times
 * (its last batch never finished) is dead-lettered here instead of delivered again.
 */
export async function receiveBatch(db: Db, mapping: PollableMapping, fn: FunctionVersion, o: ReceiveOptions): Promise<ReceiveResult> {
  return db.transaction().execute(async (tx): Promise<ReceiveResult> => {
    const slot = await mappingForReceive(tx, mapping.id, mapping.maximumConcurrency !== null);
    if (!slot) return { kind: 'idle', reason: 'disabled' };
    if (slot.maximumConcurrency !== null && slot.inFlight >= slot.maximumConcurrency) return { kind: 'idle', reason: 'maximumConcurrency' };

    const { messages, now } = await lockReceivableMessages(tx, mapping.queueName, mapping.batchSize);
    const oldest = messages[0];
    if (!oldest || !now) return { kind: 'idle', reason: 'empty' };
    const exhausted = messages.filter((m) => m.receiveCount >= mapping.maxReceiveCount);
    if (exhausted.length > 0) {
      await deadLetterMessages(tx, exhausted.map((m) => m.id), MAX_RECEIVE_COUNT_EXCEEDED);
      return { kind: 'again' };
    }
    const waited = now.getTime() - oldest.visibleAt.getTime();
    if (messages.length < mapping.batchSize && waited < mapping.maxBatchingWindowMs) {
      return { kind: 'wait', ms: mapping.maxBatchingWindowMs - waited };
    }
    // a batch stays within a sync invoke's payload limit; the rest waits for the next one
    let bytes = 0;
    const take = messages.filter((m, i) => (bytes += m.bodyBytes + RECORD_OVERHEAD_BYTES) <= MAX_BATCH_BYTES || i === 0);

    const records: QueueRecord[] = take.map((m) => ({
      messageId: m.id,
      body: m.body,
      attributes: { ApproximateReceiveCount: String(m.receiveCount + 1), SentTimestamp: String(m.sentAt.getTime()) },
      eventSource: EVENT_SOURCE,
      eventSourceQueue: mapping.queueName,
    }));
    const leaseMs = fn.timeoutMs + o.leaseGraceMs;
    const [accepted] = await acceptInvocations(tx, [
      { fn, invocationType: 'poll', payload: { Records: records }, startedBy: o.workerId, leaseMs },
    ]);
    const state = accepted?.state as InvocationState;
    await markReceived(tx, {
      receipt: state.id,
      mappingId: mapping.id,
      workerId: o.workerId,
      messageIds: take.map((m) => m.id),
      visibilityTimeoutSeconds: mapping.visibilityTimeoutSeconds,
      leaseMs,
    });
    return { kind: 'batch', batch: { mapping, fn, state, records } };
  });
}

export interface SettledBatch extends SettleResult {
  decision: BatchDecision;
  /** false when the poll invocation had already ended (its lease was reaped) */
  recorded: boolean;
}

/**
 * Records the poll invocation's outcome and settles its messages in one transaction.
 * If the invocation was already ended by the lease reaper, the messages are still
 * settled: the function did run.
 */
export async function completeBatch(db: Db, batch: ReceivedBatch, run: AttemptOutcome): Promise<SettledBatch> {
  const decision = decideBatch(
    batch.records.map((r) => r.messageId),
    batch.mapping.reportBatchItemFailures,
    run,
  );
  try {
    return await db.transaction().execute(async (tx) => {
      const { rejected } = await recordOutcomes(tx, [{ state: batch.state, policy: batch.fn, outcome: decision.outcome }]);
      const settled = await settleBatch(tx, batch.state.id, decision);
      return { ...settled, decision, recorded: rejected.length === 0 };
    });
  } catch (e) {
    if (!(e instanceof SequenceConflict)) throw e;
    const settled = await settleBatch(db, batch.state.id, decision);
    return { ...settled, decision, recorded: false };
  }
}
