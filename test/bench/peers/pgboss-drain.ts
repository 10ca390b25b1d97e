// One pg-boss process draining BENCH_JOBS no-op jobs that are already queued, with
// `work({ batchSize })`. The span comes from pg-boss's own table: min(started_on) →
// max(completed_on) of the queue's jobs (both set by the database clock).
import PgBoss from 'pg-boss';
import { drainCostWindow } from '../lib/cpu.ts';
import { printResult } from '../lib/proc.ts';

const total = Number(process.env.BENCH_JOBS);
const batchSize = Number(process.env.BENCH_BATCH_SIZE ?? 500);
const loops = Number(process.env.BENCH_WORK_LOOPS ?? 1);
const queue = 'noop';

const boss = new PgBoss({
  connectionString: process.env.BENCH_DATABASE_URL,
  max: loops + 4,
  supervise: false,
  schedule: false,
  migrate: false,
});
boss.on('error', (e) => process.stderr.write(`pg-boss: ${String(e)}\n`));
const cost = await drainCostWindow(process.env.BENCH_DATABASE_URL as string);
await boss.start();
const db = boss.getDb();
for (let i = 0; i < loops; i++) {
  await boss.work(queue, { batchSize, pollingIntervalSeconds: 0.5 }, async () => {});
}
for (;;) {
  const { rows } = (await db.executeSql(`select count(*)::int as n from pgboss.job where name = $1 and state = 'completed'`, [queue])) as {
    rows: { n: number }[];
  };
  if ((rows[0]?.n ?? 0) >= total) break;
  await new Promise((r) => setTimeout(r, 100));
}
const spent = await cost(total, process.pid);
const { rows } = (await db.executeSql(
  `select count(*)::int as n, extract(epoch from max(completed_on) - min(started_on))::float8 as seconds
   from pgboss.job where name = $1 and state = 'completed'`,
  [queue],
)) as { rows: { n: number; seconds: number }[] };
await boss.stop({ graceful: false, wait: true, close: true });
printResult({ jobs: rows[0]?.n, seconds: rows[0]?.seconds, clock: 'postgres: min(started_on) → max(completed_on)', cost: spent });
process.exit(0);
