// Scenario 2: accepting async work. Ours over HTTP (Lambda `Event` invokes, 64
// connections, autocannon) against a `--role api` child process; the peers' enqueue
// calls (graphile-worker addJob, pg-boss send) from 64 concurrent in-process callers.
// Each is checked against its database: what was acknowledged is what was written.
import { sql } from 'kysely';
import { makeWorkerUtils, runMigrations } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { Unavailable, createLedgerDatabase } from '../lib/ledger.ts';
import { invokeUrl, probeInvoke } from '../lib/lambda.ts';
import { callerLoad, httpLoad } from '../lib/load.ts';
import { createScratchDatabase, withClient } from '../lib/pg.ts';
import { GRAPHILE_WORKER, PG_BOSS } from '../lib/peers.ts';
import { startLedger } from '../lib/proc.ts';
import { log, type BenchScale, type Measurement } from '../lib/types.ts';
import { cpuWindow, describeCpu, type CpuSplit } from '../lib/cpu.ts';

const CONNECTIONS = 64;
/** the peers get the pool size our API runs with by default (DB_POOL_SIZE) */
const PEER_POOL = 20;

async function ours(amount: number): Promise<Measurement[]> {
  const subject = 'invoke-ledger (HTTP Event)';
  const db = await createLedgerDatabase('accept');
  try {
    const api = await startLedger('api', db.url);
    try {
      await probeInvoke(api.baseUrl, 'bench_inline', 'Event', 202);
      const count = async () =>
        (await sql<{ n: number }>`select count(*)::int as n from ledger.events where type = 'accepted'`.execute(db.handle.db)).rows[0]?.n ?? 0;
      const before = await count();
      const cpu = cpuWindow();
      const r = await httpLoad({
        url: invokeUrl(api.baseUrl, 'bench_inline'),
        connections: CONNECTIONS,
        amount,
        headers: { 'x-amz-invocation-type': 'Event' },
      });
      const split = cpu(api.proc.pid);
      const written = (await count()) - before;
      if (written !== r.ok) throw new Error(`${r.ok} requests answered 2xx but ${written} accepted events were written`);
      return [
        { scenario: 'accept', subject, metric: 'req/s', value: r.rps, unit: 'req/s', note: `${CONNECTIONS} connections, ${r.ok} × 202 = ${written} accepted events, ${r.non2xx} non-2xx, ${r.errors} errors` },
        { scenario: 'accept', subject, metric: 'p99', value: r.p99, unit: 'ms', note: describeCpu(split, r.ok, 'API') },
        ...(split ? [{ scenario: 'accept', subject, metric: 'API CPU/request', value: (split.product / r.ok) * 1e6, unit: 'µs' }] : []),
      ];
    } finally {
      await api.stop();
    }
  } catch (e) {
    if (e instanceof Unavailable) return [{ scenario: 'accept', subject, metric: 'req/s', value: null, unit: 'req/s', note: e.message }];
    throw e;
  } finally {
    await db.close();
  }
}

async function graphile(seconds: number): Promise<Measurement[]> {
  const db = await createScratchDatabase('accept_graphile');
  try {
    await runMigrations({ connectionString: db.url });
    const utils = await makeWorkerUtils({ connectionString: db.url, maxPoolSize: PEER_POOL });
    let r;
    let split: CpuSplit | null = null;
    try {
      const cpu = cpuWindow();
      r = await callerLoad(CONNECTIONS, seconds, (i) => utils.addJob('noop', { i }));
      split = cpu();
    } finally {
      await utils.release();
    }
    const written = await withClient(db.url, async (c) => (await c.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs')).rows[0]?.n);
    if (written !== r.ok) throw new Error(`graphile-worker: ${r.ok} addJob calls resolved but ${written} jobs exist`);
    return [{ scenario: 'accept', subject: `${GRAPHILE_WORKER} addJob`, metric: 'req/s', value: r.rps, unit: 'req/s', note: `${CONNECTIONS} in-process callers, pool ${PEER_POOL}, ${r.errors} errors; ${describeCpu(split, r.ok, null, 'callers + library')}` }];
  } finally {
    await db.drop();
  }
}

async function pgboss(seconds: number): Promise<Measurement[]> {
  const db = await createScratchDatabase('accept_pgboss');
  try {
    const boss = new PgBoss({ connectionString: db.url, max: PEER_POOL, supervise: false, schedule: false });
    boss.on('error', () => {});
    await boss.start();
    let r;
    let split: CpuSplit | null = null;
    try {
      await boss.createQueue('noop');
      const cpu = cpuWindow();
      r = await callerLoad(CONNECTIONS, seconds, (i) => boss.send('noop', { i }));
      split = cpu();
    } finally {
      await boss.stop({ graceful: false, wait: true, close: true });
    }
    const written = await withClient(db.url, async (c) => (await c.query<{ n: number }>(`select count(*)::int as n from pgboss.job where name = 'noop'`)).rows[0]?.n);
    if (written !== r.ok) throw new Error(`pg-boss: ${r.ok} send calls resolved but ${written} jobs exist`);
    return [{ scenario: 'accept', subject: `${PG_BOSS} send`, metric: 'req/s', value: r.rps, unit: 'req/s', note: `${CONNECTIONS} in-process callers, pool ${PEER_POOL}, ${r.errors} errors; ${describeCpu(split, r.ok, null, 'callers + library')}` }];
  } finally {
    await db.drop();
  }
}

export async function acceptScenario(scale: BenchScale): Promise<Measurement[]> {
  log(`accept: peers ${scale.acceptSeconds} s each, HTTP ${scale.acceptRequests} requests`);
  return [...(await graphile(scale.acceptSeconds)), ...(await pgboss(scale.acceptSeconds)), ...(await ours(scale.acceptRequests))];
}
