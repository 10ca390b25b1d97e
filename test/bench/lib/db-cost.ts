// Load-independent costs of a drain, read from the scratch database itself: the WAL
// records that touched its relations (pg_walinspect; the server-wide LSN difference also
// counts every other database's writes), how many index entries and full-page images
// they carry, the share of projection updates that were HOT, and the CPU of the backends
// the worker opened. Other clients of the same server do not move these numbers.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { withClient } from './pg.ts';

export interface DatabaseCost {
  /** WAL records touching this database's relations, bytes per job (record + full-page images) */
  walBytesPerJob: number;
  /** of which full-page images */
  fpiBytesPerJob: number;
  /** btree leaf inserts per job: index entries written */
  indexEntriesPerJob: number;
  /** heap inserts + updates + deletes per job */
  heapRecordsPerJob: number;
  /** n_tup_hot_upd / n_tup_upd over the drain, per table */
  hot: Record<string, { updates: number; hotRatio: number | null }>;
  /** CPU of this database's client backends (the worker's connections), µs per job */
  backendUsPerJob: number | null;
  /** BENCH_WAL_DETAIL=1: bytes and records per job by resource manager, record type and first relation */
  walDetail?: { rmgr: string; type: string; relation: string; bytesPerJob: number; fpiPerJob: number; recordsPerJob: number }[];
}

const TABLES = ['invocations', 'queue'];

async function updates(url: string): Promise<Map<string, [number, number]>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ relname: string; upd: string; hot: string }>(
      `select relname, n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables
       where schemaname = 'ledger' and relname = any($1)`,
      [TABLES],
    );
    return new Map(rows.map((r) => [r.relname, [Number(r.upd), Number(r.hot)] as [number, number]]));
  });
}

function ticks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

/**
 * Starts the window (call before the worker starts); `readWal()` while it runs. `backends()` must be called while
 * the worker still runs (its connections were all opened inside the window, so their
 * whole CPU counts); `finish()` after it stopped (its backends have flushed their stats).
 */
export async function databaseCostWindow(url: string): Promise<{
  /** ends the window without a reading (finish() calls it too) */
  close: () => Promise<void>;
  /** reads the WAL written so far (call every second or so while the drain runs) */
  readWal: () => Promise<void>;
  backends: () => Promise<number | null>;
  finish: (jobs: number, backendSeconds: number | null) => Promise<DatabaseCost | null>;
}> {
  const inspect = await withClient(url, async (c) => {
    try {
      await c.query('create extension if not exists pg_walinspect');
      return true;
    } catch {
      return false; // not a superuser, or the contrib package is missing
    }
  });
  const lsn = async () => withClient(url, async (c) => (await c.query<{ l: string }>('select pg_current_wal_flush_lsn()::text as l')).rows[0]?.l as string);
  // Other databases' DROP DATABASE force checkpoints, after which the server recycles WAL
  // segments within seconds: a temporary physical slot holds them for this window (it
  // goes away with its session, even if the bench dies), and the WAL is read in steps.
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  if (inspect) {
    try {
      await holder.query(`select pg_create_physical_replication_slot('bench_' || pg_backend_pid(), true, true)`);
    } catch {
      // no free slot: read in steps and hope
    }
  }
  let from = await lsn();
  let lost: string | null = inspect ? null : 'pg_walinspect unavailable';
  const sum = { bytes: 0, fpi: 0, btree: 0, heap: 0 };
  const detailWanted = process.env.BENCH_WAL_DETAIL === '1';
  const detail = new Map<string, { rmgr: string; type: string; relation: string; bytes: number; fpi: number; n: number }>();
  const readWal = async () => {
    if (lost !== null) return;
    const to = await lsn();
    try {
      const row = await withClient(url, async (c) =>
        (await c.query<{ bytes: string; fpi: string; btree: string; heap: string }>(
          `select coalesce(sum(record_length), 0)::text as bytes, coalesce(sum(fpi_length), 0)::text as fpi,
                  count(*) filter (where resource_manager = 'Btree' and record_type in ('INSERT_LEAF', 'INSERT_POST'))::text as btree,
                  count(*) filter (where resource_manager = 'Heap' and record_type in ('INSERT', 'INSERT+INIT', 'UPDATE', 'UPDATE+INIT', 'HOT_UPDATE', 'HOT_UPDATE+INIT', 'DELETE'))::text as heap
           from pg_get_wal_records_info($1, $2)
           where block_ref like '%/' || (select oid from pg_database where datname = current_database()) || '/%'`,
          [from, to],
        )).rows[0],
      );
      sum.bytes += Number(row?.bytes ?? 0);
      sum.fpi += Number(row?.fpi ?? 0);
      sum.btree += Number(row?.btree ?? 0);
      sum.heap += Number(row?.heap ?? 0);
      if (detailWanted) {
        // the first block a record touches names its relation; filenodes are read while the
        // relations still exist (the scratch database is dropped after the drain)
        const rows = await withClient(url, async (c) =>
          (await c.query<{ rmgr: string; type: string; relation: string; bytes: string; fpi: string; n: string }>(
            `select w.resource_manager as rmgr, regexp_replace(w.record_type, '\\+INIT$', '') as type,
                    coalesce(pg_filenode_relation(0, substring(w.block_ref from 'rel \\d+/\\d+/(\\d+)')::oid)::regclass::text,
                             substring(w.block_ref from 'rel \\d+/\\d+/(\\d+)'), '-') as relation,
                    sum(w.record_length)::text as bytes, sum(w.fpi_length)::text as fpi, count(*)::text as n
             from pg_get_wal_records_info($1, $2) w
             where w.block_ref like '%/' || (select oid from pg_database where datname = current_database()) || '/%'
             group by 1, 2, 3`,
            [from, to],
          )).rows,
        );
        for (const r of rows) {
          const k = `${r.rmgr}|${r.type}|${r.relation}`;
          const d = detail.get(k) ?? { rmgr: r.rmgr, type: r.type, relation: r.relation, bytes: 0, fpi: 0, n: 0 };
          d.bytes += Number(r.bytes);
          d.fpi += Number(r.fpi);
          d.n += Number(r.n);
          detail.set(k, d);
        }
      }
      from = to;
    } catch (e) {
      lost = (e as Error).message;
    }
  };
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await holder.end().catch(() => {});
  };
  const before = await updates(url);
  return {
    close,
    readWal,
    async backends() {
      const pids = await withClient(url, async (c) =>
        (await c.query<{ pid: number }>(
          `select pid from pg_stat_activity where datname = current_database() and backend_type = 'client backend' and pid <> pg_backend_pid()`,
        )).rows.map((r) => r.pid),
      );
      let total = 0;
      for (const pid of pids) total += ticks(pid) ?? 0;
      return pids.length === 0 ? null : total / 100; // USER_HZ is 100 on Linux
    },
    async finish(jobs, backendSeconds) {
      await new Promise((r) => setTimeout(r, 500)); // exiting backends flush their table stats
      await readWal();
      await close();
      if (lost !== null) {
        console.error(`[bench] WAL of the scratch database not read: ${lost}`);
        return null;
      }
      const after = await updates(url);
      const hot: DatabaseCost['hot'] = {};
      for (const t of TABLES) {
        const [u0, h0] = before.get(t) ?? [0, 0];
        const [u1, h1] = after.get(t) ?? [0, 0];
        hot[t] = { updates: u1 - u0, hotRatio: u1 - u0 > 0 ? Math.round(((h1 - h0) / (u1 - u0)) * 100) / 100 : null };
      }
      const per = (v: number) => Math.round((v / jobs) * 10) / 10;
      return {
        walBytesPerJob: Math.round(sum.bytes / jobs),
        fpiBytesPerJob: Math.round(sum.fpi / jobs),
        indexEntriesPerJob: per(sum.btree),
        heapRecordsPerJob: per(sum.heap),
        hot,
        backendUsPerJob: backendSeconds === null ? null : Math.round((backendSeconds / jobs) * 1e6),
        ...(detailWanted
          ? {
              walDetail: [...detail.values()]
                .sort((a, b) => b.bytes - a.bytes)
                .map((d) => ({ rmgr: d.rmgr, type: d.type, relation: d.relation, bytesPerJob: Math.round(d.bytes / jobs), fpiPerJob: Math.round(d.fpi / jobs), recordsPerJob: per(d.n) })),
            }
          : {}),
      };
    },
  };
}

export function describeDatabaseCost(c: DatabaseCost): string {
  const hot = Object.entries(c.hot)
    .map(([t, h]) => `${t} ${h.hotRatio === null ? 'n/a' : `${Math.round(h.hotRatio * 100)}%`} of ${h.updates.toLocaleString('en-US')}`)
    .join(', ');
  return `this database: WAL ${c.walBytesPerJob.toLocaleString('en-US')} B/job (FPI ${c.fpiBytesPerJob.toLocaleString('en-US')} B), ` +
    `${c.indexEntriesPerJob} index entries/job, ${c.heapRecordsPerJob} heap records/job, HOT updates: ${hot}, ` +
    `its backends' CPU ${c.backendUsPerJob ?? 'n/a'} µs/job`;
}

/** BENCH_WAL_DETAIL=1: one line per resource manager, record type and relation, biggest first */
export function describeWalDetail(c: DatabaseCost): string {
  return (c.walDetail ?? [])
    .filter((d) => d.bytesPerJob > 0)
    .map((d) => `  WAL ${d.rmgr} ${d.type} ${d.relation}: ${d.bytesPerJob} B/job (FPI ${d.fpiPerJob}), ${d.recordsPerJob} records/job`)
    .join('\n');
}
