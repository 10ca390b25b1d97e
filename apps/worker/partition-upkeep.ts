// Partition upkeep as a background task of every server process (docs/retention.md): the
// partitions of ledger.events for this month and the next PREMAKE_MONTHS are made at
// start and every hour, so a month's first invocation never waits for DDL (and never lands
// in events_default). Any number of processes may run it: making a partition that exists
// is a no-op. /metrics shows how far ahead partitions exist.
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { partitionMonthsAhead, premakeEventPartitions, PREMAKE_MONTHS } from '../../db/retention/partitions.ts';
import type { Db } from '../../db/schema.ts';

const HOUR_MS = 60 * 60 * 1000;

export interface PartitionUpkeep {
  start(): void;
  stop(): Promise<void>;
  /** one round now */
  tick(): Promise<void>;
}

export function createPartitionUpkeep(o: { db: Db; logger: Logger; registry?: Registry; intervalMs?: number }): PartitionUpkeep {
  const { db, logger, registry } = o;
  if (registry && !registry.getSingleMetric('ledger_event_partitions_months_ahead')) {
    new Gauge({
      name: 'ledger_event_partitions_months_ahead',
      help: 'Whole months after the current one that ledger.events has partitions for (below 1: premake is behind; -1: not even this month)',
      registers: [registry],
      async collect() {
        this.set(await partitionMonthsAhead(db).catch(() => Number.NaN));
      },
    });
  }
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = premakeEventPartitions(db, PREMAKE_MONTHS).then(
      (made) => {
        if (made.length > 0) logger.info({ partitions: made }, 'made ledger.events partitions');
      },
      (err: unknown) => logger.warn({ err: (err as Error).message }, 'partition upkeep failed; trying again in an hour'),
    );
    return running;
  };
  return {
    tick,
    start() {
      void tick();
      timer = setInterval(() => void tick(), o.intervalMs ?? HOUR_MS);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      await running;
    },
  };
}
