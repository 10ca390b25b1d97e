// One batch of an event source mapping, from receive to settle. The receive (messages
// locked, counted, made invisible) and the poll invocation's `accepted` + `started`
// commit in one transaction; the message deletes/returns and its `succeeded` | `failed`
// in another. Either both happen or neither.
import { recordOutcomes, storableOutcome } from '../../../db/attempts.ts';
import { SequenceConflict } from '../../../db/errors.ts';
import type { FunctionVersion } from '../../../db/functions.ts';
import { acceptInvocations } from '../../../db/invocations.ts';
import { DEFAULT_MAX_CHAIN_DEPTH, isLoopStopped, type InvocationState } from '../../../db/lifecycle.ts';
import { deadLetterMessages, lockReceivableMessages, markReceived, settleBatch, type SettleResult } from '../../../db/queues/messages.ts';
import { mappingForReceive, type PollableMapping } from '../../../db/queues/poller.ts';
import { MAX_BATCH_BYTES, MAX_RECEIVE_COUNT_EXCEEDED } from '../../../db/queues/schemas.ts';
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
  /** the poll invocation's depth in a chain: its deepest message's (docs/worker.md) */
  chainDepth: number;
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
  /** messages sent this deep in a chain are dead-lettered, not delivered (default 16, 0 = no limit) */
  maxChainDepth?: number;
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
    // a loop through a queue: messages sent that deep in a chain are not delivered, but
    // kept as dead letters that say why (and can be redriven)
    const looping = messages.filter((m) => isLoopStopped(m.chainDepth, o.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH));
    if (looping.length > 0) {
      await deadLetterMessages(tx, looping.map((m) => m.id), 'RecursiveInvocationLoop');
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
    const chainDepth = Math.max(0, ...take.map((m) => m.chainDepth));
    const [accepted] = await acceptInvocations(tx, [
      { fn, invocationType: 'poll', payload: { Records: records }, startedBy: o.workerId, leaseMs, ...(chainDepth ? { chainDepth } : {}) },
    ]);
    const state = accepted?.state as InvocationState;
    await markReceived(tx, {
      receipt: state.id,
      mappingId: mapping.id,
      workerId: o.workerId,
      messageIds: take.map((m) => m.id),
      // at least the function's timeout, also when it was raised after the mapping was made:
      // no other batch receives these messages while this one may still run
      visibilityTimeoutSeconds: Math.max(mapping.visibilityTimeoutSeconds, Math.ceil(fn.timeoutMs / 1000)),
      leaseMs,
    });
    return { kind: 'batch', batch: { mapping, fn, state, records, chainDepth } };
  });
}

export interface SettledBatch extends SettleResult {
  decision: BatchDecision;
  /** false when the poll invocation had already ended (its lease was reaped) */
  recorded: boolean;
}

/** A finished batch to settle: what its run decided, and whether to record the poll invocation's outcome. */
export interface BatchSettlement {
  batch: ReceivedBatch;
  decision: BatchDecision;
  /** false once the invocation is known to have ended without us (its lease was reaped) */
  record: boolean;
}

/** What a run decides for a batch, as the ledger can store it (db/storable.ts). */
export function decideSettlement(batch: ReceivedBatch, run: AttemptOutcome): BatchDecision {
  const decision = decideBatch(
    batch.records.map((r) => r.messageId),
    batch.mapping.reportBatchItemFailures,
    storableOutcome(run),
  );
  // an invalid response's message quotes it, and may have cut a character in half
  return { ...decision, outcome: storableOutcome(decision.outcome) };
}

/**
 * Records the poll invocations' outcomes (one statement) and settles their messages, in
 * one transaction: group-committed by the poller, so that concurrent batches cost one
 * round trip. Either a batch's outcome and its settle both happen or neither.
 */
export async function settleBatches(db: Db, items: readonly BatchSettlement[]): Promise<SettledBatch[]> {
  return db.transaction().execute(async (tx) => {
    const recording = items.filter((i) => i.record);
    const { rejected } = await recordOutcomes(
      tx,
      recording.map((i) => ({ state: i.batch.state, policy: i.batch.fn, outcome: i.decision.outcome })),
    );
    const notRecorded = new Set(rejected.map((r) => r.invocationId));
    const out: SettledBatch[] = [];
    for (const i of items) {
      const settled = await settleBatch(tx, i.batch.state.id, i.decision);
      out.push({ ...settled, decision: i.decision, recorded: i.record && !notRecorded.has(i.batch.state.id) });
    }
    return out;
  });
}

/**
 * One batch: records the poll invocation's outcome and settles its messages. If the
 * invocation was already ended by the lease reaper, the messages are still settled: the
 * function did run.
 */
export async function completeBatch(db: Db, batch: ReceivedBatch, run: AttemptOutcome): Promise<SettledBatch> {
  const decision = decideSettlement(batch, run);
  try {
    return (await settleBatches(db, [{ batch, decision, record: true }]))[0] as SettledBatch;
  } catch (e) {
    if (!(e instanceof SequenceConflict)) throw e;
    return (await settleBatches(db, [{ batch, decision, record: false }]))[0] as SettledBatch;
  }
}
