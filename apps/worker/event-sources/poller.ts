// The event source poller: runs in every worker process. For each enabled mapping it
// receives batches (SKIP LOCKED, so any number of workers share a queue), invokes the
// function once per batch and settles the messages. It sleeps until the poll interval,
// the end of a batching window, a finished batch, or a NOTIFY from a send.
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { outcomeNotStored } from '../../../db/attempts.ts';
import { isDatabaseUnavailable, SequenceConflict } from '../../../db/errors.ts';
import { FunctionVersionCache } from '../../../db/functions.ts';
import { GroupCommit, OUTCOME_RETRY } from '../../../db/group-commit.ts';
import { listenToLedger, type LedgerNotifications } from '../../../db/notifications.ts';
import { extendBatches, listPollableMappings, pruneExpiredBatches, type PollableMapping } from '../../../db/queues/poller.ts';
import { MESSAGES_CHANNEL } from '../../../db/queues/schemas.ts';
import type { Db } from '../../../db/schema.ts';
import type { Runtimes } from '../../runtimes/index.ts';
import { DEFAULT_LEASE_GRACE_MS, extendLeases } from '../../../db/queue-rows.ts';
import { wakeOn } from '../notify.ts';
import { decideSettlement, receiveBatch, settleBatches, type BatchSettlement, type ReceivedBatch, type SettledBatch } from './batches.ts';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { invocationMetrics } from '../../telemetry/metrics.ts';
import { reportOutcome } from '../../telemetry/outcome-log.ts';
import { attemptAttributes, failSpan, inSpan, SpanKind, tracingOn } from '../../telemetry/tracing.ts';

export interface EventSourcePollerOptions {
  db: Db;
  runtimes: Runtimes;
  logger: Logger;
  workerId: string;
  /** the process's LISTEN connection; without it (and without databaseUrl) the poller only polls */
  notifications?: LedgerNotifications;
  /** for a LISTEN connection of its own when `notifications` is not given */
  databaseUrl?: string;
  registry?: Registry;
  /** how often mappings are polled when nothing wakes the poller (default 1000) */
  pollIntervalMs?: number;
  /** batches this process runs at once, over all mappings (default 16) */
  maxBatchesInFlight?: number;
  /** the poll invocation's lease = function timeout + this (default 30000) */
  leaseGraceMs?: number;
  /** messages sent this deep in a chain are dead-lettered as RecursiveInvocationLoop (default 16, 0 = no limit) */
  maxChainDepth?: number;
}

export interface EventSourcePoller {
  start(): Promise<void>;
  /** stop receiving; wait for the batches in flight to finish and settle */
  stop(): Promise<void>;
  /** batches running in this process */
  readonly inFlight: number;
}

const PRUNE_EVERY_MS = 60_000;

export function createEventSourcePoller(o: EventSourcePollerOptions): EventSourcePoller {
  const pollIntervalMs = o.pollIntervalMs ?? 1_000;
  const maxInFlight = o.maxBatchesInFlight ?? 16;
  const leaseGraceMs = o.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS;
  const log = o.logger.child({ component: 'event-sources' });
  const versions = new FunctionVersionCache(o.db);
  const metrics = o.registry ? makeMetrics(o.registry) : null;
  const outcomes = o.registry ? invocationMetrics(o.registry) : null;

  const running = new Set<Promise<void>>();
  /** invocation id → when its batch started, for heartbeats */
  const startedAt = new Map<string, number>();
  let heartbeat: NodeJS.Timeout | null = null;
  let stopping = true;
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  let unlisten: (() => void) | null = null;
  let own: LedgerNotifications | null = null;
  let lastPrune = 0;
  const warned = new Set<string>();
  // the function has run: settles are retried while the database is away; if it stays
  // away, the messages reappear after their visibility timeout and the lease reaper ends
  // the invocation
  const settles = new GroupCommit<BatchSettlement, SettledBatch>((items) => settleBatches(o.db, items), {
    retry: OUTCOME_RETRY,
    maxBatch: maxInFlight,
    replace: (item, e) => {
      // the invocation was ended by the lease reaper: settle the messages all the same
      if (e instanceof SequenceConflict) return { ...item, record: false };
      // refused on its own: the poll invocation fails with the reason, its messages return
      const ids = item.batch.records.map((r) => r.messageId);
      return { ...item, decision: { succeeded: [], failed: ids, outcome: outcomeNotStored(item.decision.outcome, e) } };
    },
  });

  const wakeUp = () => wake?.();

  function launch(batch: ReceivedBatch): void {
    startedAt.set(batch.state.id, Date.now());
    const p = runBatch(batch).finally(() => {
      running.delete(p);
      startedAt.delete(batch.state.id);
      wakeUp();
    });
    running.add(p);
  }

  /**
   * A batch may wait for a runtime thread after it started: keep its lease (and its
   * place under maximumConcurrency) alive like the async worker's heartbeats do.
   * Message visibility is not extended: that is the queue's promise to other consumers.
   */
  async function beat(): Promise<void> {
    const threshold = Date.now() - leaseGraceMs / 3;
    const ids = [...startedAt].filter(([, at]) => at <= threshold).map(([id]) => id);
    if (ids.length === 0) return;
    try {
      await extendLeases(o.db, o.workerId, ids, leaseGraceMs);
      await extendBatches(o.db, ids, leaseGraceMs);
    } catch (e) {
      log.warn({ err: e }, 'batch lease heartbeat failed');
    }
  }

  async function runBatch(batch: ReceivedBatch): Promise<void> {
    const { state, fn, records, mapping } = batch;
    // a batch is a trace of its own (its messages carry no producer context yet)
    const attributes = tracingOn()
      ? {
          ...attemptAttributes({ invocationId: state.id, functionName: fn.name, functionVersion: fn.version, attempt: state.attempts, trigger: 'pubsub' }),
          'messaging.batch.message_count': records.length,
          'messaging.destination.name': mapping.queueName,
        }
      : {};
    const run = await inSpan(fn.name, { kind: SpanKind.CONSUMER, parent: ROOT_CONTEXT, attributes }, async (span) => {
      const run = await o.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload: { Records: records }, chainDepth: batch.chainDepth });
      if (!run.ok) failSpan(span, run.error.errorType, run.error.errorMessage);
      return run;
    });
    try {
      const settled = await settles.submit({ batch, decision: decideSettlement(batch, run), record: true });
      reportOutcome(log, outcomes, {
        invocationId: state.id,
        functionName: fn.name,
        functionVersion: fn.version,
        type: 'poll',
        attempt: state.attempts,
        status: settled.decision.outcome.ok ? 'succeeded' : 'failed',
        durationMs: run.durationMs,
        ...(run.ok ? {} : { errorType: run.error.errorType }),
      });
      metrics?.batches.inc({ outcome: settled.decision.outcome.ok ? (settled.decision.failed.length ? 'partial' : 'succeeded') : 'failed' });
      metrics?.messages.inc({ result: 'deleted' }, settled.deleted);
      metrics?.messages.inc({ result: 'returned' }, settled.returned);
      metrics?.messages.inc({ result: 'dead_lettered' }, settled.deadLettered);
      if (!settled.recorded) log.warn({ invocationId: state.id, mappingId: mapping.id }, 'poll invocation had already ended (lease expired); messages settled anyway');
    } catch (e) {
      log.error({ err: e, invocationId: state.id, mappingId: mapping.id }, 'could not settle a batch; its messages reappear after the visibility timeout');
    }
  }

  /** One pass: round-robin over the mappings, one batch each, until none has more or slots run out. */
  async function pollMappings(): Promise<number> {
    let nextMs = pollIntervalMs;
    if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
      lastPrune = Date.now();
      await pruneExpiredBatches(o.db);
    }
    let active: PollableMapping[] = await listPollableMappings(o.db);
    while (active.length > 0 && !stopping) {
      const again: PollableMapping[] = [];
      for (const m of active) {
        if (stopping || running.size >= maxInFlight) return nextMs;
        if (m.functionVersion === null) {
          if (!warned.has(m.id)) log.warn({ mappingId: m.id, functionName: m.functionName }, 'mapping points at a deleted function; not polling it');
          warned.add(m.id);
          continue;
        }
        const fn = await versions.get(m.functionName, m.functionVersion);
        if (!fn) continue;
        const r = await receiveBatch(o.db, m, fn, { workerId: o.workerId, leaseGraceMs, ...(o.maxChainDepth !== undefined ? { maxChainDepth: o.maxChainDepth } : {}) });
        if (r.kind === 'batch') {
          launch(r.batch);
          again.push(m);
        } else if (r.kind === 'again') {
          again.push(m);
        } else if (r.kind === 'wait') {
          nextMs = Math.min(nextMs, Math.max(1, r.ms));
        }
      }
      active = again;
    }
    return nextMs;
  }

  async function run(): Promise<void> {
    while (!stopping) {
      let nextMs = pollIntervalMs;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      try {
        if (running.size < maxInFlight) nextMs = await pollMappings();
      } catch (e) {
        if (isDatabaseUnavailable(e)) log.warn({ err: e }, 'database unavailable; event source polling retries');
        else log.error({ err: e }, 'event source poll failed');
      }
      if (stopping) break;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, nextMs)))]);
      clearTimeout(timer);
    }
  }

  return {
    get inFlight() {
      return running.size;
    },
    async start() {
      if (!stopping) return;
      stopping = false;
      if (!o.notifications && o.databaseUrl) {
        own = listenToLedger(o.databaseUrl, { onError: (e, retryInMs) => log.warn({ err: (e as Error).message, retryInMs }, 'LISTEN connection failed; polling meanwhile') });
      }
      const notifications = o.notifications ?? own;
      if (notifications) unlisten = wakeOn(notifications, MESSAGES_CHANNEL, wakeUp);
      heartbeat = setInterval(() => void beat(), Math.max(100, Math.floor(leaseGraceMs / 3)));
      loop = run();
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      wakeUp();
      await loop;
      while (running.size > 0) await Promise.all([...running]);
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = null;
      unlisten?.();
      unlisten = null;
      await own?.close();
      own = null;
    },
  };
}

function makeMetrics(registry: Registry) {
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
  return {
    batches: counter('ledger_queue_batches_total', 'Batches delivered by event source mappings, by outcome', ['outcome']),
    messages: counter('ledger_queue_messages_settled_total', 'Queue messages settled after a batch, by result', ['result']),
  };
}
