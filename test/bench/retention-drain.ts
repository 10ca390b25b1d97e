// The async drain and one invocation's timeline against a ledger's history (docs/retention.md,
// docs/benchmarks.md), in one run on one scratch database:
//   1. drain J no-op async invocations (one worker process, inline) on an empty ledger;
//   2. write a history of --small events (past two months), then time the timeline query
//      and EXPLAIN (ANALYZE, BUFFERS) it;
//   3. grow the history to --events historical events, the timeline again (the ratio is the point), then drain
//      J with the history's partitions attached;
//   4. detach the history's partitions (as `archive drop` does before it drops them), drain
//      J again; attach them again and drain J once more (a bracket against drift of the
//      machine's load).
// The same drain and timeline on the unpartitioned layout, side by side in one run:
// test/bench/retention-layouts.ts.
// Prints a markdown table and writes test/bench/results/retention-drain.json.
//   npx tsx test/bench/retention-drain.ts [--events 1000000] [--small 100000] [--jobs 20000] [--keep]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { fillHistory, monthStart, partitionOf } from './lib/history.ts';
import { acceptMany, createLedgerDatabase, lastPosition } from './lib/ledger.ts';
import { serverInfo } from './lib/pg.ts';
import { drainWithOurWorker, INLINE_WORKER } from './scenarios/drain.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    events: { type: 'string', default: '1000000' },
    small: { type: 'string', default: '100000' },
    jobs: { type: 'string', default: '20000' },
    keep: { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const SMALL = Number(values.small);
const JOBS = Number(values.jobs);
const TOTAL = Math.ceil(EVENTS / 3); // invocations of the whole history
const SAMPLES = 500;
const log = (msg: string) => process.stderr.write(`[retention-drain] ${msg}\n`);
const HISTORY = [partitionOf(monthStart(-2)), partitionOf(monthStart(-1))];

interface TimelineReading {
  events: number;
  meanMs: number;
  /** medians over SAMPLES EXPLAIN (ANALYZE, BUFFERS) of the generic plan */
  explainMs: number;
  buffers: number;
  partitionsScanned: number;
  plan: string;
}

/** The timeline as the app reads it (ledger_app, a prepared statement, generic plan) for ids sampled from the history. */
async function timeline(url: string, owner: pg.Client): Promise<TimelineReading> {
  const { rows: count } = await owner.query<{ n: string }>('select count(*)::text as n from ledger.events');
  const { rows: sample } = await owner.query<{ id: string }>(
    `select id::text from ledger.invocations where accepted_at < $1 order by md5(id::text) limit ${SAMPLES}`, [monthStart(0)]);
  const ids = sample.map((r) => r.id);
  const c = new pg.Client({ connectionString: url, options: '-c role=ledger_app -c plan_cache_mode=force_generic_plan' });
  await c.connect();
  try {
    const text = 'select position, seq, type, attempt, data, occurred_at from ledger.events where invocation_id = $1 order by seq';
    await c.query(`prepare timeline(uuid) as ${text}`);
    const passes: number[] = [];
    for (let round = 0; round < 4; round++) {
      const t0 = performance.now();
      for (const id of ids) await c.query({ name: 'timeline_app', text, values: [id] });
      if (round > 0) passes.push((performance.now() - t0) / ids.length); // round 0 warms the caches
    }
    const ms: number[] = [];
    const buffers: number[] = [];
    const scanned: number[] = [];
    let plan = '';
    for (const id of ids) {
      const { rows } = await c.query<{ 'QUERY PLAN': [{ 'Execution Time': number; Plan: PlanNode }] }>(
        `explain (analyze, buffers, format json) execute timeline('${id}')`);
      const p = rows[0]!['QUERY PLAN'][0];
      ms.push(p['Execution Time']);
      buffers.push(p.Plan['Shared Hit Blocks'] + p.Plan['Shared Read Blocks']);
      scanned.push(countScans(p.Plan));
    }
    const { rows: text1 } = await c.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off, timing off, summary off) execute timeline('${ids[0]}')`);
    plan = text1.map((r) => r['QUERY PLAN']).join('\n');
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    return { events: Number(count[0]?.n), meanMs: median(passes), explainMs: median(ms), buffers: median(buffers), partitionsScanned: median(scanned), plan };
  } finally {
    await c.end();
  }
}

interface PlanNode {
  'Node Type': string;
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
  Plans?: PlanNode[];
}
const countScans = (n: PlanNode): number => (/Scan$/.test(n['Node Type']) ? 1 : 0) + (n.Plans ?? []).reduce((s, p) => s + countScans(p), 0);

const db = await createLedgerDatabase('retention_drain');
const owner = new pg.Client({ connectionString: db.url });
await owner.connect();
const rows: { what: string; value: string }[] = [];
const json: Record<string, unknown> = { events: EVENTS, small: SMALL, jobs: JOBS, worker: INLINE_WORKER };
const put = (what: string, value: string, key: string, v: unknown) => {
  rows.push({ what, value });
  json[key] = v;
  log(`${what}: ${value}`);
};
const drain = async (label: string, key: string) => {
  const since = await lastPosition(db);
  await acceptMany(db, db.functions.inline, JOBS);
  const r = await drainWithOurWorker(db, JOBS, INLINE_WORKER, since);
  const perS = JOBS / r.seconds;
  put(`drain of ${JOBS} async no-op invocations, ${label}`, `${perS.toFixed(0)} jobs/s`, key, perS);
  return perS;
};
try {
  await owner.query('select ledger.premake_event_partitions(0, $1)', [monthStart(-2)]);
  const empty = await drain('empty ledger', 'drainEmptyPerS');

  // the small history tops the ledger up to --small events, the drain's included
  const { rows: have } = await owner.query<{ n: string }>('select count(*)::text as n from ledger.events');
  const smallInvocations = Math.max(1, Math.ceil((SMALL - Number(have[0]?.n)) / 3));
  log(`history: ${SMALL} events…`);
  await fillHistory(owner, { total: TOTAL, to: smallInvocations });
  const small = await timeline(db.url, owner);
  log(`history: growing by ${EVENTS} events…`);
  const t0 = performance.now();
  await fillHistory(owner, { total: TOTAL, from: smallInvocations });
  json.fillMs = performance.now() - t0;
  const large = await timeline(db.url, owner);
  for (const [t, label] of [[small, 'small'], [large, 'large']] as const) {
    put(
      `timeline at ${t.events} events in the ledger (app: prepared, generic plan)`,
      `${t.meanMs.toFixed(3)} ms mean; EXPLAIN ANALYZE median ${t.explainMs.toFixed(3)} ms, ${t.buffers} buffers, ${t.partitionsScanned} partition scanned`,
      `timeline_${label}`,
      t,
    );
  }
  put('timeline ratio, large / small history', `×${(large.meanMs / small.meanMs).toFixed(2)} time, ×${(large.buffers / small.buffers).toFixed(2)} buffers`, 'timelineRatio', large.meanMs / small.meanMs);
  json.planLarge = large.plan;

  const attached = await drain(`${EVENTS} historical events in attached partitions (${large.events} events in the ledger)`, 'drainAttachedPerS');
  const { rows: bounds } = await owner.query<{ partition_name: string; range_from: string; range_to: string }>(
    'select partition_name, range_from::text, range_to::text from ledger.event_partition_log where partition_name = any($1)', [HISTORY]);
  for (const p of HISTORY) await owner.query(`alter table ledger.events detach partition ledger.${p}`);
  const detached = await drain('the same history detached (events of the drain only in the parent)', 'drainDetachedPerS');
  for (const b of bounds) await owner.query(`alter table ledger.events attach partition ledger.${b.partition_name} for values from ('${b.range_from}') to ('${b.range_to}')`);
  const again = await drain('attached again (bracket)', 'drainReattachedPerS');
  put('drain ratios', `attached/empty ×${(attached / empty).toFixed(2)}, detached/empty ×${(detached / empty).toFixed(2)}, re-attached/empty ×${(again / empty).toFixed(2)}`, 'drainRatios', {
    attached: attached / empty,
    detached: detached / empty,
    reattached: again / empty,
  });

  const info = await serverInfo();
  const load = os.loadavg()[0]?.toFixed(1);
  process.stdout.write(`\n## Drain and timeline against a history of ${EVENTS} events (${info.version.split(' on ')[0]}, ${os.cpus().length} cores, load ${load})\n\n| what | result |\n|---|---|\n`);
  for (const r of rows) process.stdout.write(`| ${r.what} | ${r.value} |\n`);
  process.stdout.write(`\nPlan at ${large.events} events:\n\n${large.plan}\n`);
  mkdirSync('test/bench/results', { recursive: true });
  writeFileSync('test/bench/results/retention-drain.json', `${JSON.stringify({ at: new Date().toISOString(), server: info, loadavg: os.loadavg(), ...json }, null, 2)}\n`);
} finally {
  await owner.end();
  if (values.keep) await db.handle.close();
  else await db.close();
}
