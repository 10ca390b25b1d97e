// Chaos: an API process and two worker processes on their own PostgreSQL; 20,000 async
// invocations of a function that fails ~20% of attempts; a random worker SIGKILLed every
// ~2 s and restarted; PostgreSQL restarted once mid-run. Afterwards every accepted
// invocation has exactly one terminal event, verify passes, nothing is lost. The run must
// have killed workers and recorded WorkerLost (else it proved nothing), no worker may die
// by itself, and the handler's own record of its runs must match the ledger: no handler
// ran twice without a recorded failure, no `succeeded` without a run.
// CHAOS_KILL=0 turns the kills off: then the test must fail (docs/testing.md).
import { appendFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../db/embedded.ts';
import { migrate } from '../../db/migrate.ts';
import { isDatabaseUnavailable } from '../../db/errors.ts';
import { verifyLedger, type VerifyProblem } from '../../db/replay.ts';
import { checkHandlerRuns } from '../helpers/handler-runs.ts';
import { once, SLOW_TESTS } from '../helpers/once.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TOTAL = Number(process.env.CHAOS_INVOCATIONS ?? 20_000);
const PRODUCERS = 32;
const KILL = process.env.CHAOS_KILL !== '0';
/** the run fails when the unfinished count has not moved for this long (a stall, not slowness) */
const STALL_MS = 180_000;

let dir: string;
let pgPort: number;
let pgServer: EmbeddedServer;
let handle: DatabaseHandle;
let api: ServiceProcess;
const workers: ServiceProcess[] = [];
const all = new Set<ServiceProcess>();

const env = () => ({ DATABASE_URL: pgServer.url, FUNCTIONS_DIR: FIXTURES, POLL_INTERVAL_MS: '200', WORKER_LEASE_GRACE_MS: '1500', DB_POOL_SIZE: '8' });
const startPg = () => startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: pgPort, persistent: true });
/** CHAOS_TRACE=<file> follows a run live (vitest prints console output only at the end);
 * PROCESS_TRACE=<file> also keeps every spawned process's output */
const trace = (msg: string) => process.env.CHAOS_TRACE && appendFileSync(process.env.CHAOS_TRACE, `${new Date().toISOString()} ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** verify back to back while `busy()`: it must stay clean under load (runs the PostgreSQL restart cuts short don't count) */
async function verifyMeanwhile(busy: () => boolean): Promise<{ runs: number; problems: VerifyProblem[] }> {
  const out = { runs: 0, problems: [] as VerifyProblem[] };
  while (busy()) {
    try {
      out.problems.push(...(await verifyLedger(handle.db)));
      out.runs++;
    } catch (e) {
      if (!isDatabaseUnavailable(e)) throw e;
      await sleep(200);
    }
  }
  return out;
}

async function spawnTracked(role: 'api' | 'worker'): Promise<ServiceProcess> {
  const p = await spawnService(role, await freePort(), env());
  all.add(p);
  return p;
}

beforeAll(async () => {
  // it runs on its own PostgreSQL either way: a second run on the embedded half adds nothing
  if (!SLOW_TESTS) return;
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-chaos-'));
  await chmod(dir, 0o755); // as root, the server runs as the `postgres` OS user
  pgPort = await freePort();
  pgServer = await startPg();
  await migrate(pgServer.url);
  handle = openDatabase(pgServer.url, { max: 4 });
  trace(`postgres up on ${pgPort}`);
  api = await spawnTracked('api');
  trace(`api ${api.pid} up`);
  workers.push(await spawnTracked('worker'), await spawnTracked('worker'));
}, 180_000);

afterAll(async () => {
  await Promise.all([...all].map((p) => endProcess(p)));
  await handle?.close();
  await pgServer?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe.runIf(SLOW_TESTS)(once('chaos'), () => {
  it(`loses nothing across killed workers and a PostgreSQL restart (${TOTAL} invocations)`, async () => {
    const base = () => `http://127.0.0.1:${api.port}`;
    const accepted = new Map<number, string>();
    const whileDown = { statuses: new Map<number, number>(), healthz: new Set<number>() };
    let dbDown = false;
    let next = 0;
    let kills = 0;
    const crashes: string[] = [];
    const crashed = new Set<number>();
    let producing = true;

    // Producers: each invocation has an idempotency key, so a retried request after a 503
    // or a dropped connection can never create a second invocation.
    const produce = async () => {
      while (next < TOTAL) {
        const i = next++;
        for (let backoff = 50; ; backoff = Math.min(backoff * 2, 1_000)) {
          const sentWhileDown = dbDown;
          const res = await fetch(`${base()}/2015-03-31/functions/flaky/invocations`, {
            method: 'POST',
            headers: { 'X-Amz-Invocation-Type': 'Event', 'Idempotency-Key': `chaos-${i}` },
            body: JSON.stringify({ i, runs: path.join(dir, 'runs') }),
          }).catch(() => null);
          // sent and answered while PostgreSQL was fully stopped
          if (sentWhileDown && dbDown && res) whileDown.statuses.set(res.status, (whileDown.statuses.get(res.status) ?? 0) + 1);
          if (res?.status === 202) {
            accepted.set(i, res.headers.get('x-amzn-requestid') as string);
            break;
          }
          await res?.arrayBuffer().catch(() => {});
          await sleep(backoff);
        }
      }
    };

    const chaos = async () => {
      while (producing || (await unfinished()) > 0) {
        await sleep(1_500 + Math.random() * 1_000);
        // nobody but this loop kills workers: one that ended by itself fails the test (its
        // output goes to the failure) and is replaced so the run can finish
        for (const w of workers) {
          if ((w.child.exitCode === null && w.child.signalCode === null) || crashed.has(w.pid)) continue;
          crashed.add(w.pid);
          crashes.push(`worker ${w.pid} exited by itself (${w.child.exitCode ?? w.child.signalCode}):\n${w.output().slice(-4_000)}`);
        }
        const k = Math.floor(Math.random() * workers.length);
        const victim = workers[k] as ServiceProcess;
        const dead = victim.child.exitCode !== null || victim.child.signalCode !== null;
        if (!KILL && !dead) continue;
        if (!dead) {
          process.kill(victim.pid, 'SIGKILL');
          kills++;
        }
        await endProcess(victim);
        all.delete(victim);
        trace(`killed worker ${victim.pid}; accepted ${accepted.size}`);
        // a replacement started while PostgreSQL restarts fails its migration: try again
        for (;;) {
          try {
            workers[k] = await spawnTracked('worker');
            break;
          } catch {
            await sleep(500);
          }
        }
      }
    };

    let resumeMs = -1;
    const restartDatabase = async () => {
      while (accepted.size < TOTAL / 2) await sleep(100);
      // the newest event before the stop: workers resumed when a `started` follows it
      const { rows: before } = await sql<{ p: string }>`select coalesce(max(position), 0)::text as p from ledger.events`.execute(handle.db);
      const lastBefore = before[0]!.p;
      trace('stopping postgres');
      await pgServer.stop();
      dbDown = true;
      // while it is down: the API refuses (never 202 without a commit) and healthz says so
      for (let i = 0; i < 10; i++) {
        const h = await fetch(`${base()}/healthz`).catch(() => null);
        if (h) whileDown.healthz.add(h.status);
        await sleep(200);
      }
      dbDown = false;
      pgServer = await startPg();
      trace('postgres restarted');
      const upAt = Date.now();
      for (;;) {
        const { rows: started } = await sql<{ n: number }>`
          select count(*)::int as n from (select 1 from ledger.events where position > ${lastBefore}::bigint and type = 'started' limit 1) s`
          .execute(handle.db)
          .catch(() => ({ rows: [{ n: 0 }] }));
        if (started[0]!.n > 0) break;
        await sleep(50);
      }
      resumeMs = Date.now() - upAt;
      trace(`workers resumed after ${resumeMs} ms`);
    };

    const unfinished = async (): Promise<number> => {
      for (;;) {
        try {
          const { rows } = await sql<{ n: number }>`
            select count(*)::int as n from ledger.invocations
            where status not in ('succeeded', 'dead_lettered', 'cancelled', 'failed')`.execute(handle.db);
          return rows[0]!.n;
        } catch {
          await sleep(200); // the database is restarting
        }
      }
    };

    const started = Date.now();
    let settled = false;
    const verifying = verifyMeanwhile(() => !settled);
    const chaosDone = chaos();
    const restartDone = restartDatabase();
    await Promise.all(Array.from({ length: PRODUCERS }, produce));
    producing = false;
    await restartDone;
    // no deadline for the whole drain (the machine may be slow), only for a stall
    let left = await unfinished();
    let movedAt = Date.now();
    while (left > 0) {
      await sleep(250);
      const now = await unfinished();
      if (now !== left) movedAt = Date.now();
      else if (Date.now() - movedAt > STALL_MS) throw new Error(`${left} invocations unfinished, none finished for ${STALL_MS / 1000} s`);
      left = now;
    }
    settled = true;
    await chaosDone;
    const verified = await verifying;
    expect(verified.problems.slice(0, 20)).toEqual([]);
    expect(verified.runs).toBeGreaterThan(0);
    console.log(`[chaos] verify ran ${verified.runs} time(s) during the run and reported nothing`);
    const seconds = (Date.now() - started) / 1000;

    expect(accepted.size).toBe(TOTAL);
    const ids = [...accepted.values()];
    expect(new Set(ids).size).toBe(TOTAL); // one invocation per idempotency key

    const { rows: invocations } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations`.execute(handle.db);
    expect(invocations[0]!.n).toBe(TOTAL); // retried requests created nothing extra

    const { rows: terminalCounts } = await sql<{ terminals: number; n: number }>`
      select terminals, count(*)::int as n from (
        select invocation_id, count(*) filter (where type in ('succeeded', 'dead_lettered', 'cancelled'))::int as terminals
        from ledger.events where invocation_id = any(${ids}::uuid[]) group by invocation_id) t
      group by terminals`.execute(handle.db);
    expect(terminalCounts).toEqual([{ terminals: 1, n: TOTAL }]);

    // what the handler itself recorded: no run the ledger does not explain, no success without a run
    const runs = await checkHandlerRuns(handle.db, path.join(dir, 'runs'), ids);
    expect(runs.problems.slice(0, 20)).toEqual([]);

    expect(await verifyLedger(handle.db)).toEqual([]);

    // while the database was down nothing was acknowledged
    expect(whileDown.statuses.get(202) ?? 0).toBe(0);
    expect(whileDown.statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect([...whileDown.healthz]).toEqual([503]);

    const { rows: figures } = await sql<{ attempts: number; worker_lost: number; function_errors: number; succeeded: number; dead_lettered: number }>`
      select count(*) filter (where type = 'started')::int as attempts,
             count(*) filter (where type = 'failed' and data -> 'error' ->> 'errorType' = 'WorkerLost')::int as worker_lost,
             count(*) filter (where type = 'failed' and data -> 'error' ->> 'errorType' <> 'WorkerLost')::int as function_errors,
             count(*) filter (where type = 'succeeded')::int as succeeded,
             count(*) filter (where type = 'dead_lettered')::int as dead_lettered
      from ledger.events`.execute(handle.db);
    const f = figures[0]!;
    // An attempt "ran twice" when a killed worker's attempt had started the handler and the
    // invocation was then retried: at-least-once delivery, visible as WorkerLost failures.
    console.log(
      `[chaos] ${TOTAL} invocations in ${seconds.toFixed(1)} s; ${kills} worker kills; 1 PostgreSQL restart ` +
        `(workers resumed ${resumeMs} ms after it was back); workers that exited by themselves: ${crashes.length}; attempts ${f.attempts}, ` +
        `function errors ${f.function_errors}, WorkerLost ${f.worker_lost}; handler runs ${runs.runs}, invocations whose handler ` +
        `ran more than once ${runs.rerun} (each after a recorded failure), succeeded ${f.succeeded}, dead-lettered ` +
        `${f.dead_lettered}; responses while the database was down: ${JSON.stringify(Object.fromEntries(whileDown.statuses))}, ` +
        `healthz ${JSON.stringify([...whileDown.healthz])}`,
    );
    expect(f.succeeded + f.dead_lettered).toBe(TOTAL);
    // the run proved something only if workers were killed and lost attempts were recorded
    expect(kills, 'workers killed').toBeGreaterThan(0);
    expect(f.worker_lost, 'attempts recorded WorkerLost').toBeGreaterThan(0);
    expect(crashes, 'workers that exited by themselves').toEqual([]);
    expect(resumeMs, 'workers resumed after the PostgreSQL restart').toBeGreaterThanOrEqual(0);
  }, 900_000);
});
