// Chaos: an API process and two worker processes on their own PostgreSQL; 20,000 async
// invocations of a function that fails ~20% of attempts; a random worker SIGKILLed every
// ~2 s and restarted; PostgreSQL restarted once mid-run. Afterwards every accepted
// invocation has exactly one terminal event, verify passes, nothing is lost.
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
import { verifyLedger } from '../../db/replay.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TOTAL = Number(process.env.CHAOS_INVOCATIONS ?? 20_000);
const PRODUCERS = 32;

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

async function spawnTracked(role: 'api' | 'worker'): Promise<ServiceProcess> {
  const p = await spawnService(role, await freePort(), env());
  all.add(p);
  return p;
}

beforeAll(async () => {
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
  await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('chaos', () => {
  it(`loses nothing across killed workers and a PostgreSQL restart (${TOTAL} invocations)`, async () => {
    const base = () => `http://127.0.0.1:${api.port}`;
    const accepted = new Map<number, string>();
    const whileDown = { statuses: new Map<number, number>(), healthz: new Set<number>() };
    let dbDown = false;
    let next = 0;
    let kills = 0;
    const crashes: string[] = [];
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
            body: JSON.stringify({ i }),
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
        const k = Math.floor(Math.random() * workers.length);
        const victim = workers[k] as ServiceProcess;
        if (victim.child.exitCode !== null || victim.child.signalCode !== null) {
          // nobody but this loop kills workers: one that ended by itself is reported loudly
          // (its output goes to the log) and replaced; the invariants below still must hold
          crashes.push(`worker ${victim.pid} exited by itself (${victim.child.exitCode ?? victim.child.signalCode}):\n${victim.output().slice(-4_000)}`);
        } else {
          process.kill(victim.pid, 'SIGKILL');
        }
        await endProcess(victim);
        all.delete(victim);
        kills++;
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
      const since = new Date(upAt - 1_000); // clocks are one machine's
      for (;;) {
        const { rows: started } = await sql<{ n: number }>`
          select count(*)::int as n from ledger.events where type = 'started' and occurred_at > ${since}`
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
    const chaosDone = chaos();
    const restartDone = restartDatabase();
    await Promise.all(Array.from({ length: PRODUCERS }, produce));
    producing = false;
    await restartDone;
    const deadline = Date.now() + 300_000;
    while ((await unfinished()) > 0) {
      if (Date.now() > deadline) throw new Error(`invocations still unfinished after 5 minutes`);
      await sleep(250);
    }
    await chaosDone;
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

    const { rows: twice } = await sql<{ n: number }>`
      select count(*)::int as n from (
        select invocation_id, attempt from ledger.events where type = 'started'
        group by invocation_id, attempt having count(*) > 1) d`.execute(handle.db);
    expect(twice[0]!.n).toBe(0); // no attempt number is ever started twice

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
        `function errors ${f.function_errors}, WorkerLost ${f.worker_lost} (attempts that may have run twice: ` +
        `their worker was killed mid-attempt, so they were retried), succeeded ${f.succeeded}, dead-lettered ` +
        `${f.dead_lettered}; responses while the database was down: ${JSON.stringify(Object.fromEntries(whileDown.statuses))}, ` +
        `healthz ${JSON.stringify([...whileDown.healthz])}`,
    );
    for (const c of crashes) console.warn(`[chaos] !!! ${c}`);
    expect(f.succeeded + f.dead_lettered).toBe(TOTAL);
    expect(resumeMs).toBeGreaterThanOrEqual(0);
  }, 900_000);
});
