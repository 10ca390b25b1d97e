// Shared by the worker tests: in-process workers over inline runtimes, waiting, reading events.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createFunction, type FunctionConfigInput, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import type { Db } from '../../db/schema.ts';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { createWorker, type Worker, type WorkerOptions } from '../../apps/worker/index.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const silent = pino({ level: 'silent' });

export interface RunningWorker extends Worker {
  registry: Registry;
  workerId: string;
}

export async function startWorker(
  db: Db,
  url: string,
  overrides: Partial<WorkerOptions> = {},
  runtimeOptions: { poolSize?: number } = {},
): Promise<RunningWorker> {
  const runtimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, ...runtimeOptions });
  const registry = new Registry();
  const workerId = overrides.workerId ?? `test-worker-${randomUUID().slice(0, 8)}`;
  const worker = createWorker({
    db,
    databaseUrl: url,
    runtimes,
    logger: silent,
    registry,
    workerId,
    concurrency: 16,
    claimBatchSize: 100,
    pollIntervalMs: 100,
    leaseGraceMs: 2_000,
    ...overrides,
  });
  await worker.start();
  return {
    registry,
    workerId,
    start: () => worker.start(),
    async stop() {
      await worker.stop();
      await runtimes.close();
    },
  };
}

export function fn(db: Db, name: string, handler: string, config: Partial<FunctionConfigInput> = {}): Promise<FunctionVersion> {
  return createFunction(db, name, { runtime: 'MODULE', handler, isolation: 'inline', ...config });
}

export async function invokeAsync(db: Db, f: FunctionVersion, payloads: unknown[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < payloads.length; i += 1000) {
    const accepted = await acceptInvocations(db, payloads.slice(i, i + 1000).map((payload) => ({ fn: f, invocationType: 'async' as const, payload })));
    ids.push(...accepted.map((a) => a.invocationId));
  }
  return ids;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function statusOf(db: Db, id: string): Promise<string | undefined> {
  const { rows } = await sql<{ status: string }>`select status from ledger.invocations where id = ${id}::uuid`.execute(db);
  return rows[0]?.status;
}

export async function countByStatus(db: Db, ids: string[]): Promise<Record<string, number>> {
  const { rows } = await sql<{ status: string; n: number }>`
    select status, count(*)::int as n from ledger.invocations where id = any(${ids}::uuid[]) group by status`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

export async function eventTypes(db: Db, id: string): Promise<string[]> {
  const { rows } = await sql<{ type: string }>`select type from ledger.events where invocation_id = ${id}::uuid order by seq`.execute(db);
  return rows.map((r) => r.type);
}

export async function eventsOf(db: Db, id: string): Promise<{ type: string; attempt: number | null; data: Record<string, unknown>; occurred_at: Date }[]> {
  const { rows } = await sql<{ type: string; attempt: number | null; data: Record<string, unknown>; occurred_at: Date }>`
    select type, attempt, data, occurred_at from ledger.events where invocation_id = ${id}::uuid order by seq`.execute(db);
  return rows;
}

export const terminal = (s: string | undefined) => s === 'succeeded' || s === 'failed' || s === 'dead_lettered' || s === 'cancelled';
