// Shared by the broker tests: in-process broker sources over inline runtimes, and what the
// ledger recorded for a broker mapping's batches.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { createBrokerSources, type BrokerSources, type BrokerSourcesOptions } from '../../apps/worker/event-sources/brokers/index.ts';
import { createFunction, type FunctionVersion } from '../../db/functions.ts';
import type { Db } from '../../db/schema.ts';
import { silent } from '../worker/helpers.ts';

export { silent, waitFor } from '../worker/helpers.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const RABBITMQ_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

export function brokerRuntimes(): Runtimes {
  return createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
}

export async function startSources(db: Db, runtimes: Runtimes, overrides: Partial<BrokerSourcesOptions> = {}): Promise<BrokerSources & { registry: Registry }> {
  const registry = new Registry();
  const s = createBrokerSources({ db, runtimes, logger: silent, registry, workerId: `brokers-${randomUUID().slice(0, 8)}`, pollIntervalMs: 200, holdMs: 3_000, leaseGraceMs: 5_000, ...overrides });
  await s.start();
  return Object.assign(s, { registry });
}

export function brokerFunction(db: Db, name: string): Promise<FunctionVersion> {
  return createFunction(db, name, { runtime: 'MODULE', handler: 'broker.ts', isolation: 'inline', timeoutMs: 10_000 });
}

export interface BrokerBatch {
  id: string;
  status: string;
  errorType: string | null;
  /** the records' bodies, decoded, in event order */
  bodies: { id?: string; n?: number; [k: string]: unknown }[];
  itemIdentifiers: string[];
  redelivered: boolean[];
  offsets: number[];
  failures: string[];
}

/** The poll invocations of a function, in the order they were accepted. */
export async function brokerBatches(db: Db, functionName: string): Promise<BrokerBatch[]> {
  const { rows } = await sql<{ id: string; status: string; error_type: string | null; payload: Record<string, unknown>; result: { batchItemFailures?: { itemIdentifier: string }[] } | null }>`
    select i.id, i.status, i.error_type, a.data -> 'payload' as payload, r.data -> 'result' as result
    from ledger.invocations i
    join ledger.events a on a.invocation_id = i.id and a.seq = 1
    left join ledger.events r on r.invocation_id = i.id and r.type = 'succeeded'
    where i.function_name = ${functionName} and i.invocation_type = 'poll'
    order by a.position`.execute(db);
  return rows.map((r) => {
    const groups = (r.payload.rmqMessagesByQueue ?? r.payload.records ?? {}) as Record<string, { data?: string; value?: string; itemIdentifier: string; redelivered?: boolean; offset?: number }[]>;
    const records = Object.values(groups).flat();
    return {
      id: r.id,
      status: r.status,
      errorType: r.error_type,
      bodies: records.map((x) => {
        try {
          return JSON.parse(Buffer.from(x.data ?? x.value ?? '', 'base64').toString('utf8'));
        } catch {
          return {};
        }
      }),
      itemIdentifiers: records.map((x) => x.itemIdentifier),
      redelivered: records.map((x) => x.redelivered ?? false),
      offsets: records.map((x) => x.offset ?? -1),
      failures: (r.result?.batchItemFailures ?? []).map((f) => f.itemIdentifier),
    };
  });
}

/** Bodies the ledger records as processed: in a succeeded batch and not named as failed. */
export function processedBodies(batches: BrokerBatch[]): BrokerBatch['bodies'] {
  return batches
    .filter((b) => b.status === 'succeeded')
    .flatMap((b) => b.bodies.filter((_, i) => !b.failures.includes(b.itemIdentifiers[i] as string)));
}

export const terminal = (s: string) => s === 'succeeded' || s === 'failed';

/** The slow broker tests run once per CI run (test/helpers/once.ts). */
export { once, SLOW_TESTS as SLOW_BROKER_TESTS } from '../helpers/once.ts';
