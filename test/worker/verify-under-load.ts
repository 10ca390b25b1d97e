// `verify` while a worker drains: N async invocations of a function that fails ~20% of
// attempts (so they pass through queued, running and retry_scheduled), one in-process
// worker, and verify run back to back until the queue is empty. Prints the problems each
// run reported; every one of them is false (the final verify at rest is clean).
// Not a test: prints a summary line.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/worker/verify-under-load.ts [N]
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { verifyLedger } from '../../db/replay.ts';
import { databaseUrl } from '../helpers/pg-admin.ts';
import { fn, invokeAsync, startWorker } from './helpers.ts';

const admin = process.env.DATABASE_URL;
if (!admin) throw new Error('set DATABASE_URL to a server where a scratch database may be created');
const n = Number(process.argv[2] ?? 4_500);
const name = `verify_${randomBytes(4).toString('hex')}`;

const adminClient = new pg.Client({ connectionString: admin });
await adminClient.connect();
await adminClient.query(`create database "${name}"`);
const url = databaseUrl(admin, name);
try {
  await migrate(url);
  const handle = openDatabase(url, { max: 10 });
  const f = await fn(handle.db, 'flaky', 'flaky.ts', { maxRetries: 4, retryBaseDelayMs: 20, retryMaxDelayMs: 200 });
  await invokeAsync(handle.db, f, Array.from({ length: n }, (_, i) => ({ i })));
  const worker = await startWorker(handle.db, url, { concurrency: 64, claimBatchSize: 100 });
  const runs: number[] = [];
  const kinds = new Map<string, number>();
  for (;;) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.queue`.execute(handle.db);
    if (rows[0]?.n === 0) break;
    const problems = await verifyLedger(handle.db);
    runs.push(problems.length);
    for (const p of problems) {
      const kind = p.problem.replace(/[0-9a-f-]{36}|\d{4}-\d\d-\d\dT[\d:.]+Z|\d+/g, '…');
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
  }
  await worker.stop();
  const atRest = await verifyLedger(handle.db);
  console.log(`verify while draining ${n} invocations: ${runs.length} runs, ${runs.filter((r) => r > 0).length} reported problems (${runs.join(', ')}); at rest: ${atRest.length}`);
  for (const [kind, count] of [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${count} × ${kind}`);
  await handle.close();
} finally {
  await adminClient.query(`drop database if exists "${name}" with (force)`);
  await adminClient.end();
}
