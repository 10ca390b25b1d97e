// The sealer as a background task of the worker role (and `all`): every sealIntervalMs it
// seals what has been committed, and with a signing key it signs a tree head at most
// every treeHeadIntervalMs while the tree grows, stores it and publishes it to the
// witnesses. Any number of processes may run it: one holds the seal lease and seals, the
// others skip their turn until it stops or its lease runs out (docs/tamper-evidence.md).
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Db } from '../../db/schema.ts';
import { threadHasher } from '../../db/tamper/leaf-hasher.ts';
import { Sealer, signLatestTreeHead } from '../../db/tamper/sealer.ts';
import type { SigningKey, TreeHead } from '../../db/tamper/tree-head.ts';
import { publishTreeHead, type Witness } from './witnesses.ts';

export interface SealerTaskOptions {
  db: Db;
  logger: Logger;
  sealerId: string;
  /** without one the task seals but signs nothing (heads can be signed elsewhere: `invoke-ledger tree-head`) */
  signingKey: SigningKey | null;
  witnesses: readonly Witness[];
  /** how often to look for events to seal (default 1 s) */
  sealIntervalMs?: number;
  /** the shortest time between two tree heads while the tree grows (default 5 s) */
  treeHeadIntervalMs?: number;
  registry?: Registry;
}

export interface SealerTask {
  start(): void;
  /** finishes the tick in progress, then stops */
  stop(): Promise<void>;
  /** one round now (tests, and `stop` waits for it) */
  tick(): Promise<void>;
}

function metrics(registry: Registry | undefined) {
  if (!registry) return null;
  const once = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    sealed: once('ledger_sealed_events_total', () => new Counter({ name: 'ledger_sealed_events_total', help: 'Events this process appended to the Merkle tree', registers: [registry] })),
    treeSize: once('ledger_merkle_tree_size', () => new Gauge({ name: 'ledger_merkle_tree_size', help: 'Leaves in the Merkle tree as this process last saw it', registers: [registry] })),
    headTime: once(
      'ledger_tree_head_timestamp_seconds',
      () => new Gauge({ name: 'ledger_tree_head_timestamp_seconds', help: 'Time of the last tree head this process signed', registers: [registry] }),
    ),
    failures: once(
      'ledger_witness_failures_total',
      () => new Counter({ name: 'ledger_witness_failures_total', help: 'Tree heads a witness did not take (retried)', labelNames: ['witness'], registers: [registry] }),
    ),
  };
}

export function createSealerTask(o: SealerTaskOptions): SealerTask {
  // canonical JSON and hashing in a thread of their own: claims and completions never wait for a batch
  const hasher = threadHasher();
  const sealer = new Sealer(o.db, { sealerId: o.sealerId, hasher });
  const m = metrics(o.registry);
  const logger = o.logger.child({ component: 'sealer' });
  const sealEvery = o.sealIntervalMs ?? 1_000;
  const headEvery = o.treeHeadIntervalMs ?? 5_000;
  /** the newest head each witness has not taken yet */
  const unpublished = new Map<Witness, TreeHead>();
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let stopped = true;
  let failing = false;

  const publish = async (head: TreeHead | null) => {
    if (head) for (const w of o.witnesses) unpublished.set(w, head);
    for (const [w, h] of [...unpublished]) {
      const [failure] = await publishTreeHead([w], h);
      if (!failure) {
        if (unpublished.get(w) === h) unpublished.delete(w);
        continue;
      }
      m?.failures.inc({ witness: w.name });
      logger.warn({ witness: w.name, treeSize: h.treeSize, err: failure.error }, 'witness did not take the tree head; retrying with the next round');
    }
  };

  const round = async () => {
    try {
      const r = await sealer.sealPending();
      if (r.locked) {
        if (r.sealed > 0) m?.sealed.inc(r.sealed);
        m?.treeSize.set(r.treeSize);
      }
      let head: TreeHead | null = null;
      if (o.signingKey) {
        const signed = await signLatestTreeHead(o.db, o.signingKey, { wait: false, minIntervalMs: headEvery });
        if (signed?.created) {
          head = signed.head;
          m?.headTime.set(head.timestamp / 1000);
          logger.info({ treeSize: head.treeSize, rootHash: head.rootHash }, 'signed a tree head');
        }
      }
      await publish(head);
      if (failing) logger.info('sealing works again');
      failing = false;
    } catch (err) {
      // the database may be away, or the record altered: say so once, keep trying
      if (!failing) logger.error({ err }, 'sealing failed; retrying every round');
      failing = true;
    }
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      void tick().finally(schedule);
    }, sealEvery);
  };

  const tick = (): Promise<void> => {
    running ??= round().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      logger.info({ signing: o.signingKey ? o.signingKey.keyId : null, witnesses: o.witnesses.map((w) => w.name), sealIntervalMs: sealEvery, treeHeadIntervalMs: headEvery }, 'sealer started');
      void tick().finally(schedule);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await running;
      await sealer.release().catch((err: unknown) => logger.warn({ err }, 'could not hand the seal lease over; it expires by itself'));
      await hasher.close();
    },
    tick,
  };
}
