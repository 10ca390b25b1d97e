// Migration 0020 on a ledger of a million events, with `verify` before and after
// (docs/retention.md#measured): fills a scratch database migrated up to just before 0020
// with N events (two past months, three events per invocation; projections rebuilt from them),
// runs verify on the unpartitioned ledger, migrates to the newest migration, runs verify
// again and compares every event's columns before and after. Exits 1 unless both verifies
// are clean and the events are the same.
//   npx tsx test/bench/migration-verify.ts [--events 1000000] [--keep]
// Uses DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres; the database it
// creates is dropped at the end (unless --keep).
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { fillHistory } from './lib/history.ts';
import { createScratchDatabase } from './lib/pg.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { events: { type: 'string', default: '1000000' }, keep: { type: 'boolean', default: false } },
});
const EVENTS = Number(values.events);
const log = (msg: string) => process.stderr.write(`[migration-verify] ${msg}\n`);
const seconds = (t0: number) => ((performance.now() - t0) / 1000).toFixed(1);

/** Every column of every event, in position order, as one digest (and the count). */
const digest = async (c: pg.Client) =>
  (
    await c.query<{ n: string; md5: string }>(
      `select count(*)::text as n, md5(string_agg(concat_ws('|', position, tx_id, invocation_id, seq, type, attempt, data::text,
              to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')), E'\\n' order by position)) as md5
       from ledger.events`,
    )
  ).rows[0]!;

async function verify(url: string, label: string): Promise<number> {
  const h = openDatabase(url, { max: 2 });
  try {
    const t0 = performance.now();
    const problems = await verifyLedger(h.db);
    log(`verify ${label}: ${problems.length} problem(s) in ${seconds(t0)} s`);
    for (const p of problems.slice(0, 10)) log(`  ${p.invocationId}: ${p.problem}`);
    return problems.length;
  } finally {
    await h.close();
  }
}

const db = await createScratchDatabase('migration_verify');
const owner = new pg.Client({ connectionString: db.url });
await owner.connect();
let failed = true;
try {
  await migrate(db.url, () => {}, { before: 20 });
  let t0 = performance.now();
  await fillHistory(owner, { total: Math.ceil(EVENTS / 3) });
  const relkind = (await owner.query<{ k: string }>(`select relkind::text as k from pg_class where oid = 'ledger.events'::regclass`)).rows[0]!.k;
  const before = await digest(owner);
  log(`filled ${before.n} events in ${seconds(t0)} s (ledger.events relkind ${relkind}: r = a plain table)`);
  // the fixture's projections are approximate: made exact from the events, as the engine keeps them
  t0 = performance.now();
  const h = openDatabase(db.url, { max: 2 });
  try {
    await rebuildProjections(h.db);
  } finally {
    await h.close();
  }
  log(`projections rebuilt from the events in ${seconds(t0)} s`);
  const problemsBefore = await verify(db.url, 'before 0020');
  t0 = performance.now();
  await migrate(db.url);
  log(`0020 and every later migration in ${seconds(t0)} s`);
  const relkindAfter = (await owner.query<{ k: string }>(`select relkind::text as k from pg_class where oid = 'ledger.events'::regclass`)).rows[0]!.k;
  const partitions = (await owner.query<{ n: string }>(`select count(*)::text as n from pg_inherits where inhparent = 'ledger.events'::regclass`)).rows[0]!.n;
  const after = await digest(owner);
  log(`after: ${after.n} events, relkind ${relkindAfter} (p = partitioned), ${partitions} partitions, same events: ${after.md5 === before.md5 && after.n === before.n}`);
  const problemsAfter = await verify(db.url, 'after 0020');
  failed = relkind !== 'r' || relkindAfter !== 'p' || after.md5 !== before.md5 || after.n !== before.n || problemsBefore + problemsAfter > 0;
  log(failed ? 'FAILED' : 'OK: verify clean before and after, every event kept');
} finally {
  await owner.end();
  if (!values.keep) await db.drop();
}
process.exit(failed ? 1 : 0);
