// Scale-out (docs/scale.md): one ledger drained by 1, 2 and 4 worker processes, straight to
// PostgreSQL and through PgBouncer in transaction mode. The workers are started first and
// sit idle; the jobs are then accepted in ONE transaction, so every process sees them at
// the same commit (their LISTEN wakes them) and none gets a head start from starting
// earlier. Timed from the ledger: first `started` → last `succeeded`.
import { existsSync } from 'node:fs';
import { acceptInvocations } from '../../../db/invocations.ts';
import { PGBOUNCER, startPgBouncer, type PgBouncer } from '../../helpers/pgbouncer.ts';
import { createLedgerDatabase, readDrain, type LedgerDatabase } from '../lib/ledger.ts';
import { adminUrl, withClient } from '../lib/pg.ts';
import { startLedger, type LedgerProcess } from '../lib/proc.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';

const PER_PROCESS = { WORKER_CONCURRENCY: '512', CLAIM_BATCH_SIZE: '500', RUNTIME_THREADS: '1', DB_POOL_SIZE: '10' };
const COUNTS = (process.env.BENCH_WORKER_COUNTS ?? '1,2,4').split(',').map(Number);

async function acceptAtOnce(db: LedgerDatabase, jobs: number): Promise<void> {
  const fn = db.functions.inline;
  await db.handle.db.transaction().execute(async (tx) => {
    for (let done = 0; done < jobs; done += 1000) {
      const size = Math.min(1000, jobs - done);
      await acceptInvocations(tx, Array.from({ length: size }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i: done + i } })));
    }
  });
}

async function drain(n: number, jobs: number, bouncer: PgBouncer | null): Promise<{ jobsPerSecond: number; perProcess: number[] }> {
  const db = await createLedgerDatabase(`workers_${n}${bouncer ? '_pgb' : ''}`);
  const workers: LedgerProcess[] = [];
  try {
    let env: Record<string, string> = {};
    let url = db.url;
    if (bouncer) {
      // behind a transaction pooler the login's role default is the app role (docs/scale.md)
      const login = decodeURIComponent(new URL(db.url).username || 'postgres');
      await withClient(adminUrl(), (c) => c.query(`alter role "${login}" in database "${db.name}" set role = ledger_app`));
      url = bouncer.url(db.name);
      env = { DATABASE_POOL_MODE: 'transaction', DATABASE_LISTEN_URL: db.url };
    }
    for (let i = 0; i < n; i++) workers.push(await startLedger('worker', url, { ...PER_PROCESS, ...env }));
    await acceptAtOnce(db, jobs);
    const until = Date.now() + Math.max(180_000, jobs * 20);
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const reading = await readDrain(db);
      if (reading.succeeded === jobs) break;
      if (Date.now() > until) throw new Error(`the drain did not finish: ${reading.succeeded} of ${jobs}`);
    }
    const reading = await readDrain(db);
    const { rows } = await withClient(db.url, (c) =>
      c.query<{ n: number }>(`select count(*)::int as n from ledger.events where type = 'started' group by data ->> 'workerId' order by 1 desc`),
    );
    const { rows: dupes } = await withClient(db.url, (c) =>
      c.query<{ n: number }>(`select count(*)::int as n from (select 1 from ledger.events where type = 'started' group by invocation_id, attempt having count(*) > 1) d`),
    );
    if (dupes[0]?.n) throw new Error(`${dupes[0].n} attempts started twice`);
    return { jobsPerSecond: jobs / reading.seconds, perProcess: rows.map((r) => r.n) };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await db.close();
  }
}

export async function workersScenario(scale: BenchScale): Promise<Measurement[]> {
  const jobs = scale.drainJobs;
  const out: Measurement[] = [];
  const bouncer = existsSync(PGBOUNCER) ? await startPgBouncer(adminUrl(), { poolSize: 20 }) : null;
  try {
    let one: number | null = null;
    for (const via of ['direct', 'pgbouncer'] as const) {
      if (via === 'pgbouncer' && !bouncer) {
        out.push({ scenario: 'workers', subject: 'through pgbouncer', metric: 'jobs/s', value: null, unit: 'jobs/s', note: `${PGBOUNCER} missing` });
        continue;
      }
      for (const n of COUNTS) {
        log(`workers: ${n} process(es), ${via}, ${jobs} jobs`);
        const r = await drain(n, jobs, via === 'pgbouncer' ? bouncer : null);
        if (via === 'direct' && n === 1) one = r.jobsPerSecond;
        out.push({
          scenario: 'workers',
          subject: `${n} worker process${n > 1 ? 'es' : ''}, ${via === 'direct' ? 'direct' : 'through pgbouncer (transaction, pool 20)'}`,
          metric: 'jobs/s',
          value: r.jobsPerSecond,
          unit: 'jobs/s',
          note: `${one ? `×${(r.jobsPerSecond / one).toFixed(2)} of 1 process direct; ` : ''}started per process: ${r.perProcess.join(' / ')}; each: concurrency 512, claim batch 500`,
        });
      }
    }
  } finally {
    await bouncer?.stop();
  }
  return out;
}
