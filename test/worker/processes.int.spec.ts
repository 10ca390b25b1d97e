// Real worker processes (`invoke-ledger start --role worker`) against one database:
// SIGKILL mid-attempt is recovered by another process, and two processes draining
// 10,000 invocations both do work and never run a handler twice (measured by the
// handler's own record of its runs, test/helpers/handler-runs.ts).
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { checkHandlerRuns } from '../helpers/handler-runs.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { countByStatus, eventsOf, invokeAsync, statusOf, waitFor } from './helpers.ts';

const PROCS_DIR = fileURLToPath(new URL('./fixtures/procs/', import.meta.url));

let t: TestDatabase;
let dir: string;
const services = new Set<ServiceProcess>();

async function spawnWorker(env: Record<string, string> = {}): Promise<ServiceProcess> {
  const p = await spawnService('worker', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: PROCS_DIR,
    WORKER_LEASE_GRACE_MS: '1000',
    POLL_INTERVAL_MS: '200', ...env,
  });
  services.add(p);
  return p;
}

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'worker-procs-'));
});

afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  await rm(dir, { recursive: true, force: true });
});

describe('worker processes', () => {
  it('an attempt of a SIGKILLed worker is recorded as WorkerLost and succeeds on another worker process', async () => {
    const a = await spawnWorker();
    const f = await requireFunction(t.db, 'slow-first');
    const marker = path.join(dir, 'attempt-1-started');
    const [id] = await invokeAsync(t.db, f, [{ marker }]);
    await waitFor('attempt 1 running in worker A', async () => existsSync(marker), 20_000);
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));

    const b = await spawnWorker();
    await waitFor('success on worker B', async () => (await statusOf(t.db, id as string)) === 'succeeded', 30_000);
    const events = await eventsOf(t.db, id as string);
    expect(events.map((e) => e.type)).toEqual(['accepted', 'started', 'failed', 'retried', 'started', 'succeeded']);
    const workerA = events[1]?.data.workerId as string;
    const workerB = events[4]?.data.workerId as string;
    expect(workerA).toContain(`:${a.child.pid}:`);
    expect(workerB).toContain(`:${b.child.pid}:`);
    expect(events[2]?.data).toMatchObject({ attempt: 1, willRetry: true, error: { errorType: 'WorkerLost' } });
    expect((events[2]?.data.error as { errorMessage: string }).errorMessage).toContain(workerA);
    expect(events[5]?.data).toMatchObject({ attempt: 2, result: { attempt: 2 } });
    await endProcess(b);
  });

  it('two worker processes drain 10,000 invocations: both do work, and no handler runs twice', async () => {
    const f = await requireFunction(t.db, 'record-run');
    const runsFile = path.join(dir, 'drain-runs');
    // both ready first, so that both are woken by the invocations
    const [a, b] = await Promise.all([spawnWorker(), spawnWorker()]);
    const ids = await invokeAsync(t.db, f, Array.from({ length: 10_000 }, (_, i) => ({ i, runs: runsFile })));
    // no deadline of its own: done when every invocation has succeeded (the test's timeout is the backstop)
    await waitFor('all succeeded', async () => (await countByStatus(t.db, ids)).succeeded === ids.length, 540_000);
    const { rows: byWorker } = await sql<{ worker: string; n: number }>`
      select data ->> 'workerId' as worker, count(*)::int as n from ledger.events
      where invocation_id = any(${ids}::uuid[]) and type = 'started' group by 1`.execute(t.db);
    console.log(`[worker] started per process: ${byWorker.map((r) => `${r.worker.split(':')[1]}=${r.n}`).join(', ')}`);
    expect(byWorker.reduce((s, r) => s + r.n, 0)).toBe(ids.length);
    // both processes did work
    for (const p of [a, b]) expect(byWorker.find((r) => r.worker.includes(`:${p.pid}:`))?.n ?? 0, `invocations started by worker ${p.pid}`).toBeGreaterThan(0);
    // every handler ran exactly once, in the process that holds its attempt
    const runs = await checkHandlerRuns(t.db, runsFile, ids);
    expect(runs.problems.slice(0, 10)).toEqual([]);
    expect(runs.runs).toBe(ids.length);
    expect(runs.rerun).toBe(0);
    await Promise.all([endProcess(a), endProcess(b)]);
  }, 600_000);
});
