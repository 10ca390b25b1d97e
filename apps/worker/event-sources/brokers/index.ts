// Broker event sources in a worker process: every second (and at once on a NOTIFY from a
// mapping change) the enabled broker mappings are listed, a runner is started for each new
// one and stopped for each disabled, deleted or changed one. Runners compete for a mapping
// through its hold (db/brokers.ts), so one worker consumes it at a time.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { BROKER_MAPPINGS_CHANNEL, listConsumableBrokerMappings, type ConsumableBrokerMapping } from '../../../../db/brokers.ts';
import { FunctionVersionCache } from '../../../../db/functions.ts';
import type { LedgerNotifications } from '../../../../db/notifications.ts';
import { DEFAULT_LEASE_GRACE_MS } from '../../../../db/queue-rows.ts';
import type { Db } from '../../../../db/schema.ts';
import type { Runtimes } from '../../../runtimes/index.ts';
import { wakeOn } from '../../notify.ts';
import { natsDriver } from './nats.ts';
import { rabbitmqDriver } from './rabbitmq.ts';
import { MappingRunner, type BrokerMetrics } from './runner.ts';
import type { BrokerDriver } from './source.ts';

export const DRIVERS: Record<ConsumableBrokerMapping['broker'], BrokerDriver> = { rabbitmq: rabbitmqDriver, nats: natsDriver };

export interface BrokerSourcesOptions {
  db: Db;
  runtimes: Runtimes;
  logger: Logger;
  workerId: string;
  /** opens sealed connection URLs (LEDGER_SECRET_KEY) */
  secretKey?: string | null;
  notifications?: LedgerNotifications;
  registry?: Registry;
  /** how often mappings are listed (default 1000) */
  pollIntervalMs?: number;
  /** a worker's hold on a mapping lasts this long unrenewed (default leaseGraceMs / 2, at least 3000) */
  holdMs?: number;
  leaseGraceMs?: number;
}

export interface BrokerSources {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** mapping ids this process runs */
  readonly running: string[];
}

/** What makes a runner stale: anything the consumer was opened with. */
const shape = (m: ConsumableBrokerMapping) =>
  JSON.stringify([m.functionName, m.functionVersion, m.batchSize, m.maxBatchingWindowMs, m.reportBatchItemFailures, m.updatedAt.getTime()]);

export function createBrokerSources(o: BrokerSourcesOptions): BrokerSources {
  const log = o.logger.child({ component: 'broker-sources' });
  const runners = new Map<string, { runner: MappingRunner; shape: string }>();
  const versions = new FunctionVersionCache(o.db);
  const metrics = o.registry ? makeMetrics(o.registry) : null;
  let stopping = true;
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  let unlisten: (() => void) | null = null;

  async function reconcile(): Promise<void> {
    const mappings = await listConsumableBrokerMappings(o.db);
    const wanted = new Map(mappings.filter((m) => m.functionVersion !== null).map((m) => [m.id, m]));
    for (const [id, r] of runners) {
      const m = wanted.get(id);
      if (!m || shape(m) !== r.shape) {
        runners.delete(id);
        await r.runner.stop();
      }
    }
    for (const [id, m] of wanted) {
      if (runners.has(id) || stopping) continue;
      const runner = new MappingRunner(m, DRIVERS[m.broker], {
        db: o.db,
        runtimes: o.runtimes,
        versions,
        logger: o.logger,
        workerId: o.workerId,
        secretKey: o.secretKey ?? null,
        // a dead worker's mappings are taken over after half its lease grace (at least 3 s)
        holdMs: o.holdMs ?? Math.max(3_000, Math.floor((o.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS) / 2)),
        leaseGraceMs: o.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS,
        metrics,
      });
      runners.set(id, { runner, shape: shape(m) });
      runner.start();
    }
  }

  async function run(): Promise<void> {
    while (!stopping) {
      const woken = new Promise<void>((resolve) => (wake = resolve));
      try {
        await reconcile();
      } catch (e) {
        log.warn({ err: e }, 'could not list broker mappings');
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, o.pollIntervalMs ?? 1_000)))]);
      clearTimeout(timer);
    }
  }

  return {
    get running() {
      return [...runners.keys()];
    },
    async start() {
      if (!stopping) return;
      stopping = false;
      if (o.notifications) unlisten = wakeOn(o.notifications, BROKER_MAPPINGS_CHANNEL, () => wake?.());
      loop = run();
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      wake?.();
      await loop;
      unlisten?.();
      unlisten = null;
      await Promise.all([...runners.values()].map((r) => r.runner.stop()));
      runners.clear();
    },
  };
}

function makeMetrics(registry: Registry): BrokerMetrics {
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
  const batches = counter('ledger_broker_batches_total', 'Batches delivered from external brokers, by outcome', ['broker', 'outcome']);
  const messages = counter('ledger_broker_messages_total', 'Broker messages settled after a batch, by result', ['broker', 'result']);
  const lag =
    (registry.getSingleMetric('ledger_broker_mapping_lag') as Gauge<'mapping_id' | 'broker'> | undefined) ??
    new Gauge({ name: 'ledger_broker_mapping_lag', help: 'Messages waiting in the broker for a mapping, as last reported', labelNames: ['mapping_id', 'broker'], registers: [registry] });
  return {
    batch: (broker, outcome) => batches.inc({ broker, outcome }),
    messages: (broker, result, n) => n > 0 && messages.inc({ broker, result }, n),
    lag: (mappingId, broker, n) => lag.set({ mapping_id: mappingId, broker }, n),
  };
}
