// Records/s of a no-op consumer through a native stream (docs/streams.md): N records over
// 16 partition keys are put first (500 per PutRecords), then one stream mapping
// (TRIM_HORIZON) delivers them to `noop.mjs` on inline runtimes in this process, for each
// combination of shard count and batch size below. The rate is taken from the ledger
// clock: the first batch's `accepted` to the last batch's `succeeded`. Prints a markdown
// table and writes JSON to test/bench/results/.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/bench/streams.ts [N]
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { createStreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { openDatabase } from '../../db/connection.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { createStream, createStreamMapping, putRecords } from '../../db/streams.ts';
import type { Db } from '../../db/schema.ts';
import { databaseUrl } from '../helpers/pg-admin.ts';

const admin = process.env.DATABASE_URL;
if (!admin) throw new Error('set DATABASE_URL to a server where a scratch database may be created');
const n = Number(process.argv[2] ?? 20_000);
const CASES = [
  { shards: 1, batchSize: 100 },
  { shards: 4, batchSize: 100 },
  { shards: 4, batchSize: 500 },
];
const silent = pino({ level: 'silent' });
const functionsDir = fileURLToPath(new URL('./fixtures/functions/', import.meta.url));

interface Row {
  shards: number;
  batchSize: number;
  records: number;
  batches: number;
  seconds: number;
  recordsPerSecond: number;
}

async function measure(db: Db, fnName: string): Promise<{ seconds: number; batches: number }> {
  for (;;) {
    const { rows } = await sql<{ m: number; running: number }>`
      select coalesce(sum(b.record_count) filter (where i.status = 'succeeded'), 0)::int as m, count(*) filter (where i.status = 'running')::int as running
      from ledger.stream_batches b join ledger.invocations i on i.id = b.invocation_id where i.function_name = ${fnName}`.execute(db);
    if ((rows[0]?.m ?? 0) >= n && rows[0]?.running === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows } = await sql<{ seconds: number; batches: number }>`
    select extract(epoch from max(e.occurred_at) filter (where e.type = 'succeeded') - min(e.occurred_at) filter (where e.type = 'accepted'))::float8 as seconds,
      count(*) filter (where e.type = 'succeeded')::int as batches
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id where i.function_name = ${fnName}`.execute(db);
  return rows[0] as { seconds: number; batches: number };
}

const name = `bench_streams_${randomBytes(4).toString('hex')}`;
const adminClient = new pg.Client({ connectionString: admin });
await adminClient.connect();
await adminClient.query(`create database "${name}"`);
const url = databaseUrl(admin, name);
const results: Row[] = [];
try {
  await migrate(url);
  const handle = openDatabase(url, { max: 10 });
  const db = handle.db;
  const runtimes = createRuntimes({ functionsDir, logger: silent, poolSize: 2 });
  const poller = createStreamPoller({ db, runtimes, logger: silent, workerId: 'bench', pollIntervalMs: 20 });
  await poller.start();
  for (const [i, c] of CASES.entries()) {
    const stream = `bench-${i}`;
    const fnName = `noop_stream_${i}`;
    await createFunction(db, fnName, { runtime: 'MODULE', handler: 'noop.mjs', isolation: 'inline', timeoutMs: 10_000 });
    await createStream(db, { name: stream, shardCount: c.shards });
    for (let k = 0; k < n; k += 500) {
      const data = Buffer.from(JSON.stringify({ n: k, pad: 'x'.repeat(80) })).toString('base64');
      await putRecords(db, stream, Array.from({ length: Math.min(500, n - k) }, (_, j) => ({ partitionKey: `key-${(k + j) % 16}`, data })));
    }
    await createStreamMapping(db, { streamName: stream, functionName: fnName, startingPosition: 'TRIM_HORIZON', batchSize: c.batchSize });
    const r = await measure(db, fnName);
    results.push({ ...c, records: n, batches: r.batches, seconds: r.seconds, recordsPerSecond: Math.round(n / r.seconds) });
  }
  await poller.stop();
  await runtimes.close();
  await handle.close();
} finally {
  await adminClient.query(`drop database if exists "${name}" with (force)`);
  await adminClient.end();
}

const load = loadavg()[0]?.toFixed(2);
console.log(`\n${n} records (~120 bytes) over 16 keys, no-op inline consumer, one poller; load average ${load}\n`);
console.log('| shards | batchSize | records/s | batches | seconds (ledger clock) |\n| ---: | ---: | ---: | ---: | ---: |');
for (const r of results) console.log(`| ${r.shards} | ${r.batchSize} | ${r.recordsPerSecond.toLocaleString('en')} | ${r.batches} | ${r.seconds.toFixed(2)} |`);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const file = `${dir}streams-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ n, load, results }, null, 2));
console.log(`\nwritten to ${file}`);
