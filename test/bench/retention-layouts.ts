// The partitioned layout of ledger.events (0020) against the unpartitioned one, in the same
// run (docs/benchmarks.md, docs/retention.md). Two scratch databases on the same server,
// both migrated to the latest schema:
//   (a) partitioned: as migrated, one partition per month;
//   (b) unpartitioned: the same schema, but ledger.events made again here as an ordinary
//       table with the same columns, defaults, CHECK constraints, indexes (by name and
//       definition), triggers, grants and dependent views. No migration does this: it is a
//       fixture of this benchmark only.
// Both get the same history (--events historical events of the two past months, the same
// ids), then, alternating a, b, a, b … so the machine's drift hits both:
//   1. one invocation's timeline three ways: the app's earlier read (`invocation_id =
//      any($1::uuid[])`, unnamed, on the app's connection, whose plan_cache_mode is
//      force_generic_plan, so a generic plan is built for every call); the same text with
//      PostgreSQL's default plan_cache_mode (a custom plan per call); and the app's read as
//      it runs now (db/invocations.ts eventsOf: `invocation_id = $1` as a named prepared
//      statement, one generic plan, pruned at execution). --rounds passes of --ids
//      invocations per layout and way, median pass,
//      ratio; then EXPLAIN (ANALYZE, BUFFERS) medians (planning and execution), planned the
//      same three ways, and the plans;
//   2. --pairs drains of --jobs async no-op invocations with the real worker (one
//      `start --role worker` process, the drain scenario's inline settings), jobs/s per
//      pass and the ratio of the medians.
// Prints a markdown table and writes test/bench/results/retention-layouts.json.
//   npx tsx test/bench/retention-layouts.ts [--events 300000] [--jobs 6000] [--pairs 3] [--ids 150] [--rounds 10]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { eventsOf } from '../../db/invocations.ts';
import { fillHistory, monthStart } from './lib/history.ts';
import { acceptMany, createLedgerDatabase, lastPosition, type LedgerDatabase } from './lib/ledger.ts';
import { serverInfo } from './lib/pg.ts';
import { drainWithOurWorker, INLINE_WORKER } from './scenarios/drain.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    events: { type: 'string', default: '300000' },
    jobs: { type: 'string', default: '6000' },
    pairs: { type: 'string', default: '3' },
    ids: { type: 'string', default: '150' },
    rounds: { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const JOBS = Number(values.jobs);
const PAIRS = Number(values.pairs);
const IDS = Number(values.ids);
const ROUNDS = Number(values.rounds);
const log = (msg: string) => process.stderr.write(`[retention-layouts] ${msg}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/**
 * Makes ledger.events of a migrated database an ordinary table, in one transaction, the way
 * 0020 went the other way: dependent views dropped and made again from their definitions,
 * indexes made again from theirs (same names), the four triggers, the grants, the position
 * sequence carried on.
 */
async function unpartition(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('begin');
    await c.query(`create temporary table bench_views on commit drop as
      with recursive deps(oid) as (
        select distinct r.ev_class from pg_depend d join pg_rewrite r on r.oid = d.objid
        where d.classid = 'pg_rewrite'::regclass and d.refobjid = 'ledger.events'::regclass and r.ev_class <> 'ledger.events'::regclass
        union
        select distinct r.ev_class from deps join pg_depend d on d.refobjid = deps.oid join pg_rewrite r on r.oid = d.objid
        where d.classid = 'pg_rewrite'::regclass and r.ev_class <> deps.oid
      )
      select c.oid, format('%I.%I', n.nspname, c.relname) as name, pg_get_viewdef(c.oid) as def, c.reloptions,
             obj_description(c.oid, 'pg_class') as comment,
             (select coalesce(array_agg(format('grant %s on %I.%I to %s', a.privilege_type, n.nspname, c.relname,
                                               case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end)), '{}')
              from aclexplode(c.relacl) a where a.grantee <> c.relowner) as grants
      from (select distinct oid from deps) v join pg_class c on c.oid = v.oid join pg_namespace n on n.oid = c.relnamespace`);
    const { rows: views } = await c.query<{ name: string; def: string; reloptions: string[] | null; comment: string | null; grants: string[] }>(
      'select name, def, reloptions, comment, grants from bench_views order by oid');
    for (const v of [...views].reverse()) await c.query(`drop view if exists ${v.name} cascade`);
    // constraint-backed indexes become constraints again, the others indexes, all with their names
    const { rows: indexes } = await c.query<{ sql: string }>(`
      select coalesce(
               (select format('alter table ledger.events add constraint %I %s', k.conname, pg_get_constraintdef(k.oid))
                from pg_constraint k where k.conindid = x.indexrelid and k.conrelid = x.indrelid),
               replace(pg_get_indexdef(x.indexrelid), ' ON ONLY ledger.events ', ' ON ledger.events ')) as sql
      from pg_index x where x.indrelid = 'ledger.events'::regclass order by x.indexrelid`);
    const { rows: grants } = await c.query<{ sql: string }>(`
      select format('grant %s on ledger.events to %s', a.privilege_type, case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end) as sql
      from pg_class c, aclexplode(c.relacl) a where c.oid = 'ledger.events'::regclass and a.grantee <> c.relowner`);
    const { rows: triggers } = await c.query<{ sql: string }>(`
      select pg_get_triggerdef(oid) as sql from pg_trigger where tgrelid = 'ledger.events'::regclass and not tgisinternal and tgparentid = 0`);
    await c.query('alter table ledger.events rename to events_partitioned');
    const { rows: old } = await c.query<{ name: string }>(`
      select c.relname as name from pg_index x join pg_class c on c.oid = x.indexrelid where x.indrelid = 'ledger.events_partitioned'::regclass`);
    for (const i of old) await c.query(`alter index ledger.${i.name} rename to ${i.name}_partitioned`);
    // columns, defaults, identity and CHECK constraints (by name) of the partitioned table
    await c.query('create table ledger.events (like ledger.events_partitioned including defaults including constraints including identity including storage)');
    for (const i of indexes) await c.query(i.sql);
    for (const t of triggers) await c.query(t.sql); // captured before the rename: ON ledger.events
    for (const g of grants) await c.query(g.sql);
    await c.query(`select setval(pg_get_serial_sequence('ledger.events', 'position'), s.last_value, s.is_called) from ledger.events_position_seq s`);
    await c.query('drop table ledger.events_partitioned');
    for (const v of views) {
      await c.query(`create view ${v.name}${v.reloptions ? ` with (${v.reloptions.join(', ')})` : ''} as ${v.def}`);
      if (v.comment !== null) await c.query(`comment on view ${v.name} is ${pg.escapeLiteral(v.comment)}`);
      for (const g of v.grants) await c.query(g);
    }
    await c.query('commit');
  } catch (e) {
    await c.query('rollback').catch(() => {});
    throw e;
  } finally {
    await c.end();
  }
}

interface Layout {
  label: 'partitioned' | 'unpartitioned';
  db: LedgerDatabase;
  owner: pg.Client;
  /** ledger_app, PostgreSQL's default plan_cache_mode (auto) */
  plain: pg.Client;
}

/** The app's read of one invocation's events before eventsOf sent one id as `= $1` (db/invocations.ts). */
const TIMELINE = 'select position, invocation_id, seq, type, attempt, data, occurred_at from ledger.events where invocation_id = any($1::uuid[]) order by invocation_id, seq';

/** eventsOf's read of one id, its very text: a generic plan of it prunes partitions at execution. */
const TIMELINE_EQ = 'select position, invocation_id, seq, type, attempt, data, occurred_at from ledger.events where invocation_id = $1 order by seq';

type Mode = 'any' | 'custom' | 'eq';
const MODES: Record<Mode, string> = {
  any: "the app's earlier read, `= any($1::uuid[])`, unnamed on the app's connection, which has plan_cache_mode=force_generic_plan: a generic plan per call",
  custom: 'the same text unnamed with the default plan_cache_mode (a custom plan per call)',
  eq: "the app's read as it runs (eventsOf: one id as `invocation_id = $1`, a named prepared statement on the app's connection, one generic plan pruned at execution)",
};

/** Mean ms per invocation of one pass over `ids`. */
async function timelinePass(l: Layout, mode: Mode, ids: string[]): Promise<number> {
  const t0 = performance.now();
  if (mode === 'any') for (const id of ids) await l.db.handle.pool.query(TIMELINE, [[id]]);
  else if (mode === 'custom') for (const id of ids) await l.plain.query(TIMELINE, [[id]]);
  else for (const id of ids) await eventsOf(l.db.handle.db, [id]);
  return (performance.now() - t0) / ids.length;
}

interface ExplainReading {
  planningMs: number;
  executionMs: number;
  buffers: number;
  plan: string;
}

interface PlanNode {
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) medians over `ids`, as ledger_app, planned as each mode plans:
 * any, a generic plan made afresh for each id; custom, a custom plan for each id; eq, one
 * generic plan reused.
 */
async function explain(l: Layout, mode: Mode, ids: string[]): Promise<ExplainReading> {
  const c = new pg.Client({ connectionString: l.db.url, options: `-c role=ledger_app -c plan_cache_mode=${mode === 'custom' ? 'force_custom_plan' : 'force_generic_plan'}` });
  await c.connect();
  try {
    const prepare = mode === 'eq' ? `deallocate all; prepare q(uuid) as ${TIMELINE_EQ}` : `deallocate all; prepare q(uuid[]) as ${TIMELINE}`;
    const arg = (id: string) => (mode === 'eq' ? `'${id}'` : `'{${id}}'`);
    const planning: number[] = [];
    const execution: number[] = [];
    const buffers: number[] = [];
    let plan = '';
    for (const [i, id] of ids.entries()) {
      if (i === 0 || mode !== 'eq') await c.query(prepare);
      if (i === 0) {
        // the first execution warms this connection's caches; the plan shown is the second's
        await c.query(`explain (analyze) execute q(${arg(id)})`);
        if (mode !== 'eq') await c.query(prepare);
        const { rows } = await c.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off, timing off) execute q(${arg(id)})`);
        plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        if (mode !== 'eq') await c.query(prepare);
      }
      const { rows } = await c.query<{ 'QUERY PLAN': [{ 'Planning Time': number; 'Execution Time': number; Plan: PlanNode }] }>(
        `explain (analyze, buffers, format json) execute q(${arg(id)})`);
      const p = rows[0]!['QUERY PLAN'][0];
      planning.push(p['Planning Time']);
      execution.push(p['Execution Time']);
      buffers.push(p.Plan['Shared Hit Blocks'] + p.Plan['Shared Read Blocks']);
    }
    return { planningMs: median(planning), executionMs: median(execution), buffers: median(buffers), plan };
  } finally {
    await c.end();
  }
}

const rows: { what: string; value: string }[] = [];
const json: Record<string, unknown> = { events: EVENTS, jobs: JOBS, pairs: PAIRS, ids: IDS, rounds: ROUNDS, worker: INLINE_WORKER, loadavgStart: os.loadavg() };
const put = (what: string, value: string, key: string, v: unknown) => {
  rows.push({ what, value });
  json[key] = v;
  log(`${what}: ${value}`);
};

const layouts: Layout[] = [];
try {
  for (const label of ['partitioned', 'unpartitioned'] as const) {
    const db = await createLedgerDatabase(`layout_${label}`);
    const owner = new pg.Client({ connectionString: db.url });
    await owner.connect();
    layouts.push({ label, db, owner, plain: null as unknown as pg.Client });
    if (label === 'unpartitioned') await unpartition(db.url);
    else await owner.query('select ledger.premake_event_partitions(0, $1)', [monthStart(-2)]);
    const { rows: kind } = await owner.query<{ k: string }>(`select relkind::text as k from pg_class where oid = 'ledger.events'::regclass`);
    log(`${label}: ledger.events relkind ${kind[0]?.k}; writing ${EVENTS} historical events…`);
    const t0 = performance.now();
    await fillHistory(owner, { total: Math.ceil(EVENTS / 3) });
    log(`${label}: history written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const [a, b] = layouts as [Layout, Layout];
  for (const l of layouts) {
    l.plain = new pg.Client({ connectionString: l.db.url, options: '-c role=ledger_app' });
    await l.plain.connect();
  }
  // the same ids in both: the history is the same, invocation n has the same id
  const { rows: sample } = await a.owner.query<{ id: string }>(`select id::text from ledger.invocations order by md5(id::text) limit ${IDS}`);
  const ids = sample.map((r) => r.id);
  const { rows: inB } = await b.owner.query<{ n: number }>('select count(*)::int as n from ledger.invocations where id = any($1::uuid[])', [ids]);
  if (inB[0]?.n !== ids.length) throw new Error('the two histories differ');

  // 1. timelines, alternating
  for (const mode of ['any', 'custom', 'eq'] as const) {
    const passes: Record<string, number[]> = { partitioned: [], unpartitioned: [] };
    for (let round = 0; round <= ROUNDS; round++) {
      for (const l of round % 2 ? [b, a] : [a, b]) {
        const ms = await timelinePass(l, mode, ids);
        if (round > 0) passes[l.label]!.push(ms); // round 0 warms caches and plans
      }
    }
    const [pa, pb] = [median(passes.partitioned!), median(passes.unpartitioned!)];
    const what = MODES[mode];
    put(`timeline, ${what}: median of ${ROUNDS} passes of ${IDS} invocations, round trip`, `partitioned ${pa.toFixed(3)} ms, unpartitioned ${pb.toFixed(3)} ms, ×${(pa / pb).toFixed(2)}`, `timeline_${mode}`, { partitioned: pa, unpartitioned: pb, passes });
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
    put(`timeline, ${what}: range of the passes`, `partitioned ${spread(passes.partitioned!)} ms, unpartitioned ${spread(passes.unpartitioned!)} ms`, `timeline_${mode}_range`, null);
    const [ea, eb] = [await explain(a, mode, ids), await explain(b, mode, ids)];
    put(
      `timeline, ${what}: EXPLAIN (ANALYZE, BUFFERS) medians over the ${IDS}`,
      `partitioned planning ${ea.planningMs.toFixed(3)} + execution ${ea.executionMs.toFixed(3)} ms, ${ea.buffers} buffers; unpartitioned ${eb.planningMs.toFixed(3)} + ${eb.executionMs.toFixed(3)} ms, ${eb.buffers} buffers`,
      `explain_${mode}`,
      { partitioned: ea, unpartitioned: eb },
    );
  }

  // 2. drains, alternating
  const drains: Record<string, number[]> = { partitioned: [], unpartitioned: [] };
  for (let pair = 0; pair < PAIRS; pair++) {
    for (const l of pair % 2 ? [b, a] : [a, b]) {
      const since = await lastPosition(l.db);
      await acceptMany(l.db, l.db.functions.inline, JOBS);
      const r = await drainWithOurWorker(l.db, JOBS, INLINE_WORKER, since);
      drains[l.label]!.push(JOBS / r.seconds);
      log(`drain ${pair + 1}/${PAIRS} ${l.label}: ${(JOBS / r.seconds).toFixed(0)} jobs/s (load ${os.loadavg()[0]?.toFixed(1)})`);
    }
  }
  if (PAIRS > 0) {
    const [da, db] = [median(drains.partitioned!), median(drains.unpartitioned!)];
    put(`drain of ${JOBS} async no-op invocations, per pass (order a b, b a, …)`, `partitioned ${drains.partitioned!.map((x) => x.toFixed(0)).join(', ')} jobs/s; unpartitioned ${drains.unpartitioned!.map((x) => x.toFixed(0)).join(', ')} jobs/s`, 'drains', drains);
    put('drain, median pass', `partitioned ${da.toFixed(0)} jobs/s, unpartitioned ${db.toFixed(0)} jobs/s, ×${(da / db).toFixed(2)}`, 'drainRatio', da / db);
  }

  const info = await serverInfo();
  json.loadavgEnd = os.loadavg();
  process.stdout.write(`\n## Partitioned against unpartitioned, ${EVENTS} historical events (${info.version.split(' on ')[0]}, ${os.cpus().length} cores, load ${os.loadavg()[0]?.toFixed(1)})\n\n| what | result |\n|---|---|\n`);
  for (const r of rows) process.stdout.write(`| ${r.what} | ${r.value} |\n`);
  for (const mode of ['any', 'custom', 'eq'] as const) {
    const e = json[`explain_${mode}`] as { partitioned: ExplainReading; unpartitioned: ExplainReading };
    process.stdout.write(`\n${mode} plan, partitioned:\n\n${e.partitioned.plan}\n\n${mode} plan, unpartitioned:\n\n${e.unpartitioned.plan}\n`);
  }
  mkdirSync('test/bench/results', { recursive: true });
  writeFileSync('test/bench/results/retention-layouts.json', `${JSON.stringify({ at: new Date().toISOString(), server: info, ...json }, null, 2)}\n`);
} finally {
  for (const l of layouts) {
    await l.plain?.end().catch(() => {});
    await l.owner.end().catch(() => {});
    if (values.keep) await l.db.handle.close();
    else await l.db.close();
  }
}
