// Many hosts on one ledger (docs/scale.md): worker processes started from working
// directories of their own, each with its own copy of the functions and nothing from the
// checkout but the program, drain one ledger together; one of them goes through PgBouncer
// in transaction mode. No attempt starts twice, every invocation succeeds once.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery, freePort } from '../helpers/pg-admin.ts';
import { pgbouncerWanted, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { countByStatus, waitFor } from '../worker/helpers.ts';

const NOOP = fileURLToPath(new URL('../worker/fixtures/procs/noop.ts', import.meta.url));
const JOBS = 2_000;

let t: TestDatabase;
let bouncer: PgBouncer | null = null;
const hosts: string[] = [];
const services = new Set<ServiceProcess>();

/** A "host": a directory of its own holding functions/noop.ts; the worker starts there with FUNCTIONS_DIR unset (./functions). */
async function startHost(env: Record<string, string>): Promise<ServiceProcess> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ledger-host-'));
  hosts.push(dir);
  await cp(NOOP, path.join(dir, 'functions', 'noop.ts'));
  const p = await spawnService('worker', await freePort(), { POLL_INTERVAL_MS: '200', WORKER_CONCURRENCY: '32', ...env }, { cwd: dir });
  services.add(p);
  return p;
}

beforeAll(async () => {
  t = await createTestDatabase();
  if (pgbouncerWanted) {
    const login = decodeURIComponent(new URL(t.adminUrl).username || 'postgres');
    await adminQuery(t.adminUrl, `alter role "${login}" in database "${t.name}" set role = ledger_app`);
    bouncer = await startPgBouncer(t.adminUrl);
  }
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await bouncer?.stop();
  await Promise.all(hosts.map((d) => rm(d, { recursive: true, force: true })));
});

describe('worker processes on separate hosts', () => {
  it('drain one ledger without starting any attempt twice', { timeout: 180_000 }, async () => {
    const workers = await Promise.all([
      startHost({ DATABASE_URL: t.ownerUrl }),
      startHost({ DATABASE_URL: t.ownerUrl }),
      ...(bouncer ? [startHost({ DATABASE_URL: bouncer.url(t.name), DATABASE_POOL_MODE: 'transaction', DATABASE_LISTEN_URL: t.ownerUrl })] : []),
    ]);
    // FUNCTIONS_DIR unset means ./functions of each host's own directory
    for (const w of workers) expect(w.output()).toContain('worker started');
    const fn = await requireFunction(t.db, 'noop');
    // one transaction: every worker is woken by the same commit
    const ids = await t.db.transaction().execute(async (tx) => {
      const accepted = await acceptInvocations(tx, Array.from({ length: JOBS }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i } })));
      return accepted.map((a) => a.invocationId);
    });
    await waitFor('all succeeded', async () => (await countByStatus(t.db, ids)).succeeded === JOBS, 150_000);
    const { rows: span } = await sql<{ s: number }>`
      select extract(epoch from max(occurred_at) - min(occurred_at))::float8 as s from ledger.events where type in ('started', 'succeeded')`.execute(t.db);

    const { rows: dupes } = await sql<{ n: number }>`
      select count(*)::int as n from (
        select invocation_id, attempt from ledger.events where type = 'started'
        group by invocation_id, attempt having count(*) > 1) d`.execute(t.db);
    expect(dupes[0]?.n).toBe(0);
    const { rows: byWorker } = await sql<{ worker: string; started: number; succeeded: number }>`
      select s.data ->> 'workerId' as worker, count(*)::int as started, count(d.invocation_id)::int as succeeded
      from ledger.events s
      left join ledger.events d on d.invocation_id = s.invocation_id and d.type = 'succeeded'
      where s.type = 'started' group by 1`.execute(t.db);
    expect(byWorker.reduce((sum, r) => sum + r.started, 0)).toBe(JOBS);
    expect(byWorker.reduce((sum, r) => sum + r.succeeded, 0)).toBe(JOBS);
    // every started attempt belongs to one of these processes
    const pids = workers.map((w) => `:${w.pid}:`);
    for (const r of byWorker) expect(pids.some((p) => r.worker.includes(p))).toBe(true);
    console.log(`[hosts] drained in ${span[0]?.s.toFixed(1)} s; started per process: ${byWorker.map((r) => `${r.worker.split(':')[1]}=${r.started}`).join(', ')}`);
  });
});
