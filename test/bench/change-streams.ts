// Changes/s of a no-op consumer through a change stream (docs/streams.md, "Change streams
// from PostgreSQL tables"). Starts its own PostgreSQL with wal_level=logical (the embedded
// server, on a free port, thrown away after), puts the ledger and a table in it, creates a
// change stream mapping (4 shards, batchSize 500), then commits N single-row changes (inserts
// and updates over 1,000 keys, 100 rows per transaction) and waits until every change was
// delivered to `noop.mjs` on inline runtimes in this process. The rate is from the first
// commit to the last batch's `succeeded` (the ledger's clock), so it includes reading the
// slot and appending to the stream. Prints a line and writes JSON to test/bench/results/.
//   npx tsx test/bench/change-streams.ts [N]
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { createChangeStreamReader } from '../../apps/worker/event-sources/change-streams.ts';
import { createStreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { createChangeStreamMapping } from '../../db/change-streams.ts';
import { openDatabase } from '../../db/connection.ts';
import { startEmbeddedPostgres } from '../../db/embedded.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { freePort } from '../helpers/pg-admin.ts';

const n = Number(process.argv[2] ?? 20_000);
const silent = pino({ level: 'silent' });
const functionsDir = fileURLToPath(new URL('./fixtures/functions/', import.meta.url));

const dir = await mkdtemp(path.join(tmpdir(), 'ledger-bench-changes-'));
await chmod(dir, 0o755);
const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort(), persistent: false });
try {
  await migrate(server.url);
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  await c.query('create table public.bench (id int primary key, v int not null); alter table public.bench replica identity full');
  const handle = openDatabase(server.url);
  const db = handle.db;
  await createFunction(db, 'noop', { runtime: 'MODULE', handler: 'noop.mjs', isolation: 'inline', timeoutMs: 30_000 });
  const m = await createChangeStreamMapping(db, { table: 'bench', functionName: 'noop', streamViewType: 'NEW_AND_OLD_IMAGES', shardCount: 4, batchSize: 500 });
  const runtimes = createRuntimes({ functionsDir, logger: silent, poolSize: 2 });
  const poller = createStreamPoller({ db, runtimes, logger: silent, workerId: 'bench', pollIntervalMs: 50 });
  const reader = createChangeStreamReader({ db, connectionString: server.url, logger: silent, pollIntervalMs: 200 });
  await poller.start();
  await reader.start();
  const t0 = (await c.query<{ now: Date }>('select clock_timestamp() as now')).rows[0]?.now as Date;
  for (let i = 0; i < n; i += 100) {
    const ids = Array.from({ length: Math.min(100, n - i) }, (_, j) => ((i + j) * 7919) % 1000);
    // one row per statement: a key twice in one statement would be refused by on conflict
    await c.query('begin');
    for (const id of ids) await c.query('insert into public.bench (id, v) values ($1, 0) on conflict (id) do update set v = bench.v + 1', [id]);
    await c.query('commit');
  }
  for (;;) {
    const { rows } = await sql<{ done: string }>`
      select coalesce(sum(b.record_count), 0)::text as done from ledger.stream_batches b join ledger.invocations i on i.id = b.invocation_id
      where b.mapping_id = ${m.id}::uuid and i.status = 'succeeded'`.execute(db);
    if (Number(rows[0]?.done) >= n) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const { rows: end } = await sql<{ last: Date; batches: string }>`
    select max(i.updated_at) as last, count(*)::text as batches from ledger.stream_batches b join ledger.invocations i on i.id = b.invocation_id
    where b.mapping_id = ${m.id}::uuid`.execute(db);
  const seconds = ((end[0]?.last as Date).getTime() - t0.getTime()) / 1000;
  const result = { changes: n, batches: Number(end[0]?.batches), seconds, changesPerSecond: Math.round(n / seconds), load: loadavg()[0] ?? 0 };
  console.log(`| ${n} | 4 | 500 | ${result.changesPerSecond} | ${result.batches} | ${seconds.toFixed(1)} s | load ${result.load.toFixed(1)} |`);
  const out = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'change-streams.json'), `${JSON.stringify(result, null, 2)}\n`);
  await reader.stop();
  await poller.stop();
  await runtimes.close();
  await handle.close();
  await c.end();
} finally {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
