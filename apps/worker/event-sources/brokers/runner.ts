// One broker mapping consumed by this worker: connect (backing off while the broker is
// away), take a batch, start its `poll` invocation (accepted + started in one
// transaction), run the function, record the outcome (and the keys of the messages it
// processed) in another, and only then acknowledge to the broker. A crash anywhere before
// the acknowledgement leaves the messages with the broker, which redelivers them:
// at-least-once, and a redelivery whose message the ledger already recorded as processed
// (its ack was lost) is acknowledged without invoking again.
import type { Logger } from 'pino';
import { recordOutcomes, storableOutcome } from '../../../../db/attempts.ts';
import {
  doneMessageKeys,
  holdBrokerMapping,
  markMessagesDone,
  openConnectionUrl,
  releaseBrokerMapping,
  reportBrokerMappingLag,
  reportBrokerMappingState,
  type ConsumableBrokerMapping,
} from '../../../../db/brokers.ts';
import { isDatabaseUnavailable, isTransientConflict } from '../../../../db/errors.ts';
import type { FunctionVersion, FunctionVersionCache } from '../../../../db/functions.ts';
import { acceptInvocations } from '../../../../db/invocations.ts';
import type { InvocationState } from '../../../../db/lifecycle.ts';
import { sendMessages } from '../../../../db/queues/messages.ts';
import { MAX_BATCH_BYTES } from '../../../../db/queues/schemas.ts';
import type { Db } from '../../../../db/schema.ts';
import { whyNotStorableJson } from '../../../../db/storable.ts';
import type { Runtimes } from '../../../runtimes/index.ts';
import { decideBatch } from '../batch-response.ts';
import { backoffMs, type BrokerConsumer, type BrokerDelivery, type BrokerDriver } from './source.ts';

export interface RunnerContext {
  db: Db;
  runtimes: Runtimes;
  versions: FunctionVersionCache;
  logger: Logger;
  workerId: string;
  secretKey: string | null;
  /** how long a worker's hold on a mapping lasts without renewal */
  holdMs: number;
  leaseGraceMs: number;
  metrics: BrokerMetrics | null;
}

export interface BrokerMetrics {
  batch(broker: string, outcome: 'succeeded' | 'partial' | 'failed'): void;
  messages(broker: string, result: 'acked' | 'retried' | 'dead_lettered' | 'rejected' | 'duplicate', n: number): void;
  lag(mappingId: string, broker: string, n: number): void;
}

export const UNSTORABLE_MESSAGE = 'UnstorableMessage';
const LAG_EVERY_MS = 2_000;

export class MappingRunner {
  private stopping = false;
  private loop: Promise<void> | null = null;
  private consumer: BrokerConsumer | null = null;
  private readonly log: Logger;
  private lastLag = 0;
  private wakeSleep: (() => void) | null = null;
  /** the state decided and not yet written (reportState) */
  private unreported: { state: string; reason: string | null } | null = null;

  constructor(
    public mapping: ConsumableBrokerMapping,
    private readonly driver: BrokerDriver,
    private readonly c: RunnerContext,
  ) {
    this.log = c.logger.child({ component: 'broker-source', mappingId: mapping.id, broker: mapping.broker });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops after the batch in flight has been recorded and settled. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSleep?.();
    this.consumer?.interrupt();
    await this.loop;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeSleep = done;
    });
  }

  private async state(state: string, reason: string | null = null): Promise<void> {
    this.unreported = { state, reason };
    await this.reportState();
  }

  /**
   * Writes the state last decided if it is not written yet. A report the database refused
   * (it was away, out of connections) is made again at every hold renewal, so the mapping
   * does not go on saying Connecting or Error while it consumes.
   */
  private async reportState(): Promise<void> {
    const s = this.unreported;
    if (!s) return;
    try {
      await reportBrokerMappingState(this.c.db, this.mapping.id, s.state, s.reason);
      if (this.unreported === s) this.unreported = null;
    } catch (e) {
      this.log.warn({ err: e }, 'could not report the mapping state; reporting it again at the next hold renewal');
    }
  }

  private async hold(): Promise<boolean> {
    try {
      return await holdBrokerMapping(this.c.db, this.mapping.id, this.c.workerId, this.c.holdMs);
    } catch (e) {
      this.log.warn({ err: e }, 'could not renew the hold on the mapping');
      return false;
    }
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      if (!(await this.hold())) {
        await this.sleep(Math.min(1_000, this.c.holdMs / 3));
        continue;
      }
      try {
        const url = openConnectionUrl(this.mapping, this.c.secretKey);
        await this.state('Connecting');
        const fn = await this.function();
        // a batch may run for the function's timeout before it is acknowledged
        this.consumer = await this.driver.open(this.mapping, url, { ackWaitMs: fn.timeoutMs + this.c.leaseGraceMs });
        failures = 0;
        await this.state('Enabled');
        await this.consume(this.consumer);
      } catch (e) {
        failures++;
        const delay = backoffMs(failures);
        // the message may hold the URL's credentials (amqplib quotes what it dialled)
        const reason = redact(String((e as Error)?.message ?? e));
        this.log.warn({ err: reason, retryInMs: delay }, 'broker source failed; reconnecting');
        await this.state('Error', reason);
        await this.closeConsumer();
        if (!this.stopping) await this.sleep(delay);
        continue;
      }
      await this.closeConsumer();
    }
    await this.closeConsumer();
    await releaseBrokerMapping(this.c.db, this.mapping.id, this.c.workerId).catch(() => {});
  }

  private async closeConsumer(): Promise<void> {
    const c = this.consumer;
    this.consumer = null;
    await c?.close().catch(() => {});
  }

  private async consume(consumer: BrokerConsumer): Promise<void> {
    let lastHold = Date.now();
    while (!this.stopping) {
      if (Date.now() - lastHold > this.c.holdMs / 3) {
        if (!(await this.hold())) return; // another worker holds it now (ours ran out) or it was disabled
        lastHold = Date.now();
        await this.reportState();
      }
      const batch = await consumer.next();
      // idle: the lag is worth a look (likely 0); busy: every few seconds
      if (batch.length === 0 || Date.now() - this.lastLag > LAG_EVERY_MS) await this.reportLag(consumer);
      if (batch.length === 0) continue;
      if (this.stopping) {
        await consumer.release(batch);
        return;
      }
      await this.deliver(consumer, batch);
    }
  }

  private async reportLag(consumer: BrokerConsumer): Promise<void> {
    this.lastLag = Date.now();
    try {
      const lag = await consumer.lag();
      if (lag === null) return;
      this.c.metrics?.lag(this.mapping.id, this.mapping.broker, lag);
      await reportBrokerMappingLag(this.c.db, this.mapping.id, lag);
    } catch (e) {
      this.log.debug({ err: e }, 'lag not reported');
    }
  }

  private async function(): Promise<FunctionVersion> {
    const m = this.mapping;
    if (m.functionVersion === null) throw new Error(`function ${m.functionName} was deleted`);
    const fn = await this.c.versions.get(m.functionName, m.functionVersion);
    if (!fn) throw new Error(`function ${m.functionName} version ${m.functionVersion} not found`);
    return fn;
  }

  /** A batch as it came from the broker: refuse what cannot be stored, skip what is done, invoke the rest in chunks under the payload limit. */
  private async deliver(consumer: BrokerConsumer, batch: BrokerDelivery[]): Promise<void> {
    const m = this.mapping;
    // a message the ledger cannot store cannot be delivered: it alone is dead-lettered,
    // its neighbours go on (db/storable.ts)
    const unstorable: BrokerDelivery[] = [];
    const ok: BrokerDelivery[] = [];
    for (const d of batch) {
      const why = whyNotStorableJson(d.record) ?? (d.bytes > MAX_BATCH_BYTES ? `it is larger than a batch may be (${MAX_BATCH_BYTES} bytes)` : null);
      if (why === null) ok.push(d);
      else {
        unstorable.push(d);
        this.log.warn({ itemIdentifier: d.itemIdentifier, reason: why }, 'a message cannot be stored in the ledger; dead-lettered without invoking');
      }
    }
    if (unstorable.length > 0) {
      await consumer.reject(unstorable, UNSTORABLE_MESSAGE);
      this.c.metrics?.messages(m.broker, 'rejected', unstorable.length);
      await this.state('Enabled', `${UNSTORABLE_MESSAGE}: ${unstorable.length} message(s) could not be stored and were dead-lettered`);
    }

    const keys = ok.map((d) => d.dedupKey).filter((k): k is string => k !== null);
    const done = await this.withDatabase(() => doneMessageKeys(this.c.db, m.id, keys));
    const duplicates = ok.filter((d) => d.dedupKey !== null && done.has(d.dedupKey));
    if (duplicates.length > 0) {
      await consumer.settle({ succeeded: duplicates, failed: [], attempt: 1 });
      this.c.metrics?.messages(m.broker, 'duplicate', duplicates.length);
    }
    let rest = ok.filter((d) => !(d.dedupKey !== null && done.has(d.dedupKey)));
    while (rest.length > 0 && !this.stopping) {
      let bytes = 0;
      const chunk = rest.filter((d, i) => (bytes += d.bytes) <= MAX_BATCH_BYTES || i === 0);
      rest = rest.slice(chunk.length);
      await this.invoke(consumer, chunk, 1);
    }
    if (rest.length > 0) await consumer.release(rest);
  }

  /** One poll invocation for `batch`, then its settle; ordered sources retry in place. */
  private async invoke(consumer: BrokerConsumer, batch: BrokerDelivery[], attempt: number): Promise<void> {
    const m = this.mapping;
    const fn = await this.function();
    const payload = this.driver.event(m, batch);
    const leaseMs = fn.timeoutMs + this.c.leaseGraceMs;
    const state = await this.withDatabase(async () => {
      const [accepted] = await acceptInvocations(this.c.db, [{ fn, invocationType: 'poll', payload, startedBy: this.c.workerId, leaseMs }]);
      return accepted?.state as InvocationState;
    });
    const run = await this.c.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload });

    const decision = decideBatch(batch.map((d) => d.itemIdentifier), m.reportBatchItemFailures, storableOutcome(run));
    const outcome = storableOutcome(decision.outcome);
    const failedIds = new Set(decision.failed);
    let succeeded = batch.filter((d) => !failedIds.has(d.itemIdentifier));
    let failed = batch.filter((d) => failedIds.has(d.itemIdentifier));
    if (consumer.ordered && failed.length > 0) {
      // a stream is processed in order: everything from the first failure on is retried
      const first = batch.findIndex((d) => failedIds.has(d.itemIdentifier));
      succeeded = batch.slice(0, first);
      failed = batch.slice(first);
    }
    const exhausted = failed.length > 0 && consumer.exhausted(failed, attempt);
    await this.withDatabase(() =>
      this.c.db.transaction().execute(async (tx) => {
        const { rejected } = await recordOutcomes(tx, [{ state, policy: fn, outcome }]);
        if (rejected.length > 0) this.log.warn({ invocationId: state.id }, 'the poll invocation had already ended (its lease ran out); settling its messages anyway');
        await markMessagesDone(tx, m.id, state.id, succeeded.map((d) => d.dedupKey).filter((k): k is string => k !== null));
        if (exhausted && m.onFailureQueue) {
          await sendMessages(tx, m.onFailureQueue, [{ body: onFailureRecord(m, fn, state.id, attempt, outcome, failed) }]);
        }
      }),
    );
    this.c.metrics?.batch(m.broker, !outcome.ok ? 'failed' : failed.length > 0 ? 'partial' : 'succeeded');

    const next = await consumer.settle({ succeeded, failed, attempt });
    this.c.metrics?.messages(m.broker, 'acked', succeeded.length);
    if (failed.length > 0) this.c.metrics?.messages(m.broker, exhausted ? 'dead_lettered' : 'retried', failed.length);
    if (!next || next.retry.length === 0) return;
    // ordered: the same messages again, after a backoff, before anything newer
    const until = Date.now() + next.delayMs;
    while (!this.stopping && Date.now() < until) {
      consumer.hold(next.retry);
      await this.sleep(Math.min(5_000, until - Date.now()));
    }
    if (this.stopping) {
      await consumer.release(next.retry);
      return;
    }
    await this.invoke(consumer, next.retry, attempt + 1);
  }

  /**
   * A ledger write that must happen before anything is acknowledged: retried while the
   * database is away. If the worker stops meanwhile, the error propagates, nothing is
   * acknowledged, and the broker redelivers.
   */
  private async withDatabase<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (e) {
        if (!(isDatabaseUnavailable(e) || isTransientConflict(e)) || this.stopping) throw e;
        this.log.warn({ err: e, attempt }, 'database unavailable; the batch waits, unacknowledged');
        await this.sleep(Math.min(5_000, 100 * 2 ** attempt));
      }
    }
  }
}

/** What the on-failure queue receives when an ordered batch used its retries: where the records are, not the records. */
function onFailureRecord(
  m: ConsumableBrokerMapping,
  fn: FunctionVersion,
  invocationId: string,
  attempt: number,
  outcome: { ok: boolean; error?: { errorType: string; errorMessage: string } },
  failed: readonly BrokerDelivery[],
): unknown {
  return {
    requestContext: { condition: 'RetryAttemptsExhausted', approximateInvokeCount: attempt, functionName: fn.name, functionVersion: fn.version, invocationId },
    responseContext: outcome.ok ? { batchItemFailures: true } : { errorType: outcome.error?.errorType ?? null, errorMessage: (outcome.error?.errorMessage ?? '').slice(0, 1000) },
    source: {
      broker: m.broker,
      mappingId: m.id,
      stream: m.stream,
      records: failed.map((d) => ({ group: d.group, offset: d.record.offset ?? null, itemIdentifier: d.itemIdentifier })),
    },
  };
}

/** Credentials out of any URL in a message. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@/\s]*@/gi, '$1***@');
}
