// The product side of the benchmark: a migrated scratch database with the no-op function
// registered through the registry, and readings taken from the ledger itself.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { openDatabase, type DatabaseHandle } from '../../../db/connection.ts';
import { createFunction, type FunctionVersion } from '../../../db/functions.ts';
import { acceptInvocations } from '../../../db/invocations.ts';
import { migrate } from '../../../db/migrate.ts';
import { createScratchDatabase, withClient, type ScratchDatabase } from './pg.ts';
import { REPO_ROOT } from './proc.ts';

export class Unavailable extends Error {}

/** The async engine replaced the placeholder `createWorker`. */
export function workerAvailable(): boolean {
  const source = readFileSync(path.join(REPO_ROOT, 'apps/worker/index.ts'), 'utf8');
  return !/PLACEHOLDER/.test(source);
}

export interface LedgerDatabase extends ScratchDatabase {
  handle: DatabaseHandle;
  functions: { inline: FunctionVersion; thread: FunctionVersion };
  close(): Promise<void>;
}

export async function createLedgerDatabase(label: string): Promise<LedgerDatabase> {
  const scratch = await createScratchDatabase(label);
  await migrate(scratch.url);
  // BENCH_DB_SETTINGS="enable_bitmapscan=off,…": diagnosis only, database-level settings for trying a fix
  const settings = (process.env.BENCH_DB_SETTINGS ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]);
  if (settings.length) {
    await withClient(scratch.url, async (c) => {
      for (const [k, v] of settings) await c.query(`alter database "${scratch.name}" set ${k.replace(/[^\w.]/g, '')} = '${v.replace(/'/g, "''")}'`);
    });
  }
  // BENCH_DROP_INDEXES="events_tx_order,…": diagnosis only, what ledger indexes cost a drain
  for (const index of (process.env.BENCH_DROP_INDEXES ?? '').split(',').filter(Boolean)) {
    await withClient(scratch.url, (c) => c.query(`drop index ledger."${index.replace(/[^\w]/g, '')}"`));
  }
  const explainMs = process.env.BENCH_AUTO_EXPLAIN;
  if (explainMs) {
    // BENCH_AUTO_EXPLAIN=<ms>: the server logs the plan (ANALYZE, BUFFERS) of every statement
    // of this database slower than that, the app's own statements included
    await withClient(scratch.url, async (c) => {
      for (const [k, v] of [
        ['session_preload_libraries', 'auto_explain'],
        ['auto_explain.log_min_duration', `${Number(explainMs)}ms`],
        ['auto_explain.log_analyze', 'on'],
        ['auto_explain.log_buffers', 'on'],
        ['auto_explain.log_nested_statements', 'on'],
      ]) await c.query(`alter database "${scratch.name}" set ${k} = '${v}'`);
    });
  }
  // as the app role, like the product
  const handle = openDatabase(scratch.url, { max: 8 });
  const base = { runtime: 'MODULE', handler: 'noop.mjs', maxRetries: 0 };
  const inline = await createFunction(handle.db, 'bench_inline', { ...base, isolation: 'inline' });
  const thread = await createFunction(handle.db, 'bench_thread', { ...base, isolation: 'thread' });
  return {
    ...scratch,
    handle,
    functions: { inline, thread },
    async close() {
      await handle.close();
      await scratch.drop();
    },
  };
}

/** Accepts `n` async invocations through the product's accept path, in batches. */
export async function acceptMany(db: LedgerDatabase, fn: FunctionVersion, n: number, batch = 1000): Promise<void> {
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    await acceptInvocations(
      db.handle.db,
      Array.from({ length: size }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i: done + i } })),
    );
  }
}

export interface DrainReading {
  invocations: number;
  succeeded: number;
  events: number;
  seconds: number;
  firstStarted: Date | null;
}

/** From the ledger: first `started` → last `succeeded`, after `since` (position). */
export async function readDrain(db: LedgerDatabase, sincePosition = '0'): Promise<DrainReading> {
  const { rows } = await sql<{ invocations: number; succeeded: number; events: number; first: Date | null; last: Date | null }>`
    select count(distinct invocation_id)::int as invocations,
           count(*) filter (where type = 'succeeded')::int as succeeded,
           count(*)::int as events,
           min(occurred_at) filter (where type = 'started') as first,
           max(occurred_at) filter (where type = 'succeeded') as last
    from ledger.events where position > ${sincePosition}::bigint`.execute(db.handle.db);
  const r = rows[0];
  if (!r) throw new Error('no reading');
  return {
    invocations: r.invocations,
    succeeded: r.succeeded,
    events: r.events,
    seconds: r.first && r.last ? (r.last.getTime() - r.first.getTime()) / 1000 : 0,
    firstStarted: r.first,
  };
}

export async function queueNotEmpty(db: LedgerDatabase): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`select exists (select 1 from ledger.queue) as any`.execute(db.handle.db);
  return rows[0]?.any ?? false;
}

export async function anyStartedSince(db: LedgerDatabase, sincePosition: string): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`
    select exists (select 1 from ledger.events where position > ${sincePosition}::bigint and type = 'started') as any`.execute(db.handle.db);
  return rows[0]?.any ?? false;
}

export async function lastPosition(db: LedgerDatabase): Promise<string> {
  const { rows } = await sql<{ p: string | null }>`select max(position)::text as p from ledger.events`.execute(db.handle.db);
  return rows[0]?.p ?? '0';
}
