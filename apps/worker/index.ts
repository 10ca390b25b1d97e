// The async engine. A loop claims due invocations in batches (SKIP LOCKED, attempts
// started in the claiming transaction), runs them on the runtimes, and group-commits
// their outcomes. Claims take only as many invocations as there are free slots, so
// every claimed attempt runs at once and shutdown never has claimed-but-unstarted work
// to give back. LISTEN wakes idle workers; polling is the fallback. Heartbeats extend
// leases, a reaper recovers attempts whose worker died, a deliverer POSTs URL destinations.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { storableOutcome, type Outcome } from '../../db/attempts.ts';
import { FunctionVersionCache } from '../../db/functions.ts';
import { DEFAULT_LEASE_GRACE_MS, extendLeases } from '../../db/queue-rows.ts';
import { DEFAULT_MAX_CHAIN_DEPTH } from '../../db/lifecycle.ts';
import { listenToLedger, type LedgerNotifications } from '../../db/notifications.ts';
import type { Db, Executor } from '../../db/schema.ts';
import { WORK_CHANNEL } from '../../db/writer.ts';
import type { Runtimes } from '../runtimes/index.ts';
import { claimDueInvocations, type ClaimedAttempt } from './claim.ts';
import { CompletionFlusher } from './complete.ts';
import {
  DEFAULT_DELIVERY_POLICY,
  DestinationDeliverer,
  enqueueDestinations,
  type DeliveryPolicy,
  type FinishedInvocation,
} from './destinations.ts';
import { reapExpiredLeases } from './leases.ts';
import { workerMetrics, type WorkerMetrics } from './metrics.ts';
import { wakeOn } from './notify.ts';
import { createEventSourcePoller, type EventSourcePoller } from './event-sources/index.ts';
import { SchedulerLoop } from './scheduler.ts';
import { createBrokerSources, type BrokerSources } from './event-sources/brokers/index.ts';
import { createStreamPoller, type StreamPoller } from './event-sources/streams.ts';
import { createChangeStreamReader, type ChangeStreamReader } from './event-sources/change-streams.ts';
import { invocationMetrics, type InvocationMetrics } from '../telemetry/metrics.ts';
import { reportOutcome } from '../telemetry/outcome-log.ts';
import { attemptAttributes, contextFrom, failSpan, inSpan, linkTo, SpanKind, traceIdOf, tracingOn } from '../telemetry/tracing.ts';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { getHeapStatistics } from 'node:v8';
import { AdaptiveConcurrency, type AdaptiveLimits } from './adaptive-concurrency.ts';
import { DEFAULT_REPLAY_CONCURRENCY_PER_WORKER, ReplayRunner } from './replays.ts';

export { claimDueInvocations, type ClaimedAttempt } from './claim.ts';
export { WORKER_LOST } from '../../db/decisions.ts';
export { reapExpiredLeases } from './leases.ts';
export { extendLeases } from '../../db/queue-rows.ts';
export {
  DestinationDeliverer,
  enqueueDestinations,
  invocationRecord,
  listDestinationDeliveries,
  type DestinationDelivery,
  type InvocationRecord,
} from './destinations.ts';

export interface WorkerOptions {
  db: Db;
  /** for LISTEN; a dedicated connection outside the pool (unless `notifications` is given) */
  databaseUrl: string;
  /** the process's one LISTEN connection, shared with the API; made from databaseUrl otherwise */
  notifications?: LedgerNotifications;
  runtimes: Runtimes;
  logger: Logger;
  registry: Registry;
  workerId: string;
  /** attempts this worker runs at once (and the most it ever holds); with `adaptive`, where it starts */
  concurrency: number;
  /** WORKER_CONCURRENCY unset: the limit grows from `concurrency` up to `adaptive.max` while that pays (docs/worker.md) */
  adaptive?: Omit<AdaptiveLimits, 'min'>;
  claimBatchSize: number;
  pollIntervalMs: number;
  /** lease = timeoutMs + leaseGraceMs; heartbeats keep long attempts at now() + leaseGraceMs (default 30 s) */
  leaseGraceMs?: number;
  /** how often expired leases are looked for (default leaseGraceMs / 4, between 250 ms and 5 s) */
  reapIntervalMs?: number;
  /** longest backoff of work throttled by reservedConcurrency (default 10 s) */
  throttleMaxDelayMs?: number;
  /** LISTEN on ledger_work and ledger_messages (default true) */
  listen?: boolean;
  /** URL destination retries */
  delivery?: Partial<DeliveryPolicy>;
  /** claims in flight at once while the queue stays full (default 2) */
  maxConcurrentClaims?: number;
  /** how often due URL deliveries are looked for (default 1 s) */
  deliveryIntervalMs?: number;
  /** MAX_CHAIN_DEPTH: a destination target this deep in its chain is stopped (default 16, 0 = no limit) */
  maxChainDepth?: number;
  /** how often due schedule ticks are looked for (default pollIntervalMs, at most 1 s); 0 turns the scheduler off */
  schedulerIntervalMs?: number;
  /** opens the sealed connection URLs of broker mappings (LEDGER_SECRET_KEY; docs/brokers.md) */
  secretKey?: string | null;
  /** REPLAY_CONCURRENCY: replay attempts this worker runs at once, beside `concurrency` (default 2, 0: none; docs/replay.md) */
  replayConcurrency?: number;
  /** first retry of a failed stream batch after this, doubling up to 30 s (default 1 s; docs/streams.md) */
  streamRetryBaseMs?: number;
}

export interface Worker {
  start(): Promise<void>;
  /** stop claiming, release what has not started, wait for running attempts */
  stop(): Promise<void>;
}

export function createWorker(options: WorkerOptions): Worker {
  return new Engine(options);
}

class Engine implements Worker {
  private readonly versions: FunctionVersionCache;
  private readonly flusher: CompletionFlusher;
  /** queue messages delivered in batches by event source mappings (poll invocations) */
  private readonly eventSources: EventSourcePoller;
  /** RabbitMQ queues and NATS streams delivered in batches by broker mappings (docs/brokers.md) */
  private readonly brokerSources: BrokerSources;
  /** the ledger's own streams delivered shard by shard by stream mappings (docs/streams.md) */
  private readonly streams: StreamPoller;
  /** table changes read from replication slots into change streams (docs/streams.md) */
  private readonly changeStreams: ChangeStreamReader;
  private readonly metrics: WorkerMetrics;
  private readonly invocationMetrics: InvocationMetrics;
  private readonly graceMs: number;
  private readonly deliverer: DestinationDeliverer;
  /** replay runs (docs/replay.md), under their own limit */
  private readonly replays: ReplayRunner;
  private readonly running = new Map<string, { attempt: ClaimedAttempt; startedAt: number }>();
  private readonly inFlightRuns = new Set<Promise<void>>();
  private started = false;
  private stopping = false;
  /** claims in flight, and the slots they may fill */
  private readonly claiming = new Set<Promise<void>>();
  private claimingSlots = 0;
  private wakeRequested = false;
  /** the last claim was full: more is probably due */
  private more = false;
  private readonly adaptive: AdaptiveConcurrency | null;
  /** attempts held at once now: `concurrency`, or what the adaptive limit says */
  private concurrency: number;
  private claimFailures = 0;
  private unlisten: (() => void) | null = null;
  /** the LISTEN connection: shared, or this worker's own (closed at stop) */
  private readonly notifications: LedgerNotifications | null;
  private readonly ownsNotifications: boolean;
  private timers: NodeJS.Timeout[] = [];
  private wakeTimer: { at: number; timer: NodeJS.Timeout } | null = null;
  private backgroundTasks = new Set<Promise<unknown>>();
  /** fires schedule ticks (docs/schedules.md) */
  private readonly scheduler: SchedulerLoop | null;

  constructor(private readonly o: WorkerOptions) {
    this.adaptive = o.adaptive ? new AdaptiveConcurrency({ min: o.concurrency, max: Math.max(o.concurrency, o.adaptive.max) }) : null;
    this.concurrency = o.concurrency;
    this.versions = new FunctionVersionCache(o.db);
    this.graceMs = o.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS;
    this.metrics = workerMetrics(o.registry, o.db);
    this.invocationMetrics = invocationMetrics(o.registry);
    this.deliverer = new DestinationDeliverer(o.db, { ...DEFAULT_DELIVERY_POLICY, ...o.delivery }, {
      onAttempted: (n) => this.metrics.destinations.inc({ kind: 'url' }, n),
      onError: (e) => o.logger.warn({ err: e }, 'destination delivery failed'),
    });
    this.ownsNotifications = o.listen !== false && !o.notifications;
    this.notifications =
      o.listen === false
        ? null
        : (o.notifications ??
          listenToLedger(o.databaseUrl, {
            onError: (e, retryInMs) => o.logger.warn({ err: (e as Error).message, retryInMs }, 'LISTEN connection failed; polling meanwhile'),
          }));
    this.eventSources = createEventSourcePoller({
      db: o.db,
      runtimes: o.runtimes,
      logger: o.logger,
      registry: o.registry,
      workerId: o.workerId,
      ...(this.notifications ? { notifications: this.notifications } : {}),
      pollIntervalMs: o.pollIntervalMs,
      leaseGraceMs: this.graceMs,
      ...(o.maxChainDepth !== undefined ? { maxChainDepth: o.maxChainDepth } : {}),
    });
    this.streams = createStreamPoller({
      db: o.db,
      runtimes: o.runtimes,
      logger: o.logger,
      registry: o.registry,
      workerId: o.workerId,
      ...(this.notifications ? { notifications: this.notifications } : {}),
      pollIntervalMs: o.pollIntervalMs,
      leaseGraceMs: this.graceMs,
      ...(o.streamRetryBaseMs !== undefined ? { retryBaseMs: o.streamRetryBaseMs } : {}),
      ...(o.maxChainDepth !== undefined ? { maxChainDepth: o.maxChainDepth } : {}),
      onDestinations: () => setImmediate(() => this.deliver()),
    });
    this.changeStreams = createChangeStreamReader({ db: o.db, connectionString: o.databaseUrl, secretKey: o.secretKey ?? null, logger: o.logger, registry: o.registry, pollIntervalMs: Math.max(250, o.pollIntervalMs) });
    this.brokerSources = createBrokerSources({
      db: o.db,
      runtimes: o.runtimes,
      logger: o.logger,
      registry: o.registry,
      workerId: o.workerId,
      secretKey: o.secretKey ?? null,
      ...(this.notifications ? { notifications: this.notifications } : {}),
      leaseGraceMs: this.graceMs,
    });
    this.flusher = new CompletionFlusher({
      db: o.db,
      logger: o.logger,
      onTerminal: this.onTerminal,
      onBatch: (n) => this.invocationMetrics.commitBatch.observe({ kind: 'async_outcome' }, n),
    });
    const schedulerMs = o.schedulerIntervalMs ?? Math.min(1_000, o.pollIntervalMs);
    this.scheduler =
      schedulerMs > 0 ? new SchedulerLoop({ db: o.db, logger: o.logger, workerId: o.workerId, intervalMs: schedulerMs, onFired: () => this.wake(), registry: o.registry }) : null;
    this.replays = new ReplayRunner({
      db: o.db,
      runtimes: o.runtimes,
      logger: o.logger,
      registry: o.registry,
      workerId: o.workerId,
      versions: this.versions,
      concurrency: o.replayConcurrency ?? DEFAULT_REPLAY_CONCURRENCY_PER_WORKER,
      pollIntervalMs: o.pollIntervalMs,
      leaseGraceMs: this.graceMs,
    });
  }

  /** The completion hook: destinations of what just became terminal, in the same transaction. */
  private readonly onTerminal = async (tx: Executor, finished: FinishedInvocation[]): Promise<void> => {
    const urls = await enqueueDestinations(tx, finished, { maxChainDepth: this.o.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH });
    if (urls > 0) setImmediate(() => this.deliver());
  };

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const every = (ms: number, fn: () => void) => this.timers.push(setInterval(fn, ms));
    every(this.o.pollIntervalMs, () => this.wake());
    every(Math.max(100, Math.floor(this.graceMs / 3)), () => this.background(this.heartbeat()));
    const reapMs = this.o.reapIntervalMs ?? Math.min(5_000, Math.max(250, Math.floor(this.graceMs / 4)));
    every(reapMs, () => this.background(this.reap()));
    every(this.o.deliveryIntervalMs ?? 1_000, () => this.deliver());
    if (this.notifications) this.unlisten = wakeOn(this.notifications, WORK_CHANNEL, () => this.wake());
    await this.eventSources.start();
    this.scheduler?.start();
    await this.brokerSources.start();
    await this.streams.start();
    await this.changeStreams.start();
    this.replays.start();
    this.o.logger.info({ workerId: this.o.workerId, concurrency: this.o.concurrency, ...(this.o.adaptive ? { adaptiveMax: this.o.adaptive.max } : {}) }, 'worker started');
    this.wake();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.wakeTimer) clearTimeout(this.wakeTimer.timer);
    this.unlisten?.();
    // batches in flight finish and settle their messages, alongside the attempts below
    const eventSourcesStopped = this.eventSources.stop();
    // a pass in flight commits or rolls back whole; no new one starts
    const schedulerStopped = this.scheduler?.stop();
    const brokerSourcesStopped = this.brokerSources.stop();
    const streamsStopped = this.streams.stop();
    const changeStreamsStopped = this.changeStreams.stop();
    const replaysStopped = this.replays.stop();
    // POSTs in flight are abandoned (recorded, tried again later): a hanging target must not hold the stop
    const deliveriesStopped = this.deliverer.stop();
    // a claim in flight starts its attempts; they are waited for like the others
    await Promise.allSettled([...this.claiming]);
    // running attempts end by their deadline at the latest (the runtimes enforce it);
    // keep their leases alive meanwhile
    const beat = setInterval(() => this.background(this.heartbeat()), Math.max(100, Math.floor(this.graceMs / 3)));
    try {
      while (this.inFlightRuns.size > 0) await Promise.allSettled([...this.inFlightRuns]);
      await this.flusher.drained();
    } finally {
      clearInterval(beat);
    }
    await eventSourcesStopped;
    await schedulerStopped;
    await brokerSourcesStopped;
    await streamsStopped;
    await changeStreamsStopped;
    await replaysStopped;
    await deliveriesStopped;
    await Promise.allSettled([...this.backgroundTasks]);
    if (this.ownsNotifications) await this.notifications?.close();
    this.o.logger.info({ workerId: this.o.workerId }, 'worker stopped');
  }

  /** Something may be due: claim when there is room. */
  private wake(): void {
    this.wakeRequested = true;
    this.pump();
  }

  private wakeAt(at: number): void {
    if (this.stopping) return;
    if (this.wakeTimer && this.wakeTimer.at <= at) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer.timer);
    const timer = setTimeout(() => {
      this.wakeTimer = null;
      this.wake();
    }, Math.max(0, at - Date.now() + 5));
    this.wakeTimer = { at, timer };
  }

  private freeSlots(): number {
    // finished attempts whose outcome is still being written hold a slot beyond a backlog
    // of `concurrency`, so a slow database slows claiming instead of piling up outcomes
    const backlog = Math.max(0, this.flusher.size - this.concurrency);
    return this.concurrency - this.running.size - this.claimingSlots - backlog;
  }

  /** how much of its lease the longest-held running attempt has used (the map keeps claim order) */
  private oldestHeldShare(): number {
    const oldest = this.running.values().next().value;
    return oldest ? (Date.now() - oldest.startedAt) / Math.max(1, oldest.attempt.leaseMs) : 0;
  }

  private pump(): void {
    if (!this.started || this.stopping) return;
    // a second claim overlaps the first's round trips only while the queue looks full
    if (this.claiming.size >= (this.more ? (this.o.maxConcurrentClaims ?? 2) : 1)) return;
    if (!this.wakeRequested && !this.more) return;
    const free = this.freeSlots();
    // when busy, wait for a worthwhile batch instead of claiming one by one
    const idle = this.running.size === 0 && this.claiming.size === 0;
    const worthwhile = idle ? 1 : Math.max(1, Math.min(this.o.claimBatchSize, Math.floor(this.concurrency / 4)));
    if (free < worthwhile) return;
    const limit = Math.min(free, this.o.claimBatchSize);
    this.wakeRequested = false;
    this.claimingSlots += limit;
    const p: Promise<void> = this.claim(limit).finally(() => {
      this.claimingSlots -= limit;
      this.claiming.delete(p);
      this.pump();
    });
    this.claiming.add(p);
    this.pump();
  }

  private async claim(limit: number): Promise<void> {
    try {
      // one span per claim batch, linked to the trace of every attempt it started
      const r = await inSpan('claim', { kind: SpanKind.INTERNAL, parent: ROOT_CONTEXT, attributes: { 'invoke_ledger.claim.limit': limit } }, async (span) => {
        const claimed = await claimDueInvocations(this.o.db, {
          workerId: this.o.workerId,
          limit,
          versions: this.versions,
          leaseGraceMs: this.graceMs,
          throttleMaxDelayMs: this.o.throttleMaxDelayMs ?? 10_000,
          onTerminal: this.onTerminal,
        });
        if (span) {
          span.setAttribute('messaging.batch.message_count', claimed.picked);
          for (const a of claimed.started) {
            const link = linkTo(a.trace, { 'faas.invocation_id': a.state.id });
            if (link) span.addLink(link);
          }
        }
        return claimed;
      });
      this.claimFailures = 0;
      this.metrics.claimBatch.observe(r.picked);
      this.more = r.picked >= limit;
      if (this.adaptive) {
        const heap = getHeapStatistics();
        this.concurrency = this.adaptive.claimed({
          picked: r.picked,
          asked: limit,
          slotBound: limit < this.o.claimBatchSize,
          running: this.running.size,
          oldestHeldShare: this.oldestHeldShare(),
          memoryShare: heap.used_heap_size / heap.heap_size_limit,
        });
      }
      for (const a of r.started) this.run(a);
      for (const s of r.deadLettered) {
        this.metrics.invocations.inc({ function: s.functionName, outcome: 'dead_lettered' });
        reportOutcome(this.o.logger, this.invocationMetrics, {
          invocationId: s.id,
          functionName: s.functionName,
          functionVersion: s.functionVersion,
          type: 'async',
          attempt: s.attempts,
          status: s.status,
          durationMs: 0,
          deadLetterReason: s.deadLetterReason,
        });
      }
      for (const t of r.throttled) {
        this.metrics.throttled.inc({ function: t.functionName });
        this.invocationMetrics.throttles.inc({ function: t.functionName, type: 'async', reason: 'ReservedConcurrency' });
        this.wakeAt(t.runAt.getTime());
      }
    } catch (e) {
      this.more = false;
      this.claimFailures++;
      this.o.logger.error({ err: e }, 'claim failed');
      // back off; the poll timer or a notification wakes us again
      this.wakeAt(Date.now() + Math.min(this.o.pollIntervalMs, 50 * 2 ** this.claimFailures));
      await new Promise((r) => setTimeout(r, Math.min(1_000, 20 * 2 ** this.claimFailures)));
    }
  }

  private run(attempt: ClaimedAttempt): void {
    const id = attempt.state.id;
    const startedAt = Date.now();
    this.running.set(id, { attempt, startedAt });
    const p = this.execute(attempt).finally(() => {
      this.adaptive?.finished(Date.now() - startedAt, attempt.leaseMs);
      this.running.delete(id);
      this.inFlightRuns.delete(p);
      this.pump();
    });
    this.inFlightRuns.add(p);
  }

  private async execute(attempt: ClaimedAttempt): Promise<void> {
    const { state, fn } = attempt;
    // the attempt's span continues the trace stored with `accepted` (docs/observability.md)
    const outcome = await inSpan(
      fn.name,
      {
        kind: SpanKind.CONSUMER,
        parent: contextFrom(attempt.trace),
        attributes: tracingOn()
          ? attemptAttributes({ invocationId: state.id, functionName: fn.name, functionVersion: fn.version, attempt: state.attempts, trigger: 'pubsub' })
          : {},
      },
      async (span) => {
        let outcome: Outcome;
        try {
          // what cannot be stored is made storable here, so that it fails only its own attempt
          outcome = storableOutcome(
            await this.o.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload: attempt.payload, chainDepth: attempt.chainDepth, qualifier: attempt.qualifier }),
          );
        } catch (e) {
          outcome = storableOutcome({ ok: false, error: { errorType: 'Runtime.Unknown', errorMessage: String((e as Error)?.message ?? e), trace: [] }, durationMs: 0, log: '' });
        }
        if (!outcome.ok) failSpan(span, outcome.error.errorType, outcome.error.errorMessage);
        return outcome;
      },
    );
    this.metrics.attemptDuration.observe({ function: fn.name, outcome: outcome.ok ? 'ok' : 'error' }, outcome.durationMs / 1000);
    // the slot is free once the handler is done; the outcome is written in the background
    void this.flusher.submit({ attempt, outcome }).then((recorded) => {
      if (!recorded) return;
      const decision = recorded.status === 'retry_scheduled' ? 'retried' : recorded.status;
      this.metrics.invocations.inc({ function: fn.name, outcome: decision });
      reportOutcome(this.o.logger, this.invocationMetrics, {
        invocationId: state.id,
        functionName: fn.name,
        functionVersion: fn.version,
        type: 'async',
        attempt: state.attempts,
        status: recorded.status,
        durationMs: outcome.durationMs,
        ...(outcome.ok ? {} : { errorType: outcome.error.errorType }),
        deadLetterReason: recorded.deadLetterReason,
        ...(attempt.trace ? { traceId: traceIdOf(attempt.trace) } : {}),
      });
      if (recorded.status === 'retry_scheduled' && recorded.runAt) this.wakeAt(recorded.runAt.getTime());
      if (this.stopping) return;
      this.pump();
    });
  }

  private background(p: Promise<unknown>): void {
    this.backgroundTasks.add(p);
    void p.finally(() => this.backgroundTasks.delete(p));
  }

  private async heartbeat(): Promise<void> {
    const threshold = Date.now() - this.graceMs / 3;
    const ids = [...this.running.values()].filter((r) => r.startedAt <= threshold).map((r) => r.attempt.state.id);
    if (ids.length === 0) return;
    try {
      await extendLeases(this.o.db, this.o.workerId, ids, this.graceMs);
    } catch (e) {
      this.o.logger.warn({ err: e }, 'lease heartbeat failed');
    }
  }

  private async reap(): Promise<void> {
    if (this.stopping) return;
    try {
      const reaped = await reapExpiredLeases(this.o.db, { versions: this.versions, onTerminal: this.onTerminal });
      for (const r of reaped) {
        this.metrics.leaseExpiries.inc();
        const decision = r.state.status === 'retry_scheduled' ? 'retried' : r.state.status;
        this.metrics.invocations.inc({ function: r.state.functionName, outcome: decision });
        const type = r.state.invocationType === 'sync' ? 'sync' : 'async';
        this.invocationMetrics.invocations.inc({ function: r.state.functionName, version: String(r.state.functionVersion), type, outcome: decision === 'failed' ? 'lost' : decision });
        if (r.state.status === 'dead_lettered') this.invocationMetrics.deadLetters.inc({ function: r.state.functionName, reason: r.state.deadLetterReason ?? 'unknown' });
        if (r.state.runAt) this.wakeAt(r.state.runAt.getTime());
        this.o.logger.warn({ invocationId: r.state.id, lostBy: r.lostBy, attempt: r.state.attempts }, 'attempt lost: lease expired');
      }
    } catch (e) {
      this.o.logger.warn({ err: e }, 'lease reaper failed');
    }
  }

  private deliver(): void {
    if (this.stopping) return;
    this.deliverer.pump();
  }
}
