// Worker metrics on the process registry. Queue gauges are read from the database on
// scrape (one query, shared by the gauges, cached for a second).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { mappingLags, queueDepth, type MappingLag, type QueueDepth } from '../../db/monitoring.ts';
import type { Db } from '../../db/schema.ts';

export interface WorkerMetrics {
  invocations: Counter<'function' | 'outcome'>;
  attemptDuration: Histogram<'function' | 'outcome'>;
  claimBatch: Histogram;
  leaseExpiries: Counter;
  throttled: Counter<'function'>;
  destinations: Counter<'kind'>;
}

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function workerMetrics(registry: Registry, db: Db): WorkerMetrics {
  const registers = [registry];
  let cached: { at: number; stats: Promise<QueueDepth> } | null = null;
  const stats = (): Promise<QueueDepth> => {
    if (!cached || Date.now() - cached.at > 1_000) {
      cached = {
        at: Date.now(),
        stats: queueDepth(db).catch(() => ({ due: Number.NaN, scheduled: Number.NaN, running: Number.NaN, oldest: Number.NaN })),
      };
    }
    return cached.stats;
  };
  once(registry, 'ledger_queue_depth', () =>
    new Gauge({
      name: 'ledger_queue_depth',
      help: 'Invocations in the queue table: due (waiting for a worker), scheduled (retry or throttle backoff), running (leased)',
      labelNames: ['state'],
      registers,
      async collect() {
        const s = await stats();
        this.set({ state: 'due' }, s.due);
        this.set({ state: 'scheduled' }, s.scheduled);
        this.set({ state: 'running' }, s.running);
      },
    }),
  );
  once(registry, 'ledger_queue_oldest_due_seconds', () =>
    new Gauge({
      name: 'ledger_queue_oldest_due_seconds',
      help: 'How long the oldest due async invocation has been waiting for a worker',
      registers,
      async collect() {
        this.set((await stats()).oldest);
      },
    }),
  );
  // event source mappings: how far each is behind its queue (docs/observability.md)
  let lagCache: { at: number; rows: Promise<MappingLag[]> } | null = null;
  const lags = (): Promise<MappingLag[]> => {
    if (!lagCache || Date.now() - lagCache.at > 1_000) {
      lagCache = {
        at: Date.now(),
        rows: mappingLags(db).catch(() => []),
      };
    }
    return lagCache.rows;
  };
  once(registry, 'ledger_mapping_lag_seconds', () =>
    new Gauge({
      name: 'ledger_mapping_lag_seconds',
      help: 'Age of the oldest visible message in the queue of each enabled event source mapping (0: caught up)',
      labelNames: ['queue', 'function'],
      registers,
      async collect() {
        const rows = await lags();
        this.reset();
        for (const r of rows) this.set({ queue: r.queue, function: r.function }, r.lag);
      },
    }),
  );
  once(registry, 'ledger_mapping_backlog_messages', () =>
    new Gauge({
      name: 'ledger_mapping_backlog_messages',
      help: 'Visible messages waiting in the queue of each enabled event source mapping',
      labelNames: ['queue', 'function'],
      registers,
      async collect() {
        const rows = await lags();
        this.reset();
        for (const r of rows) this.set({ queue: r.queue, function: r.function }, r.visible);
      },
    }),
  );
  return {
    invocations: once(registry, 'ledger_worker_invocations_total', () =>
      new Counter({
        name: 'ledger_worker_invocations_total',
        help: 'Attempt outcomes recorded by this worker, by function and the decision written (succeeded, retried, dead_lettered, failed)',
        labelNames: ['function', 'outcome'],
        registers,
      }),
    ),
    attemptDuration: once(registry, 'ledger_worker_attempt_duration_seconds', () =>
      new Histogram({
        name: 'ledger_worker_attempt_duration_seconds',
        help: 'Duration of async attempts run by this worker',
        labelNames: ['function', 'outcome'],
        buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900],
        registers,
      }),
    ),
    claimBatch: once(registry, 'ledger_worker_claim_batch_size', () =>
      new Histogram({
        name: 'ledger_worker_claim_batch_size',
        help: 'Invocations picked per claim statement',
        buckets: [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
        registers,
      }),
    ),
    leaseExpiries: once(registry, 'ledger_worker_lease_expiries_total', () =>
      new Counter({ name: 'ledger_worker_lease_expiries_total', help: 'Expired leases recorded as WorkerLost by this worker', registers }),
    ),
    throttled: once(registry, 'ledger_worker_throttled_total', () =>
      new Counter({
        name: 'ledger_worker_throttled_total',
        help: 'Claims pushed back because the function was at its reservedConcurrency',
        labelNames: ['function'],
        registers,
      }),
    ),
    destinations: once(registry, 'ledger_worker_destination_deliveries_total', () =>
      new Counter({ name: 'ledger_worker_destination_deliveries_total', help: 'URL destination POSTs attempted', labelNames: ['kind'], registers }),
    ),
  };
}
