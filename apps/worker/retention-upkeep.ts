// Retention of the side tables as a background task of worker processes (docs/retention.md):
// every interval, each kind's expired rows are removed in batches of `batchSize`, each batch
// its own short transaction, at most `maxBatches` per kind and round, so a large backlog
// drains over several rounds instead of one long statement. Any number of processes may
// run it: a batch skips rows another holds. Every batch is recorded under the round's run id.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { purgeExpired, RETENTION_KINDS, type RetentionKind } from '../../db/retention/side-tables.ts';
import type { Db } from '../../db/schema.ts';

export interface RetentionUpkeep {
  start(): void;
  stop(): Promise<void>;
  /** one round now: rows removed per kind */
  tick(): Promise<Record<RetentionKind, number>>;
}

export function createRetentionUpkeep(o: {
  db: Db;
  logger: Logger;
  registry?: Registry;
  intervalMs: number;
  batchSize: number;
  maxBatches?: number;
}): RetentionUpkeep {
  const { db, logger, batchSize, registry } = o;
  const removedTotal = registry
    ? ((registry.getSingleMetric('ledger_retention_rows_removed_total') as Counter<'kind'> | undefined) ??
      new Counter({
        name: 'ledger_retention_rows_removed_total',
        help: 'Rows removed by retention rules from attempt logs, destination deliveries, dead letters, expired idempotency keys and broker deduplication rows (each batch recorded in audit.retention_purges)',
        labelNames: ['kind'],
        registers: [registry],
      }))
    : null;
  const maxBatches = o.maxBatches ?? 100;
  let timer: NodeJS.Timeout | null = null;
  let stopping = false;
  let running: Promise<unknown> = Promise.resolve();

  const round = async (): Promise<Record<RetentionKind, number>> => {
    const runId = randomUUID();
    const removed = Object.fromEntries(RETENTION_KINDS.map((k) => [k, 0])) as Record<RetentionKind, number>;
    for (const kind of RETENTION_KINDS) {
      for (let b = 0; b < maxBatches && !stopping; b++) {
        const n = await purgeExpired(db, kind, batchSize, runId);
        removed[kind] += n;
        if (n > 0) removedTotal?.inc({ kind }, n);
        if (n < batchSize) break;
      }
    }
    if (Object.values(removed).some((n) => n > 0)) logger.info({ runId, removed }, 'retention: removed expired rows (audit.retention_runs)');
    return removed;
  };
  const tick = () => {
    const r = running.then(round);
    running = r.catch(() => undefined);
    return r;
  };
  return {
    tick,
    start() {
      const background = () =>
        void tick().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'retention upkeep failed; trying again next round'));
      background();
      timer = setInterval(background, o.intervalMs);
      timer.unref();
    },
    async stop() {
      stopping = true;
      if (timer) clearInterval(timer);
      timer = null;
      await running;
    },
  };
}
