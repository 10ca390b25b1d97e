// The scheduler loop of a worker process: every interval it decides the due ticks of
// schedules (db/schedule-store.ts, decideDueTicks) until none is due. Any number of
// workers run it at once: schedules are locked SKIP LOCKED, and a tick's invocation and
// its tick row are written in one transaction under the ticks' primary key, so each tick
// fires once. The clock is the database's (plus ledger.scheduler_clock's offset), never
// this process's, so workers on machines with skewed clocks agree.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { decideDueTicks, scheduleOldestDueSeconds } from '../../db/schedule-store.ts';
import type { Db } from '../../db/schema.ts';

export interface SchedulerOptions {
  db: Db;
  logger: Logger;
  workerId: string;
  /** how often due schedules are looked for (the tick resolution) */
  intervalMs: number;
  /** called after ticks fired: their invocations are due now */
  onFired?: () => void;
  /** for ledger_schedule_ticks_total, ledger_schedule_errors_total, ledger_schedule_oldest_due_seconds (docs/observability.md) */
  registry?: Registry;
}

interface SchedulerMetrics {
  ticks: Counter<'outcome'>;
  errors: Counter;
}

function schedulerMetrics(registry: Registry, db: Db): SchedulerMetrics {
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
  if (!existing('ledger_schedule_oldest_due_seconds')) {
    new Gauge({
      name: 'ledger_schedule_oldest_due_seconds',
      help: "How long the earliest due schedule tick has waited to be decided, by the scheduler's clock (0: none due; read from the database, the same in every worker)",
      registers: [registry],
      async collect() {
        this.set(await scheduleOldestDueSeconds(db).catch(() => Number.NaN));
      },
    });
  }
  return {
    ticks:
      existing<Counter<'outcome'>>('ledger_schedule_ticks_total') ??
      new Counter({
        name: 'ledger_schedule_ticks_total',
        help: 'Schedule ticks this worker decided, by outcome (fired, skipped); each is a row of audit.schedule_ticks',
        labelNames: ['outcome'],
        registers: [registry],
      }),
    errors:
      existing<Counter>('ledger_schedule_errors_total') ??
      new Counter({
        name: 'ledger_schedule_errors_total',
        help: 'Schedules this worker could not decide (each logged; tried again a minute later)',
        registers: [registry],
      }),
  };
}

export class SchedulerLoop {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private failures = 0;

  private readonly metrics: SchedulerMetrics | null;

  constructor(private readonly o: SchedulerOptions) {
    this.metrics = o.registry ? schedulerMetrics(o.registry, o.db) : null;
  }

  start(): void {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.pass().finally(() => {
        this.running = null;
      });
    }, ms);
  }

  private async pass(): Promise<void> {
    let delay = this.o.intervalMs;
    try {
      // a full batch means more may be due: go on at once
      for (;;) {
        if (this.stopped) return;
        const r = await decideDueTicks(this.o.db, {
          workerId: this.o.workerId,
          onError: (err, schedule) => {
            this.metrics?.errors.inc();
            this.o.logger.error({ err, schedule }, 'schedule could not be decided; trying again in a minute');
          },
        });
        if (r.fired > 0) this.metrics?.ticks.inc({ outcome: 'fired' }, r.fired);
        if (r.skipped > 0) this.metrics?.ticks.inc({ outcome: 'skipped' }, r.skipped);
        if (r.fired > 0) this.o.onFired?.();
        if (r.fired + r.skipped > 0) this.o.logger.debug({ fired: r.fired, skipped: r.skipped, deleted: r.deleted }, 'schedule ticks decided');
        if (r.schedules < 20) break;
      }
      this.failures = 0;
    } catch (e) {
      this.failures++;
      delay = Math.min(30_000, this.o.intervalMs * 2 ** Math.min(this.failures, 6));
      this.o.logger.warn({ err: e }, 'scheduler pass failed');
    }
    this.schedule(delay);
  }
}
