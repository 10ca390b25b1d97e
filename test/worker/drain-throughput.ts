// Drain throughput of one worker (in this process): N no-op inline invocations are
// accepted first, then one worker drains them; the rate is taken from the ledger clock
// (first `started` to last `succeeded`). Not a test: prints one line.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/worker/drain-throughput.ts [N] [concurrency] [batch]
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { databaseUrl } from '../helpers/pg-admin.ts';
import { fn, invokeAsync, startWorker } from './helpers.ts';

const admin = process.env.DATABASE_URL;
if (!admin) throw new Error('set DATABASE_URL to a server where a scratch database may be created');
const n = Number(process.argv[2] ?? 10_000);
const concurrency = Number(process.argv[3] ?? 256);
const batch = Number(process.argv[4] ?? 500);
const name = `drain_${randomBytes(4).toString('hex')}`;

const adminClient = new pg.Client({ connectionString: admin });
await adminClient.connect();
await adminClient.query(`create database "${name}"`);
const url = databaseUrl(admin, name);
try {
  await migrate(url);
  const handle = openDatabase(url, { max: 10 });
  const f = await fn(handle.db, 'noop', 'noop.ts');
  await invokeAsync(handle.db, f, Array.from({ length: n }, (_, i) => ({ i })));
  const t0 = Date.now();
  const worker = await startWorker(handle.db, url, { concurrency, claimBatchSize: batch, pollIntervalMs: 1_000, leaseGraceMs: 30_000 });
  for (;;) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.queue`.execute(handle.db);
    if (rows[0]?.n === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const wall = (Date.now() - t0) / 1000;
  await worker.stop();
  const { rows } = await sql<{ seconds: number; succeeded: number }>`
    select extract(epoch from max(occurred_at) filter (where type = 'succeeded') - min(occurred_at) filter (where type = 'started'))::float8 as seconds,
           count(*) filter (where type = 'succeeded')::int as succeeded
    from ledger.events`.execute(handle.db);
  const r = rows[0] as { seconds: number; succeeded: number };
  console.log(
    `drained ${r.succeeded}/${n} no-op inline invocations: ${(r.succeeded / r.seconds).toFixed(0)} invocations/s (ledger clock, ${r.seconds.toFixed(2)} s; wall ${wall.toFixed(2)} s) concurrency ${concurrency}, claim batch ${batch}`,
  );
  await handle.close();
} finally {
  await adminClient.query(`drop database if exists "${name}" with (force)`);
  await adminClient.end();
}
