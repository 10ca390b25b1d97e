// Retention at ledger scale (docs/retention.md): fills a scratch database migrated up to
// just before 0020 with N events (two past months, three events per invocation), then in
// one run:
//   - one invocation's timeline and the accept path, before and after 0020 (ratios);
//   - how long 0020 takes on that populated ledger;
//   - archive export, offline verify, drop and restore of the older month (events/s, bytes);
//   - dropping a month against DELETE of the same rows from a copy with the same indexes.
// Prints a markdown table and writes test/bench/results/retention.json.
//   npx tsx test/bench/retention.ts [--events 1000000] [--keep]
// Uses DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres; the database it
// creates is dropped at the end (unless --keep).
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { createFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { migrate } from '../../db/migrate.ts';
import { dropArchivedPartition, exportPartition, restoreArchive } from '../../db/retention/archive.ts';
import { verifyArchiveFile } from '../../db/retention/archive-file.ts';
import { fillHistory, monthStart, partitionOf } from './lib/history.ts';
import { createScratchDatabase, serverInfo } from './lib/pg.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { events: { type: 'string', default: '1000000' }, keep: { type: 'boolean', default: false } },
});
const EVENTS = Number(values.events);
const INVOCATIONS = Math.ceil(EVENTS / 3);
const TIMELINE_SAMPLES = 2_000;
const log = (msg: string) => process.stderr.write(`[retention-bench] ${msg}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/**
 * Mean ms of one invocation's timeline, as the app reads it (a prepared statement,
 * ledger_app, generic plans), on each table, in alternating passes: the median pass of each.
 */
async function timelines(url: string, ids: string[], tables: string[]): Promise<number[]> {
  const c = new pg.Client({ connectionString: url, options: '-c role=ledger_app -c plan_cache_mode=force_generic_plan' });
  await c.connect();
  try {
    const pass = async (table: string, k: number) => {
      const t0 = performance.now();
      for (const id of ids) {
        await c.query({ name: `timeline_${k}`, text: `select position, seq, type, attempt, data, occurred_at from ${table} where invocation_id = $1 order by seq`, values: [id] });
      }
      return (performance.now() - t0) / ids.length;
    };
    const runs: number[][] = tables.map(() => []);
    for (let round = 0; round < 4; round++) {
      for (let k = 0; k < tables.length; k++) {
        const ms = await pass(tables[k] as string, k);
        if (round > 0) (runs[k] as number[]).push(ms); // round 0 warms the caches
      }
    }
    return runs.map((r) => r.sort((a, b) => a - b)[1] as number);
  } finally {
    await c.end();
  }
}

/** Invocations accepted per second through the real accept path, in batches of 50. */
async function acceptRate(url: string): Promise<number> {
  const h = openDatabase(url, { max: 2 });
  try {
    const fn = await createFunction(h.db, `bench-${Math.random().toString(36).slice(2, 8)}`, { runtime: 'MODULE', handler: 'echo.ts' });
    const batch = Array.from({ length: 50 }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i } }));
    for (let i = 0; i < 5; i++) await acceptInvocations(h.db, batch); // warm
    const t0 = performance.now();
    for (let i = 0; i < 60; i++) await acceptInvocations(h.db, batch);
    return (60 * 50) / ((performance.now() - t0) / 1000);
  } finally {
    await h.close();
  }
}

const db = await createScratchDatabase('retention');
const rows: { what: string; value: string }[] = [];
const json: Record<string, number | string> = { events: EVENTS };
const put = (what: string, value: string, key: string, n: number) => {
  rows.push({ what, value });
  json[key] = n;
  log(`${what}: ${value}`);
};
const owner = new pg.Client({ connectionString: db.url });
await owner.connect();
const dir = await mkdtemp(path.join(tmpdir(), 'retention-bench-'));
try {
  await migrate(db.url, () => {}, { before: 20 });
  log(`filling ${EVENTS} events…`);
  const filled = await timed(() => fillHistory(owner, { total: INVOCATIONS }));
  const { rows: count } = await owner.query<{ n: string }>('select count(*)::text as n from ledger.events');
  put('events in the ledger', `${count[0]?.n}`, 'eventsFilled', Number(count[0]?.n));
  put('fill (bench fixture, INSERT … SELECT)', `${(filled.ms / 1000).toFixed(1)} s`, 'fillMs', filled.ms);
  const { rows: sample } = await owner.query<{ id: string }>(`select id::text from ledger.invocations order by md5(id::text) limit ${TIMELINE_SAMPLES}`);
  const ids = sample.map((r) => r.id);

  // the unpartitioned layout, kept beside the partitioned one for side-by-side timelines
  await owner.query(`create table public.events_unpartitioned as select * from ledger.events`);
  await owner.query(`alter table public.events_unpartitioned add primary key (position), add unique (invocation_id, seq)`);
  await owner.query(`grant usage on schema public to ledger_app; grant select on public.events_unpartitioned to ledger_app`);
  const acceptBefore = await acceptRate(db.url);
  const migrated = await timed(() => migrate(db.url));
  await owner.query('vacuum analyze ledger.events');
  await owner.query('vacuum analyze public.events_unpartitioned');
  const [timelineAfter, timelineBefore] = (await timelines(db.url, ids, ['ledger.events', 'public.events_unpartitioned'])) as [number, number];
  const acceptAfter = await acceptRate(db.url);
  put('0020 on this ledger (copy into partitions, indexes, views)', `${(migrated.ms / 1000).toFixed(1)} s`, 'migrateMs', migrated.ms);
  put('timeline, unpartitioned copy (mean of one invocation, passes alternating with the next row)', `${timelineBefore.toFixed(3)} ms`, 'timelineUnpartitionedMs', timelineBefore);
  put('timeline, partitioned', `${timelineAfter.toFixed(3)} ms (×${(timelineAfter / timelineBefore).toFixed(2)})`, 'timelinePartitionedMs', timelineAfter);
  put('accept path, unpartitioned (batches of 50)', `${acceptBefore.toFixed(0)} invocations/s`, 'acceptUnpartitionedPerS', acceptBefore);
  put('accept path, partitioned', `${acceptAfter.toFixed(0)} invocations/s (×${(acceptAfter / acceptBefore).toFixed(2)})`, 'acceptPartitionedPerS', acceptAfter);

  const part = partitionOf(monthStart(-2));
  const h = openDatabase(db.url, { role: '', max: 2 });
  try {
    const exp = await timed(() => exportPartition(h.db, { partition: part, dir, by: 'bench' }));
    const m = exp.value.manifest;
    put(`archive export of ${part}`, `${m.eventCount} events in ${(exp.ms / 1000).toFixed(1)} s = ${((m.eventCount / exp.ms) * 1000).toFixed(0)} events/s`, 'exportMs', exp.ms);
    const perMillion = (m.file.bytes / m.eventCount) * 1e6;
    put('archive size (gzip JSON lines)', `${(m.file.bytes / 1e6).toFixed(1)} MB = ${(perMillion / 1e6).toFixed(1)} MB per million events`, 'archiveBytesPerMillion', perMillion);
    const { rows: rel } = await owner.query<{ b: string }>(`select pg_total_relation_size($1)::text as b`, [`ledger.${part}`]);
    put('the same events in PostgreSQL (table + indexes)', `${(Number(rel[0]?.b) / 1e6).toFixed(1)} MB`, 'partitionBytes', Number(rel[0]?.b));
    const ver = await timed(() => verifyArchiveFile(exp.value.manifestPath));
    if (!ver.value.ok) throw new Error(ver.value.problems.join('\n'));
    put('archive verify (offline)', `${(ver.ms / 1000).toFixed(1)} s = ${((m.eventCount / ver.ms) * 1000).toFixed(0)} events/s`, 'verifyMs', ver.ms);

    // DELETE of the same rows from a copy with the same indexes, against dropping a table
    await owner.query(`create table bench_delete (like ledger.events including defaults including indexes)`);
    await owner.query(`insert into bench_delete select * from ledger.${part}`);
    await owner.query(`create table bench_drop (like ledger.events including defaults including indexes)`);
    await owner.query(`insert into bench_drop select * from ledger.${part}`);
    await owner.query('checkpoint');
    const del = await timed(() => owner.query('delete from bench_delete'));
    put('DELETE of those rows (copy, same indexes; then VACUUM still has to reclaim them)', `${(del.ms / 1000).toFixed(2)} s`, 'deleteMs', del.ms);
    const dropTable = await timed(() => owner.query('drop table bench_drop'));
    put('DROP TABLE of the same rows', `${dropTable.ms.toFixed(1)} ms (DELETE takes ×${(del.ms / dropTable.ms).toFixed(1)} as long)`, 'dropTableMs', dropTable.ms);
    const drop = await timed(() => dropArchivedPartition(h.db, { manifestPath: exp.value.manifestPath, by: 'bench' }));
    put(
      '`archive drop` (verify file, re-read partition to the same content hash, remove projections, detach, drop)',
      `${(drop.ms / 1000).toFixed(1)} s`,
      'archiveDropMs',
      drop.ms,
    );
    const res = await timed(() => restoreArchive(h.db, { manifestPath: exp.value.manifestPath, by: 'bench' }));
    put('archive restore (load, read back to the same hashes)', `${(res.ms / 1000).toFixed(1)} s = ${((m.eventCount / res.ms) * 1000).toFixed(0)} events/s`, 'restoreMs', res.ms);
    json.archiveFileBytes = (await stat(exp.value.dataPath)).size;
  } finally {
    await h.close();
  }

  const info = await serverInfo();
  process.stdout.write(`\n## Retention at ${EVENTS} events (${info.version.split(' on ')[0]}, ${os.cpus().length} cores)\n\n| what | result |\n|---|---|\n`);
  for (const r of rows) process.stdout.write(`| ${r.what} | ${r.value} |\n`);
  mkdirSync('test/bench/results', { recursive: true });
  writeFileSync('test/bench/results/retention.json', `${JSON.stringify({ at: new Date().toISOString(), server: info, ...json }, null, 2)}\n`);
} finally {
  await owner.end();
  await rm(dir, { recursive: true, force: true });
  if (!values.keep) await db.drop();
}
