// The audit cookbook at ledger scale: fills a scratch database with 10M events (30 days
// of mixed work), then times one invocation's timeline over random invocations and
// every query of docs/audit.md, as ledger_auditor. Prints a markdown table and writes
// test/bench/results/audit-timeline.json.
//   npx tsx test/bench/audit-timeline.ts [--events 10000000] [--timeline-samples 200] [--runs 15]
// Uses DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres; the database it
// creates is dropped at the end.
//
// The fill is a bench fixture, not the app path: INSERT … SELECT from generate_series
// as the owner, complete event streams per statement (the seq trigger checks every
// statement), streams shaped exactly like the writer's (docs/event-model.md), rows in time
// order as a live ledger has them, and a projection row per invocation.
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import os, { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../../db/migrate.ts';
import { readCookbook } from '../audit/cookbook.ts';
import { adminUrl, createScratchDatabase, serverInfo } from './lib/pg.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    events: { type: 'string', default: '10000000' },
    'timeline-samples': { type: 'string', default: '200' },
    runs: { type: 'string', default: '15' },
    keep: { type: 'boolean', default: false },
  },
});
const TARGET_EVENTS = Number(values.events);
const TIMELINE_SAMPLES = Number(values['timeline-samples']);
const RUNS = Number(values.runs);
const DAYS = 30;
const CHUNK_INVOCATIONS = 250_000;

const log = (msg: string) => process.stderr.write(`[audit-bench] ${msg}\n`);

// Stream shapes: [event type, attempt, offset from accept in ms, detail]. Weights sum to 1000.
type Step = [type: string, attempt: number | null, offsetMs: number, detail?: string];
const PATTERNS: { name: string; weight: number; sync: boolean; status: string; steps: Step[] }[] = [
  { name: 'async ok', weight: 505, sync: false, status: 'succeeded', steps: [['accepted', null, 0], ['started', 1, 40], ['succeeded', 1, 340]] },
  { name: 'sync ok', weight: 250, sync: true, status: 'succeeded', steps: [['accepted', null, 0], ['started', 1, 0], ['succeeded', 1, 220]] },
  { name: 'sync failed', weight: 50, sync: true, status: 'failed', steps: [['accepted', null, 0], ['started', 1, 0], ['failed', 1, 400, 'CardDeclined']] },
  {
    name: 'retried then ok', weight: 100, sync: false, status: 'succeeded',
    steps: [['accepted', null, 0], ['started', 1, 40], ['failed', 1, 1_240, 'S3SlowDown'], ['retried', 2, 1_240], ['started', 2, 61_300], ['succeeded', 2, 61_600]],
  },
  {
    name: 'worker lost then ok', weight: 30, sync: false, status: 'succeeded',
    steps: [['accepted', null, 0], ['started', 1, 40], ['failed', 1, 330_040, 'WorkerLost'], ['retried', 2, 330_040], ['started', 2, 390_100], ['succeeded', 2, 390_400]],
  },
  {
    name: 'dead letter', weight: 30, sync: false, status: 'dead_lettered',
    steps: [
      ['accepted', null, 0], ['started', 1, 40], ['failed', 1, 10_040, 'SmtpTimeout'], ['retried', 2, 10_040], ['started', 2, 70_100],
      ['failed', 2, 80_100, 'SmtpTimeout'], ['retried', 3, 80_100], ['started', 3, 200_200], ['failed', 3, 210_200, 'SmtpTimeout'],
      ['dead_lettered', null, 210_200, 'RetriesExhausted'],
    ],
  },
  {
    name: 'redriven then ok', weight: 10, sync: false, status: 'succeeded',
    steps: [
      ['accepted', null, 0], ['started', 1, 40], ['failed', 1, 10_040, 'SmtpTimeout'], ['retried', 2, 10_040], ['started', 2, 70_100],
      ['failed', 2, 80_100, 'SmtpTimeout'], ['retried', 3, 80_100], ['started', 3, 200_200], ['failed', 3, 210_200, 'SmtpTimeout'],
      ['dead_lettered', null, 210_200, 'RetriesExhausted'], ['redriven', null, 3_600_000], ['started', 4, 3_600_050], ['succeeded', 4, 3_600_200],
    ],
  },
  {
    name: 'event age exceeded', weight: 20, sync: false, status: 'dead_lettered',
    steps: [['accepted', null, 0], ['started', 1, 40], ['failed', 1, 900_040, 'TimeoutError'], ['dead_lettered', null, 900_040, 'EventAgeExceeded']],
  },
  { name: 'cancelled', weight: 5, sync: false, status: 'cancelled', steps: [['accepted', null, 0], ['cancelled', null, 5_000]] },
];
const FUNCTIONS = ['resize-image', 'send-email', 'charge-card', 'nightly-report', 'thumbnail', 'webhook-relay', 'ingest-logs', 'notify-slack'];

const meanEvents = PATTERNS.reduce((s, p) => s + p.weight * p.steps.length, 0) / 1000;
const INVOCATIONS = Math.round(TARGET_EVENTS / meanEvents);

async function fill(c: pg.Client): Promise<{ events: number; invocations: number; seconds: number }> {
  const t0 = performance.now();
  // pattern p covers weights [lo, hi) of 1000; its projection is the fold of its steps
  let lo = 0;
  const patternRows = PATTERNS.map((p, i) => {
    const last = p.steps[p.steps.length - 1] as Step;
    const redrive = p.steps.findLastIndex(([type]) => type === 'redriven');
    const failures = p.steps.filter(([type], j) => type === 'failed' && j > redrive);
    const lastFailure = p.steps.findLast(([type]) => type === 'failed');
    const row = {
      pattern: i, lo, hi: lo + p.weight, sync: p.sync, status: p.status,
      attempts: Math.max(0, ...p.steps.filter(([type]) => type === 'started').map(([, a]) => a as number)),
      failures: failures.length, last_seq: p.steps.length, last_type: last[0],
      error_type: p.status === 'succeeded' ? null : (lastFailure?.[3] ?? null),
      reason: p.status === 'dead_lettered' ? (last[3] ?? null) : null,
      started_ms: p.steps.find(([type]) => type === 'started')?.[2] ?? null,
      last_ms: last[2],
      terminal: ['succeeded', 'failed', 'dead_lettered', 'cancelled'].includes(p.status),
    };
    lo += p.weight;
    return row;
  });
  const stepRows = PATTERNS.flatMap((p, i) =>
    p.steps.map(([type, attempt, offset, detail], j) => ({ pattern: i, seq: j + 1, type, attempt, offset, detail: detail ?? null })),
  );
  await c.query(`create temp table bench_patterns (pattern int, lo int, hi int, sync boolean, status text, attempts int, failures int,
    last_seq int, last_type text, error_type text, reason text, started_ms int, last_ms int, terminal boolean)`);
  await c.query(`insert into bench_patterns select * from jsonb_populate_recordset(null::bench_patterns, $1::jsonb)`, [JSON.stringify(patternRows)]);
  await c.query(`create temp table bench_steps (pattern int, seq int, type text, attempt int, "offset" int, detail text)`);
  await c.query(`insert into bench_steps select * from jsonb_populate_recordset(null::bench_steps, $1::jsonb)`, [JSON.stringify(stepRows)]);
  // one row per invocation: pattern, function, accept time spread evenly over DAYS
  await c.query(`select setseed(0.42)`);
  await c.query(
    `create temp table bench_inv as
     select k, gen_random_uuid() as id, p.pattern, p.sync,
            (array[${FUNCTIONS.map((f) => `'${f}'`).join(',')}])[1 + (k * 7 + (k / 13)) % ${FUNCTIONS.length}] as fn,
            now() - make_interval(days => ${DAYS}) + (k::float8 / $1) * make_interval(days => ${DAYS}) as accepted_at
     from generate_series(0, $1::int - 1) k
     join bench_patterns p on (hashint8(k)::int8 + 2147483648) % 1000 >= p.lo and (hashint8(k)::int8 + 2147483648) % 1000 < p.hi`,
    [INVOCATIONS],
  );
  await c.query('create index on bench_inv (k)');
  await c.query('analyze bench_inv');
  const { rows: cnt } = await c.query<{ n: number }>('select count(*)::int as n from bench_inv');
  const invocations = cnt[0]?.n ?? 0;
  for (let from = 0; from < INVOCATIONS; from += CHUNK_INVOCATIONS) {
    await c.query(
      `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
       select i.id, s.seq, s.type, s.attempt,
         case s.type
           when 'accepted' then jsonb_build_object('functionName', i.fn, 'functionVersion', 1 + (i.k % 3),
             'invocationType', case when i.sync then 'sync' else 'async' end, 'payload', jsonb_build_object('n', i.k),
             'idempotencyKey', case when i.sync and i.k % 5 <> 0 then 'order-' || i.k end)
           when 'started' then jsonb_build_object('attempt', s.attempt,
             'workerId', case when i.sync then 'api-' || (i.k % 3) else 'worker-' || ((i.k + s.attempt) % 12) end)
           when 'succeeded' then jsonb_build_object('attempt', s.attempt, 'result', jsonb_build_object('ok', true),
             'durationMs', round((20 + 480 * random() ^ 3)::numeric, 1))
           when 'failed' then jsonb_build_object('attempt', s.attempt,
             'error', jsonb_build_object('errorType', s.detail, 'errorMessage',
               case when s.detail = 'WorkerLost'
                 then 'Worker worker-' || ((i.k + s.attempt) % 12) || ' lost attempt ' || s.attempt || ': its lease expired'
                 else s.detail || ' in attempt ' || s.attempt end, 'trace', '[]'::jsonb),
             'willRetry', exists (select 1 from bench_steps r where r.pattern = i.pattern and r.seq = s.seq + 1 and r.type = 'retried'),
             'durationMs', round((5 + 9995 * random())::numeric, 1))
           when 'retried' then jsonb_build_object('attempt', s.attempt,
             'runAt', to_char((i.accepted_at + make_interval(secs => s."offset" / 1000.0 + 60)) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
             'delayMs', 60000)
           when 'dead_lettered' then jsonb_build_object('reason', s.detail)
           when 'cancelled' then jsonb_build_object('reason', 'superseded')
           when 'redriven' then jsonb_build_object('by', 'ops@example.com')
         end,
         i.accepted_at + make_interval(secs => s."offset" / 1000.0)
       from bench_inv i join bench_steps s on s.pattern = i.pattern
       where i.k >= $1 and i.k < $2
       order by i.accepted_at + make_interval(secs => s."offset" / 1000.0), i.k, s.seq`,
      [from, from + CHUNK_INVOCATIONS],
    );
    log(`events for invocations ${from}…${Math.min(INVOCATIONS, from + CHUNK_INVOCATIONS)} of ${INVOCATIONS} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  // the projection: what the writer's fold leaves for each stream shape (ledger.invocations)
  await c.query(`
    insert into ledger.invocations (id, function_name, function_version, invocation_type, status, attempts,
      failures_since_redrive, last_seq, last_event_type, idempotency_key, error_type, dead_letter_reason,
      accepted_at, started_at, finished_at, updated_at)
    select i.id, i.fn, 1 + (i.k % 3), case when p.sync then 'sync' else 'async' end, p.status, p.attempts,
      p.failures, p.last_seq, p.last_type, case when p.sync and i.k % 5 <> 0 then 'order-' || i.k end,
      p.error_type, p.reason, i.accepted_at,
      i.accepted_at + make_interval(secs => p.started_ms / 1000.0),
      case when p.terminal then i.accepted_at + make_interval(secs => p.last_ms / 1000.0) end,
      i.accepted_at + make_interval(secs => p.last_ms / 1000.0)
    from bench_inv i join bench_patterns p using (pattern)`);
  log(`projection written (${((performance.now() - t0) / 1000).toFixed(0)} s); vacuum analyze…`);
  await c.query('vacuum (analyze) ledger.events');
  await c.query('vacuum (analyze) ledger.invocations');
  const { rows } = await c.query<{ n: string }>('select count(*) as n from ledger.events');
  return { events: Number(rows[0]?.n), invocations, seconds: (performance.now() - t0) / 1000 };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;

interface Timing {
  query: string;
  runs: number;
  p50Ms: number;
  p95Ms: number;
  rows: number;
  indexes: string[];
}

function indexesOf(plan: unknown): string[] {
  const found = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      const n = node as Record<string, unknown>;
      if (typeof n['Index Name'] === 'string') found.add(n['Index Name']);
      for (const v of Object.values(n)) if (typeof v === 'object') walk(v);
    }
  };
  walk(plan);
  return [...found].sort();
}

async function time(c: pg.Client, query: string, sql: string, params: unknown[][]): Promise<Timing> {
  // warm up once, so the first run does not pay for planning caches and cold pages alone
  await c.query(sql, params[0]);
  const ms: number[] = [];
  let rows = 0;
  for (const p of params) {
    const t0 = performance.now();
    const r = await c.query(sql, p);
    ms.push(performance.now() - t0);
    rows = r.rowCount ?? r.rows.length;
  }
  ms.sort((a, b) => a - b);
  const { rows: plan } = await c.query(`explain (format json) ${sql}`, params[0]);
  return { query, runs: ms.length, p50Ms: percentile(ms, 0.5), p95Ms: percentile(ms, 0.95), rows, indexes: indexesOf(plan) };
}

const scratch = await createScratchDatabase('audit');
const client = new pg.Client({ connectionString: scratch.url });
client.on('error', () => {});
try {
  await migrate(scratch.url);
  await client.connect();
  log(`filling ${scratch.name}: ~${TARGET_EVENTS} events, ${INVOCATIONS} invocations over ${DAYS} days`);
  const filled = await fill(client);
  log(`filled ${filled.events} events, ${filled.invocations} invocations in ${filled.seconds.toFixed(0)} s`);
  const { rows: sizes } = await client.query<{ events: string; invocations: string; indexes: string }>(`
    select pg_size_pretty(pg_table_size('ledger.events')) as events,
           pg_size_pretty(pg_table_size('ledger.invocations')) as invocations,
           pg_size_pretty(pg_indexes_size('ledger.events') + pg_indexes_size('ledger.invocations')) as indexes`);
  const { rows: sample } = await client.query<{ id: string }>(
    `select id from ledger.invocations tablesample system (1) repeatable (7) order by id limit $1`, [TIMELINE_SAMPLES]);

  const loadBefore = loadavg();
  await client.query('set role ledger_auditor');
  const timings: Timing[] = [];
  timings.push(
    await time(client, 'timeline of one invocation (random ids)', `select seq, type, attempt, occurred_at, worker_id, error_type, duration_ms, data
       from audit.invocation_events where invocation_id = $1 order by seq`, sample.map((r) => [r.id])),
  );
  timings.push(
    await time(client, 'one invocation (audit.invocations, random ids)', `select * from audit.invocations where id = $1`, sample.map((r) => [r.id])),
  );
  for (const q of readCookbook()) {
    timings.push(await time(client, q.title, q.sql, Array.from({ length: RUNS }, () => [])));
    log(`${q.title}: p50 ${timings[timings.length - 1]?.p50Ms.toFixed(1)} ms`);
  }

  const server = await serverInfo();
  const table = [
    `load average while measuring: ${loadBefore.map((l) => l.toFixed(1)).join(' ')} → ${loadavg().map((l) => l.toFixed(1)).join(' ')} (${os.cpus().length} cores)`,
    '',
    `audit cookbook on ${filled.events.toLocaleString('en')} events / ${filled.invocations.toLocaleString('en')} invocations (${DAYS} days; events ${sizes[0]?.events}, invocations ${sizes[0]?.invocations}, indexes ${sizes[0]?.indexes}), as ledger_auditor`,
    '',
    '| query | runs | p50 ms | p95 ms | rows | indexes used |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    ...timings.map((t) => `| ${t.query} | ${t.runs} | ${t.p50Ms.toFixed(2)} | ${t.p95Ms.toFixed(2)} | ${t.rows} | ${t.indexes.join(', ') || '—'} |`),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/audit-timeline.json', import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), server, admin: adminUrl().replace(/\/\/[^@]*@/, '//'), fill: { ...filled, days: DAYS, sizes: sizes[0] }, loadavg: { before: loadBefore, after: loadavg() }, timings }, null, 2)}\n`,
  );
} finally {
  await client.end().catch(() => {});
  if (values.keep) log(`kept ${scratch.url}`);
  else await scratch.drop();
}
