// Messages/s of a no-op consumer through the three batch sources, side by side in one run:
// the ledger's own queue (docs/queues.md), RabbitMQ and NATS JetStream (docs/brokers.md).
// N messages are put in the source first, then one mapping (batchSize 100, window 100 ms)
// delivers them to `noop.mjs` on inline runtimes in this process. The rate is taken from
// the ledger clock: the first batch's `accepted` to the last batch's `succeeded`. Prints a
// markdown table and writes JSON to test/bench/results/.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/bench/brokers.ts [N]
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { connect as amqpConnect } from 'amqplib';
import { sql } from 'kysely';
import { connect as natsConnect } from 'nats';
import pg from 'pg';
import { pino } from 'pino';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { createEventSourcePoller } from '../../apps/worker/event-sources/index.ts';
import { createBrokerSources } from '../../apps/worker/event-sources/brokers/index.ts';
import { createBrokerMapping } from '../../db/brokers.ts';
import { openDatabase } from '../../db/connection.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import type { Db } from '../../db/schema.ts';
import { databaseUrl } from '../helpers/pg-admin.ts';

const admin = process.env.DATABASE_URL;
if (!admin) throw new Error('set DATABASE_URL to a server where a scratch database may be created');
const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const n = Number(process.argv[2] ?? 20_000);
const BATCH = 100;
const WINDOW_MS = 100;
const silent = pino({ level: 'silent' });
const functionsDir = fileURLToPath(new URL('./fixtures/functions/', import.meta.url));

interface Row {
  source: string;
  messages: number;
  batches: number;
  seconds: number;
  messagesPerSecond: number;
}

async function measure(db: Db, source: string, fnName: string): Promise<Row> {
  for (;;) {
    const { rows } = await sql<{ m: number; running: number }>`
      select coalesce(sum(jsonb_array_length(coalesce(e.data #> '{payload,Records}', (select jsonb_agg(x) from jsonb_each(coalesce(e.data #> '{payload,rmqMessagesByQueue}', e.data #> '{payload,records}')) g, jsonb_array_elements(g.value) x)))), 0)::int as m,
        count(*) filter (where i.status = 'running')::int as running
      from ledger.invocations i join ledger.events e on e.invocation_id = i.id and e.seq = 1
      where i.function_name = ${fnName}`.execute(db);
    if ((rows[0]?.m ?? 0) >= n && rows[0]?.running === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows } = await sql<{ seconds: number; batches: number }>`
    select extract(epoch from max(e.occurred_at) filter (where e.type = 'succeeded') - min(e.occurred_at) filter (where e.type = 'accepted'))::float8 as seconds,
      count(*) filter (where e.type = 'succeeded')::int as batches
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id where i.function_name = ${fnName}`.execute(db);
  const r = rows[0] as { seconds: number; batches: number };
  return { source, messages: n, batches: r.batches, seconds: r.seconds, messagesPerSecond: Math.round(n / r.seconds) };
}

const name = `bench_brokers_${randomBytes(4).toString('hex')}`;
const adminClient = new pg.Client({ connectionString: admin });
await adminClient.connect();
await adminClient.query(`create database "${name}"`);
const url = databaseUrl(admin, name);
const results: Row[] = [];
const queue = `ledger-bench-${randomUUID().slice(0, 8)}`;
const stream = `ledger_bench_${randomUUID().slice(0, 8)}`;
const amqp = await amqpConnect(RABBITMQ_URL);
const ch = await amqp.createConfirmChannel();
const nc = await natsConnect({ servers: new URL(NATS_URL).host });
const jsm = await nc.jetstreamManager();
try {
  await migrate(url);
  const handle = openDatabase(url, { max: 10 });
  const db = handle.db;
  const runtimes = createRuntimes({ functionsDir, logger: silent, poolSize: 2 });
  for (const f of ['noop_queue', 'noop_rabbitmq', 'noop_nats']) await createFunction(db, f, { runtime: 'MODULE', handler: 'noop.mjs', isolation: 'inline', timeoutMs: 10_000 });

  // the ledger's own queue
  await createQueue(db, { name: 'bench', visibilityTimeoutSeconds: 30 });
  for (let i = 0; i < n; i += 1_000) await sendMessages(db, 'bench', Array.from({ length: Math.min(1_000, n - i) }, (_, k) => ({ body: { n: i + k } })));
  const poller = createEventSourcePoller({ db, runtimes, logger: silent, workerId: 'bench', pollIntervalMs: 50 });
  await poller.start();
  await createEventSourceMapping(db, { queueName: 'bench', functionName: 'noop_queue', batchSize: BATCH, maxBatchingWindowMs: WINDOW_MS });
  results.push(await measure(db, 'ledger queue (docs/queues.md)', 'noop_queue'));
  await poller.stop();

  const sources = createBrokerSources({ db, runtimes, logger: silent, workerId: 'bench', pollIntervalMs: 200 });
  await sources.start();
  // RabbitMQ
  await ch.assertQueue(queue, { durable: false });
  for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(JSON.stringify({ n: i })), { messageId: `m-${i}` });
  await ch.waitForConfirms();
  await createBrokerMapping(db, { actor: 'bench' }, { broker: 'rabbitmq', url: RABBITMQ_URL, queue, functionName: 'noop_rabbitmq', batchSize: BATCH, maxBatchingWindowMs: WINDOW_MS });
  results.push(await measure(db, 'RabbitMQ 3.10 (classic queue, prefetch = batch)', 'noop_rabbitmq'));
  // NATS JetStream
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => js.publish(`${stream}.${(i + k) % 4}`, Buffer.from(JSON.stringify({ n: i + k })))));
  await createBrokerMapping(db, { actor: 'bench' }, { broker: 'nats', url: NATS_URL, stream, functionName: 'noop_nats', batchSize: BATCH, maxBatchingWindowMs: WINDOW_MS });
  results.push(await measure(db, 'NATS JetStream 2.9 (durable pull consumer)', 'noop_nats'));
  await sources.stop();
  await runtimes.close();
  await handle.close();
} finally {
  await ch.deleteQueue(queue).catch(() => {});
  await jsm.streams.delete(stream).catch(() => {});
  await amqp.close().catch(() => {});
  await nc.close();
  await adminClient.query(`drop database if exists "${name}" with (force)`);
  await adminClient.end();
}

const load = loadavg()[0]?.toFixed(2);
console.log(`\n${n} messages, batchSize ${BATCH}, window ${WINDOW_MS} ms, no-op inline consumer, one worker; load average ${load}\n`);
console.log('| source | messages/s | batches | seconds (ledger clock) |\n| --- | ---: | ---: | ---: |');
for (const r of results) console.log(`| ${r.source} | ${r.messagesPerSecond.toLocaleString('en')} | ${r.batches} | ${r.seconds.toFixed(2)} |`);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const file = `${dir}brokers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ n, batchSize: BATCH, windowMs: WINDOW_MS, load, results }, null, 2));
console.log(`\nwritten to ${file}`);
