// Invocation metrics shared by every role: the API counts sync invocations and throttles,
// the worker async and poll ones, on the process registry (docs/observability.md lists
// them). Registered once per registry, so an API and a worker in one process share them.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type InvocationKind = 'sync' | 'async' | 'poll' | 'schedule';

export interface InvocationMetrics {
  /** terminal outcomes, and `retried` for async attempts that will be tried again */
  invocations: Counter<'function' | 'version' | 'type' | 'outcome'>;
  duration: Histogram<'function' | 'type' | 'outcome'>;
  throttles: Counter<'function' | 'type' | 'reason'>;
  deadLetters: Counter<'function' | 'reason'>;
  commitBatch: Histogram<'kind'>;
}

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function invocationMetrics(registry: Registry): InvocationMetrics {
  const registers = [registry];
  return {
    invocations: once(registry, 'ledger_invocations_total', () =>
      new Counter({
        name: 'ledger_invocations_total',
        help: 'Attempt outcomes recorded by this process, by function, version, type (sync, async, poll) and outcome (succeeded, failed, retried, dead_lettered)',
        labelNames: ['function', 'version', 'type', 'outcome'],
        registers,
      }),
    ),
    duration: once(registry, 'ledger_invocation_duration_seconds', () =>
      new Histogram({
        name: 'ledger_invocation_duration_seconds',
        help: 'Handler run time of attempts recorded by this process',
        labelNames: ['function', 'type', 'outcome'],
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900],
        registers,
      }),
    ),
    throttles: once(registry, 'ledger_throttles_total', () =>
      new Counter({
        name: 'ledger_throttles_total',
        help: 'Invocations refused (sync: 429 TooManyRequests, nothing written) or pushed back (async: over reservedConcurrency), by reason',
        labelNames: ['function', 'type', 'reason'],
        registers,
      }),
    ),
    deadLetters: once(registry, 'ledger_dead_letters_total', () =>
      new Counter({
        name: 'ledger_dead_letters_total',
        help: 'Invocations this process recorded dead_lettered, by reason',
        labelNames: ['function', 'reason'],
        registers,
      }),
    ),
    commitBatch: once(registry, 'ledger_commit_batch_size', () =>
      new Histogram({
        name: 'ledger_commit_batch_size',
        help: 'Items per group-committed write (accepts, sync outcomes, async outcomes)',
        labelNames: ['kind'],
        buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
        registers,
      }),
    ),
  };
}

/** The pool's connections (saturation: `waiting` above 0 means requests queue for one). */
export function poolMetrics(registry: Registry, pool: { totalCount: number; idleCount: number; waitingCount: number; options?: { max?: number } }): void {
  once(registry, 'ledger_db_pool_connections', () =>
    new Gauge({
      name: 'ledger_db_pool_connections',
      help: 'Database pool of this process: total, idle, waiting (requests waiting for a connection) and max',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.set({ state: 'total' }, pool.totalCount);
        this.set({ state: 'idle' }, pool.idleCount);
        this.set({ state: 'waiting' }, pool.waitingCount);
        if (pool.options?.max !== undefined) this.set({ state: 'max' }, pool.options.max);
      },
    }),
  );
}
