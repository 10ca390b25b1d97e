// The async engine. A loop claims due invocations in batches (SKIP LOCKED, attempts
// started in the claiming transaction), runs them on the runtimes, and group-commits
// their outcomes. Claims take only as many invocations as there are free slots, so
// every claimed attempt runs at once and shutdown never has claimed-but-unstarted work
// to give back. LISTEN wakes idle workers; polling is the fallback. Heartbeats extend
// leases, a reaper recovers attempts whose worker died, a deliverer POSTs URL destinations.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Outcome } from '../../db/attempts.ts';
import { FunctionVersionCache } from '../../db/functions.ts';
import type { Db, Executor } from '../../db/schema.ts';
import type { Runtimes } from '../runtimes/index.ts';
import { claimDueInvocations, type ClaimedAttempt } from './claim.ts';
import { CompletionFlusher } from './complete.ts';
import {
  DEFAULT_DELIVERY_POLICY,
  deliverDueDestinations,
  enqueueDestinations,
  type DeliveryPolicy,
  type FinishedInvocation,
} from './destinations.ts';
import { extendLeases, reapExpiredLeases } from './leases.ts';
import { workerMetrics, type WorkerMetrics } from './metrics.ts';
import { listenForEvents, type Listener } from './notify.ts';
import { createEventSourcePoller, type EventSourcePoller } from './event-sources/index.ts';

export { claimDueInvocations, type ClaimedAttempt } from './claim.ts';
export { extendLeases, reapExpiredLeases, WORKER_LOST } from './leases.ts';
export {
  deliverDueDestinations,
  enqueueDestinations,
  invocationRecord,
  listDestinationDeliveries,
  type DestinationDelivery,
  type InvocationRecord,
} from './destinations.ts';

export interface WorkerOptions {
  db: Db;
  /** for LISTEN; a dedicated connection outside the pool */
  databaseUrl: string;
  runtimes: Runtimes;
  logger: Logger;
  registry: Registry;
  workerId: string;
  /** attempts this worker runs at once (and the most it ever holds) */
  concurrency: number;
  claimBatchSize: number;
  pollIntervalMs: number;
  /** lease = timeoutMs + leaseGraceMs; heartbeats keep long attempts at now() + leaseGraceMs (default 30 s) */
  leaseGraceMs?: number;
  /** how often expired leases are looked for (default leaseGraceMs / 4, between 250 ms and 5 s) */
  reapIntervalMs?: number;
  /** longest backoff of work throttled by reservedConcurrency (default 10 s) */
  throttleMaxDelayMs?: number;
  /** LISTEN on ledger_events (default true) */
  listen?: boolean;
  /** URL destination retries */
  delivery?: Partial<DeliveryPolicy>;
  /** claims in flight at once while the queue stays full (default 2) */
  maxConcurrentClaims?: number;
  /** how often due URL deliveries are looked for (default 1 s) */
  deliveryIntervalMs?: number;
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
  private readonly metrics: WorkerMetrics;
  private readonly graceMs: number;
  private readonly delivery: DeliveryPolicy;
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
  private claimFailures = 0;
  private listener: Listener | null = null;
  private timers: NodeJS.Timeout[] = [];
  private wakeTimer: { at: number; timer: NodeJS.Timeout } | null = null;
  private backgroundTasks = new Set<Promise<unknown>>();
  private delivering = false;
  private deliverAgain = false;

  constructor(private readonly o: WorkerOptions) {
    this.versions = new FunctionVersionCache(o.db);
    this.graceMs = o.leaseGraceMs ?? 30_000;
    this.delivery = { ...DEFAULT_DELIVERY_POLICY, ...o.delivery };
    this.metrics = workerMetrics(o.registry, o.db);
    this.eventSources = createEventSourcePoller({
      db: o.db,
      runtimes: o.runtimes,
      logger: o.logger,
      registry: o.registry,
      workerId: o.workerId,
      ...(o.listen !== false ? { databaseUrl: o.databaseUrl } : {}),
      pollIntervalMs: o.pollIntervalMs,
      leaseGraceMs: this.graceMs,
    });
    this.flusher = new CompletionFlusher({ db: o.db, logger: o.logger, onTerminal: this.onTerminal });
  }

  /** The completion hook: destinations of what just became terminal, in the same transaction. */
  private readonly onTerminal = async (tx: Executor, finished: FinishedInvocation[]): Promise<void> => {
    const urls = await enqueueDestinations(tx, finished);
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
    if (this.o.listen !== false) this.listener = listenForEvents(this.o.databaseUrl, () => this.wake(), { logger: this.o.logger });
    await this.eventSources.start();
    this.o.logger.info({ workerId: this.o.workerId, concurrency: this.o.concurrency }, 'worker started');
    this.wake();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.wakeTimer) clearTimeout(this.wakeTimer.timer);
    await this.listener?.close();
    // batches in flight finish and settle their messages, alongside the attempts below
    const eventSourcesStopped = this.eventSources.stop();
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
    await Promise.allSettled([...this.backgroundTasks]);
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
    const backlog = Math.max(0, this.flusher.size - this.o.concurrency);
    return this.o.concurrency - this.running.size - this.claimingSlots - backlog;
  }

  private pump(): void {
    if (!this.started || this.stopping) return;
    // a second claim overlaps the first's round trips only while the queue looks full
    if (this.claiming.size >= (this.more ? (this.o.maxConcurrentClaims ?? 2) : 1)) return;
    if (!this.wakeRequested && !this.more) return;
    const free = this.freeSlots();
    // when busy, wait for a worthwhile batch instead of claiming one by one
    const idle = this.running.size === 0 && this.claiming.size === 0;
    const worthwhile = idle ? 1 : Math.max(1, Math.min(this.o.claimBatchSize, Math.floor(this.o.concurrency / 4)));
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
      const r = await claimDueInvocations(this.o.db, {
        workerId: this.o.workerId,
        limit,
        versions: this.versions,
        leaseGraceMs: this.graceMs,
        throttleMaxDelayMs: this.o.throttleMaxDelayMs ?? 10_000,
        onTerminal: this.onTerminal,
      });
      this.claimFailures = 0;
      this.metrics.claimBatch.observe(r.picked);
      this.more = r.picked >= limit;
      for (const a of r.started) this.run(a);
      for (const s of r.deadLettered) this.metrics.invocations.inc({ function: s.functionName, outcome: 'dead_lettered' });
      for (const t of r.throttled) {
        this.metrics.throttled.inc({ function: t.functionName });
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
    this.running.set(id, { attempt, startedAt: Date.now() });
    const p = this.execute(attempt).finally(() => {
      this.running.delete(id);
      this.inFlightRuns.delete(p);
      this.pump();
    });
    this.inFlightRuns.add(p);
  }

  private async execute(attempt: ClaimedAttempt): Promise<void> {
    const { state, fn } = attempt;
    let outcome: Outcome;
    try {
      outcome = await this.o.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload: attempt.payload });
    } catch (e) {
      outcome = { ok: false, error: { errorType: 'Runtime.Unknown', errorMessage: String((e as Error)?.message ?? e), trace: [] }, durationMs: 0, log: '' };
    }
    this.metrics.attemptDuration.observe({ function: fn.name, outcome: outcome.ok ? 'ok' : 'error' }, outcome.durationMs / 1000);
    // the slot is free once the handler is done; the outcome is written in the background
    void this.flusher.submit({ attempt, outcome }).then((recorded) => {
      if (!recorded) return;
      const decision = recorded.status === 'retry_scheduled' ? 'retried' : recorded.status;
      this.metrics.invocations.inc({ function: fn.name, outcome: decision });
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
        if (r.state.runAt) this.wakeAt(r.state.runAt.getTime());
        this.o.logger.warn({ invocationId: r.state.id, lostBy: r.lostBy, attempt: r.state.attempts }, 'attempt lost: lease expired');
      }
    } catch (e) {
      this.o.logger.warn({ err: e }, 'lease reaper failed');
    }
  }

  private deliver(): void {
    if (this.stopping) return;
    if (this.delivering) {
      this.deliverAgain = true;
      return;
    }
    this.delivering = true;
    const task = (async () => {
      try {
        do {
          this.deliverAgain = false;
          const n = await deliverDueDestinations(this.o.db, this.delivery);
          if (n > 0) this.metrics.destinations.inc({ kind: 'url' }, n);
          if (n >= 20) this.deliverAgain = true;
        } while (this.deliverAgain && !this.stopping);
      } catch (e) {
        this.o.logger.warn({ err: e }, 'destination delivery failed');
      } finally {
        this.delivering = false;
      }
    })();
    this.background(task);
  }
}
