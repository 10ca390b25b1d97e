// The replay runner (docs/replay.md): runs the items of replay runs beside the async
// engine, under a limit of its own so a replay can never take live traffic's slots.
// Each replay invocation is accepted and started in one claim (db/replay-runs.ts), runs
// once on the runtimes with `context.replay` set, and its outcome is recorded like a sync
// one's: no retries, no dead letter, no destinations, no idempotency key. A worker that
// dies mid-attempt leaves a lease that the reaper records as WorkerLost.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { recordOutcomes, storableOutcome, type Outcome } from '../../db/attempts.ts';
import type { FunctionVersionCache } from '../../db/functions.ts';
import { claimReplayItems, type ClaimedReplay } from '../../db/replay-runs.ts';
import type { Db } from '../../db/schema.ts';
import type { Runtimes } from '../runtimes/index.ts';
import { extendLeases } from '../../db/queue-rows.ts';

export const DEFAULT_REPLAY_CONCURRENCY_PER_WORKER = 2;

export interface ReplayRunnerOptions {
  db: Db;
  runtimes: Runtimes;
  logger: Logger;
  registry: Registry;
  workerId: string;
  versions: FunctionVersionCache;
  /** replay attempts this process runs at once, over every run (REPLAY_CONCURRENCY); 0: none */
  concurrency: number;
  pollIntervalMs: number;
  leaseGraceMs: number;
}

interface ReplayMetrics {
  invocations: Counter<'function' | 'outcome'>;
  running: Gauge;
}

function replayMetrics(registry: Registry): ReplayMetrics {
  const registers = [registry];
  return {
    invocations: (registry.getSingleMetric('ledger_replay_invocations_total') as Counter<'function' | 'outcome'> | undefined) ??
      new Counter({
        name: 'ledger_replay_invocations_total',
        help: 'Replay invocations run by this worker, by function and outcome (succeeded, failed); not counted in ledger_worker_invocations_total',
        labelNames: ['function', 'outcome'],
        registers,
      }),
    running: (registry.getSingleMetric('ledger_replay_running') as Gauge | undefined) ??
      new Gauge({ name: 'ledger_replay_running', help: 'Replay attempts running in this worker now', registers }),
  };
}

export class ReplayRunner {
  private readonly running = new Map<string, { startedAt: number; done: Promise<void> }>();
  private readonly metrics: ReplayMetrics;
  private timers: NodeJS.Timeout[] = [];
  private claiming: Promise<void> | null = null;
  private again = false;
  private stopping = false;
  private failures = 0;

  constructor(private readonly o: ReplayRunnerOptions) {
    this.metrics = replayMetrics(o.registry);
  }

  start(): void {
    if (this.o.concurrency <= 0) return;
    this.timers.push(setInterval(() => this.pump(), this.o.pollIntervalMs));
    this.timers.push(setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(this.o.leaseGraceMs / 3))));
    this.pump();
  }

  /** Stops claiming and waits for the replay attempts that run (they end by their timeout at the latest). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    const beat = setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(this.o.leaseGraceMs / 3)));
    try {
      if (this.claiming) await this.claiming.catch(() => undefined);
      while (this.running.size > 0) await Promise.allSettled([...this.running.values()].map((r) => r.done));
    } finally {
      clearInterval(beat);
    }
  }

  /** Claims when there is room; one claim at a time. */
  pump(): void {
    if (this.stopping || this.o.concurrency <= 0) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    const free = this.o.concurrency - this.running.size;
    if (free <= 0) return;
    this.again = false;
    this.claiming = this.claim(free).finally(() => {
      this.claiming = null;
      if (this.again) this.pump();
    });
  }

  private async claim(limit: number): Promise<void> {
    try {
      const claimed = await claimReplayItems(this.o.db, { workerId: this.o.workerId, limit, versions: this.o.versions, leaseGraceMs: this.o.leaseGraceMs });
      this.failures = 0;
      for (const c of claimed) this.run(c);
      // a full claim: more is probably waiting
      if (claimed.length >= limit) this.again = true;
    } catch (e) {
      this.failures++;
      this.o.logger.warn({ err: e }, 'replay claim failed');
      await new Promise((r) => setTimeout(r, Math.min(this.o.pollIntervalMs, 20 * 2 ** this.failures)));
    }
  }

  private run(c: ClaimedReplay): void {
    const id = c.state.id;
    const done = this.execute(c).finally(() => {
      this.running.delete(id);
      this.metrics.running.set(this.running.size);
      this.pump();
    });
    this.running.set(id, { startedAt: Date.now(), done });
    this.metrics.running.set(this.running.size);
  }

  private async execute(c: ClaimedReplay): Promise<void> {
    const { state, fn } = c;
    let outcome: Outcome;
    try {
      outcome = storableOutcome(
        await this.o.runtimes.run(fn, { invocationId: state.id, attempt: state.attempts, payload: c.payload, chainDepth: 0, replay: c.replay }),
      );
    } catch (e) {
      outcome = storableOutcome({ ok: false, error: { errorType: 'Runtime.Unknown', errorMessage: String((e as Error)?.message ?? e), trace: [] }, durationMs: 0, log: '' });
    }
    // a few tries while the database is away; after that the lease expires and the reaper records the attempt as lost
    for (let attempt = 1; ; attempt++) {
      try {
        const { rejected } = await recordOutcomes(this.o.db, [{ state, policy: fn, outcome }]);
        if (rejected[0]) this.o.logger.error({ invocationId: state.id, err: rejected[0].error.message }, 'replay outcome not recorded');
        else this.metrics.invocations.inc({ function: fn.name, outcome: outcome.ok ? 'succeeded' : 'failed' });
        return;
      } catch (e) {
        if (attempt >= 5) {
          this.o.logger.error({ err: e, invocationId: state.id }, 'could not record a replay outcome; its lease will expire');
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  private async heartbeat(): Promise<void> {
    const threshold = Date.now() - this.o.leaseGraceMs / 3;
    const ids = [...this.running.entries()].filter(([, r]) => r.startedAt <= threshold).map(([id]) => id);
    if (ids.length === 0) return;
    try {
      await extendLeases(this.o.db, this.o.workerId, ids, this.o.leaseGraceMs);
    } catch (e) {
      this.o.logger.warn({ err: e }, 'replay lease heartbeat failed');
    }
  }
}
