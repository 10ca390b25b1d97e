// Live drain throughput with and without a replay run (docs/replay.md), side by side on one
// database: one worker process (`invoke-ledger start --role worker`) drains a fresh batch of
// no-op async invocations, with REPLAY_CONCURRENCY=0 ("off") and with the default 2 while a
// replay run of the recorded history is pending ("on"), interleaved off/on/off/on/…. The
// live rate comes from the ledger clock (first `started` → last `succeeded` of the async
// invocations of the round); the replay row says how many replays ran in the same window.
// Prints a table and writes JSON to test/bench/results/replay-drain-<date>.json.
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx test/bench/replay-drain.ts [jobs] [pairs]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { startReplay } from '../../db/replay-runs.ts';
import { acceptMany, createLedgerDatabase, lastPosition, type LedgerDatabase } from './lib/ledger.ts';
import { BENCH_DIR, startLedger } from './lib/proc.ts';
import { log } from './lib/types.ts';

const jobs = Number(process.argv[2] ?? 10_000);
const pairs = Number(process.argv[3] ?? 3);
const history = 10_000;
const WORKER = { WORKER_CONCURRENCY: '512', CLAIM_BATCH_SIZE: '1000', RUNTIME_THREADS: '2' };

interface Round {
  mode: 'off' | 'on';
  liveRate: number;
  liveSeconds: number;
  replaysInWindow: number;
}

async function asyncLeft(db: LedgerDatabase): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`select exists (select 1 from ledger.queue where invocation_type = 'async') as any`.execute(db.handle.db);
  return rows[0]?.any ?? false;
}

async function drain(db: LedgerDatabase, mode: 'off' | 'on' | 'history', n: number): Promise<Round | null> {
  const since = await lastPosition(db);
  await acceptMany(db, db.functions.inline, n);
  const worker = await startLedger('worker', db.url, { ...WORKER, REPLAY_CONCURRENCY: mode === 'on' ? '2' : '0' });
  try {
    const until = Date.now() + Math.max(120_000, n * 20);
    while (await asyncLeft(db)) {
      if (Date.now() > until) throw new Error(`drain did not finish:\n${worker.tail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await worker.stop();
  }
  if (mode === 'history') return null;
  const { rows } = await sql<{ succeeded: number; first: Date; last: Date; replays: number }>`
    with live as (
      select e.type, e.occurred_at from ledger.events e join ledger.invocations i on i.id = e.invocation_id
      where e.position > ${since}::bigint and i.invocation_type = 'async'
    ), w as (
      select count(*) filter (where type = 'succeeded')::int as succeeded,
             min(occurred_at) filter (where type = 'started') as first,
             max(occurred_at) filter (where type = 'succeeded') as last
      from live
    )
    select w.*, (select count(*)::int from ledger.events e join ledger.invocations i on i.id = e.invocation_id
                 where e.position > ${since}::bigint and i.invocation_type = 'replay' and e.type in ('succeeded', 'failed')
                   and e.occurred_at between w.first and w.last) as replays
    from w`.execute(db.handle.db);
  const r = rows[0] as { succeeded: number; first: Date; last: Date; replays: number };
  if (r.succeeded !== n) throw new Error(`expected ${n} live invocations succeeded, the ledger has ${r.succeeded}`);
  const seconds = (r.last.getTime() - r.first.getTime()) / 1000;
  return { mode, liveRate: n / seconds, liveSeconds: seconds, replaysInWindow: r.replays };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const db = await createLedgerDatabase('replay_drain');
try {
  log(`replay-drain: recording ${history} invocations to replay`);
  await drain(db, 'history', history);
  // one run of the whole history, left pending: only "on" rounds' workers run its items
  const run = await startReplay(db.handle.db, { selection: { functionName: db.functions.inline.name, sample: 10_000 }, target: '$LATEST', concurrency: 2 });
  log(`replay-drain: replay ${run.id} of ${run.total} invocations pending`);
  const rounds: Round[] = [];
  for (let i = 0; i < pairs; i++) {
    for (const mode of ['off', 'on'] as const) {
      const r = (await drain(db, mode, jobs)) as Round;
      rounds.push(r);
      log(`replay-drain: ${mode}: ${Math.round(r.liveRate)} live invocations/s over ${r.liveSeconds.toFixed(2)} s, ${r.replaysInWindow} replays ran meanwhile`);
    }
  }
  // the replay alone, for scale: the same worker with no live work for 5 s
  const aloneSince = await lastPosition(db);
  const alone = await startLedger('worker', db.url, { ...WORKER, REPLAY_CONCURRENCY: '2' });
  await new Promise((r) => setTimeout(r, 5_000));
  await alone.stop();
  const { rows: aloneRows } = await sql<{ n: number; seconds: number }>`
    select count(*)::int as n, extract(epoch from max(occurred_at) - min(occurred_at))::float8 as seconds
    from ledger.events where position > ${aloneSince}::bigint and type in ('started', 'succeeded', 'failed')`.execute(db.handle.db);
  const replaysAlone = ((aloneRows[0]?.n ?? 0) / 2) / (aloneRows[0]?.seconds || 1);
  log(`replay-drain: replays alone: ${Math.round(replaysAlone)}/s`);
  const off = median(rounds.filter((r) => r.mode === 'off').map((r) => r.liveRate));
  const on = median(rounds.filter((r) => r.mode === 'on').map((r) => r.liveRate));
  const replays = median(rounds.filter((r) => r.mode === 'on').map((r) => r.replaysInWindow / r.liveSeconds));
  const table = [
    '| live drain | invocations/s (median) | rounds |',
    '| --- | ---: | --- |',
    `| no replay running (REPLAY_CONCURRENCY=0) | ${Math.round(off)} | ${rounds.filter((r) => r.mode === 'off').map((r) => Math.round(r.liveRate)).join(', ')} |`,
    `| replay running (REPLAY_CONCURRENCY=2, ${Math.round(replays)} replays/s) | ${Math.round(on)} | ${rounds.filter((r) => r.mode === 'on').map((r) => Math.round(r.liveRate)).join(', ')} |`,
    `| ratio with / without | ${(on / off).toFixed(2)} | |`,
    `| (the replay alone, same worker, no live work: ${Math.round(replaysAlone)} replays/s) | | |`,
  ].join('\n');
  process.stdout.write(`${table}\n`);
  const dir = path.join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `replay-drain-${new Date().toISOString().slice(0, 19).replaceAll(':', '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ jobs, pairs, history, worker: WORKER, rounds, medianOff: off, medianOn: on, ratio: on / off, replaysPerSecond: replays, replaysAlonePerSecond: replaysAlone }, null, 2)}\n`);
  log(`replay-drain: wrote ${file}`);
} finally {
  await db.close();
}
