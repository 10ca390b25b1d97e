// Scenario 1: N queued no-op invocations drained by ONE worker process: ours (inline and
// worker-thread isolation) next to graphile-worker and pg-boss, each in its own child
// process against its own fresh database on the same server.
import { runMigrations } from 'graphile-worker';
import { GRAPHILE_WORKER, PG_BOSS } from '../lib/peers.ts';
import PgBoss from 'pg-boss';
import { createLedgerDatabase, acceptMany, anyStartedSince, queueNotEmpty, readDrain, workerAvailable, Unavailable, type LedgerDatabase, type DrainReading } from '../lib/ledger.ts';
import { createScratchDatabase, withClient } from '../lib/pg.ts';
import { runScript, startLedger } from '../lib/proc.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';
import { drainCostWindow, describeDrainCost, processCpuSeconds, type DrainCost } from '../lib/cpu.ts';
import { databaseCostWindow, describeDatabaseCost, describeWalDetail, type DatabaseCost } from '../lib/db-cost.ts';

export interface OurWorkerSettings {
  /** null: WORKER_CONCURRENCY / CLAIM_BATCH_SIZE unset, the worker's defaults */
  concurrency: number | null;
  claimBatchSize: number | null;
  threads: number;
}

// Tuned on the 2-core machine like the peers' settings: more attempts in flight means
// bigger claim and completion batches, fewer statements and commits per job
// (inline, 50,000 jobs: concurrency 256 -> 10,040/s, 1024 -> 14,667/s, 2048 with claim
// batch 1000 -> 15,165/s; threads: 64 -> 5,187/s, 512 with claim batch 1000 -> 9,756/s).
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
export const INLINE_WORKER: OurWorkerSettings = { concurrency: env('BENCH_INLINE_CONCURRENCY', 2048), claimBatchSize: env('BENCH_CLAIM_BATCH', 1000), threads: 2 };
/** what a user who tunes nothing gets */
export const DEFAULT_WORKER: OurWorkerSettings = { concurrency: null, claimBatchSize: null, threads: 2 };
export const THREAD_WORKER: OurWorkerSettings = { concurrency: env('BENCH_THREAD_CONCURRENCY', 512), claimBatchSize: env('BENCH_CLAIM_BATCH', 1000), threads: 2 };
export const GRAPHILE_CONCURRENCY = Number(process.env.BENCH_GRAPHILE_CONCURRENCY ?? 32);
export const PGBOSS_LOOPS = Number(process.env.BENCH_PGBOSS_LOOPS ?? 4);

/** What the peers' drain scripts print */
interface PeerDrainResult {
  jobs: number;
  seconds: number;
  clock: string;
  cost: DrainCost;
}

/**
 * Starts one `--role worker` process on an already filled database and waits until the
 * queue is empty. `extra.env` adds to the worker's environment; `extra.beforeStop` runs
 * once the queue is empty, while the worker still runs (the seal scenario waits there
 * for its sealer to catch up).
 */
export async function drainWithOurWorker(
  db: LedgerDatabase,
  jobs: number,
  settings: OurWorkerSettings,
  sincePosition = '0',
  extra: { env?: Record<string, string>; beforeStop?: () => Promise<void> } = {},
): Promise<DrainReading & { cost?: DrainCost; dbCost?: DatabaseCost | null }> {
  if (!workerAvailable()) throw new Unavailable('worker not available (apps/worker/index.ts is the placeholder)');
  if (process.env.BENCH_ANALYZE_QUEUE) {
    // diagnosis only: fresh planner statistics for the just-filled queue before the drain
    await withClient(db.url, (c) => c.query('analyze ledger.queue, ledger.invocations'));
  }
  const dbCostWindow = await databaseCostWindow(db.url);
  let backendSeconds: number | null = null;
  const cost = await drainCostWindow(db.url);
  const worker = await startLedger('worker', db.url, {
    ...(settings.concurrency === null ? {} : { WORKER_CONCURRENCY: String(settings.concurrency) }),
    ...(settings.claimBatchSize === null ? {} : { CLAIM_BATCH_SIZE: String(settings.claimBatchSize) }),
    RUNTIME_THREADS: String(settings.threads),
    ...extra.env,
  });
  // what it spent starting (loading modules, connecting) before it answered /healthz
  const startupCpu = processCpuSeconds(worker.proc.pid);
  let drainCost: DrainCost | undefined;
  try {
    const started = Date.now();
    const limitMs = Math.max(120_000, jobs * 20); // ≥ 50 jobs/s or give up
    let sawStart = false;
    // cheap probes only: the span itself comes from the ledger afterwards, so polling
    // once a second costs precision nowhere and load on the server as little as possible
    for (;;) {
      await new Promise((r) => setTimeout(r, 1_000));
      await dbCostWindow.readWal();
      if (!(await queueNotEmpty(db))) {
        drainCost = await cost(jobs, worker.proc.pid, startupCpu);
        backendSeconds = await dbCostWindow.backends();
        await extra.beforeStop?.();
        break;
      }
      const elapsed = Date.now() - started;
      if (!sawStart && elapsed > 20_000) {
        sawStart = await anyStartedSince(db, sincePosition);
        if (!sawStart) throw new Unavailable('worker not available (no attempt started within 20 s)');
      }
      if (elapsed > limitMs) throw new Error(`drain did not finish within ${limitMs} ms:\n${worker.tail()}`);
    }
  } catch (e) {
    await dbCostWindow.close();
    throw e;
  } finally {
    await worker.stop();
  }
  const dbCost = await dbCostWindow.finish(jobs, backendSeconds);
  if (dbCost?.walDetail) console.error(`[bench] WAL of the drain by record type and relation:\n${describeWalDetail(dbCost)}`);
  const reading = await readDrain(db, sincePosition);
  if (reading.succeeded !== jobs) throw new Error(`expected ${jobs} succeeded, the ledger has ${reading.succeeded}`);
  return { ...reading, cost: drainCost, dbCost };
}

/** The per-job costs the issue's targets are about, as numbers (they are also in the notes). */
function costMeasurements(subject: string, cost: DrainCost | undefined): Measurement[] {
  const out: Measurement[] = [];
  const add = (metric: string, value: number | null | undefined, unit: string) => {
    if (value !== null && value !== undefined) out.push({ scenario: 'drain', subject, metric, value, unit });
  };
  add('worker CPU/job', cost?.workerSteadyUsPerJob ?? cost?.workerUsPerJob, 'µs');
  add('PostgreSQL CPU/job', cost?.postgresUsPerJob, 'µs');
  // the server's WAL, as the peers' is measured
  add('WAL/job', cost?.walBytesPerJob, 'B');
  return out;
}

async function ours(isolation: 'inline' | 'thread', jobs: number, tuning: 'tuned' | 'defaults' = 'tuned'): Promise<Measurement[]> {
  const subject = `invoke-ledger (${isolation === 'inline' ? 'inline' : 'worker threads'}${tuning === 'defaults' ? ', defaults' : ''})`;
  const settings = tuning === 'defaults' ? DEFAULT_WORKER : isolation === 'inline' ? INLINE_WORKER : THREAD_WORKER;
  const db = await createLedgerDatabase(`drain_${isolation}`);
  try {
    await acceptMany(db, db.functions[isolation], jobs);
    const r = await drainWithOurWorker(db, jobs, settings);
    const knobs = settings.concurrency === null ? 'WORKER_CONCURRENCY and CLAIM_BATCH_SIZE unset' : `concurrency ${settings.concurrency}, claim batch ${settings.claimBatchSize}`;
    const note = `${knobs}${isolation === 'thread' ? `, ${settings.threads} threads` : ''}; ledger clock${r.cost ? `; ${describeDrainCost(r.cost)}` : ''}${r.dbCost ? `; ${describeDatabaseCost(r.dbCost)}` : ''}`;
    return [
      { scenario: 'drain', subject, metric: 'jobs/s', value: jobs / r.seconds, unit: 'jobs/s', note },
      { scenario: 'drain', subject, metric: 'events/invocation', value: r.events / r.invocations, unit: 'events' },
      ...costMeasurements(subject, r.cost),
    ];
  } catch (e) {
    if (e instanceof Unavailable) return [{ scenario: 'drain', subject, metric: 'jobs/s', value: null, unit: 'jobs/s', note: e.message }];
    throw e;
  } finally {
    await db.close();
  }
}

async function graphile(jobs: number): Promise<Measurement[]> {
  const db = await createScratchDatabase('drain_graphile');
  try {
    await runMigrations({ connectionString: db.url });
    await withClient(db.url, async (c) => {
      for (let done = 0; done < jobs; done += 1000) {
        await c.query(
          `select graphile_worker.add_jobs(array(
             select ('noop', json_build_object('i', g), null, null, null, null, null, null)::graphile_worker.job_spec
             from generate_series(1, $1) g))`,
          [Math.min(1000, jobs - done)],
        );
      }
    });
    const r = await runScript<PeerDrainResult>(
      'peers/graphile-drain.ts',
      { BENCH_DATABASE_URL: db.url, BENCH_JOBS: String(jobs), BENCH_CONCURRENCY: String(GRAPHILE_CONCURRENCY) },
      Math.max(180_000, jobs * 10),
    );
    const note = `concurrency ${GRAPHILE_CONCURRENCY}, localQueue.size 500, completeJobBatchDelay 0; ${r.clock}; ${describeDrainCost(r.cost)}`;
    return [{ scenario: 'drain', subject: GRAPHILE_WORKER, metric: 'jobs/s', value: r.jobs / r.seconds, unit: 'jobs/s', note }];
  } finally {
    await db.drop();
  }
}

async function pgboss(jobs: number): Promise<Measurement[]> {
  const db = await createScratchDatabase('drain_pgboss');
  try {
    const boss = new PgBoss({ connectionString: db.url, max: 2, supervise: false, schedule: false });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue('noop');
    for (let done = 0; done < jobs; done += 1000) {
      await boss.insert(Array.from({ length: Math.min(1000, jobs - done) }, (_, i) => ({ name: 'noop', data: { i: done + i } })));
    }
    await boss.stop({ graceful: false, wait: true, close: true });
    const r = await runScript<PeerDrainResult>(
      'peers/pgboss-drain.ts',
      { BENCH_DATABASE_URL: db.url, BENCH_JOBS: String(jobs), BENCH_BATCH_SIZE: '500', BENCH_WORK_LOOPS: String(PGBOSS_LOOPS) },
      Math.max(180_000, jobs * 10),
    );
    const note = `work() batchSize 500, pollingIntervalSeconds 0.5, ${PGBOSS_LOOPS} work loop(s); ${r.clock}; ${describeDrainCost(r.cost)}`;
    return [{ scenario: 'drain', subject: PG_BOSS, metric: 'jobs/s', value: r.jobs / r.seconds, unit: 'jobs/s', note }];
  } finally {
    await db.drop();
  }
}

/** BENCH_DRAIN_SUBJECTS=graphile,pgboss,inline,thread,default picks some (tuning runs). */
export async function drainScenario(scale: BenchScale): Promise<Measurement[]> {
  const pick = new Set((process.env.BENCH_DRAIN_SUBJECTS ?? 'graphile,pgboss,inline,thread,default').split(','));
  const out: Measurement[] = [];
  log(`drain: ${scale.drainJobs} jobs`);
  const subjects: [string, string, () => Promise<Measurement[]>][] = [
    ['graphile', GRAPHILE_WORKER, () => graphile(scale.drainJobs)],
    ['pgboss', PG_BOSS, () => pgboss(scale.drainJobs)],
    ['inline', 'invoke-ledger (inline)', () => ours('inline', scale.drainJobs)],
    ['thread', 'invoke-ledger (worker threads)', () => ours('thread', scale.drainJobs)],
    ['default', 'invoke-ledger (inline, defaults)', () => ours('inline', scale.drainJobs, 'defaults')],
  ];
  for (const [key, subject, run] of subjects) {
    if (!pick.has(key)) continue;
    log(`drain: ${subject}`);
    try {
      out.push(...(await run()));
    } catch (e) {
      // one subject failing leaves the others' numbers in the table
      log(`drain ${subject} FAILED: ${(e as Error).stack ?? String(e)}`);
      out.push({ scenario: 'drain', subject, metric: 'jobs/s', value: null, unit: 'jobs/s', note: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  return out;
}
