// Tamper evidence (docs/tamper-evidence.md): what the Merkle log costs and gives.
//  1. the drain of scenario 1 (one inline worker process) with the sealer off and on, interleaved
//     off/on/off/on on fresh databases, and how far behind the sealer was when the drain ended;
//  2. sealing throughput alone: a drained ledger sealed in one process, nothing else running;
//  3. at 1M events (100k with --quick): sealing them, the size of the stored record, the time
//     and size of inclusion and consistency proofs, and a full verification by tools/verify-ledger.mjs.
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import pg from 'pg';
import { consistencyProof, eventInclusionProof } from '../../../db/tamper/proofs.ts';
import { Sealer, signLatestTreeHead } from '../../../db/tamper/sealer.ts';
import { readSealState } from '../../../db/tamper/store.ts';
import { generateSigningKey, parseSigningKey } from '../../../db/tamper/tree-head.ts';
import { verifyLedger } from '../../../tools/verify-ledger.mjs';
import { acceptMany, createLedgerDatabase, type LedgerDatabase } from '../lib/ledger.ts';
import { log, percentile, type BenchScale, type Measurement } from '../lib/types.ts';
import { drainWithOurWorker, INLINE_WORKER } from './drain.ts';

const S = 'seal';

async function eventCount(db: LedgerDatabase): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(db.handle.db);
  return rows[0]?.n ?? 0;
}

/** Seals everything in this process; events per second. */
async function sealAllTimed(db: LedgerDatabase): Promise<{ events: number; seconds: number }> {
  const sealer = new Sealer(db.handle.db, { sealerId: 'bench' });
  const total = await eventCount(db);
  const from = (await readSealState(db.handle.db)).treeSize;
  const t0 = performance.now();
  for (;;) {
    const r = await sealer.sealPending({ wait: true });
    if (r.treeSize >= total) break;
    await new Promise((resolve) => setTimeout(resolve, 20)); // an older transaction somewhere holds sealing back
  }
  return { events: total - from, seconds: (performance.now() - t0) / 1000 };
}

async function drainPair(scale: BenchScale): Promise<Measurement[]> {
  const key = generateSigningKey();
  const jobs = scale.drainJobs;
  const rates: Record<'off' | 'on', number[]> = { off: [], on: [] };
  const lags: number[] = [];
  let alone: { events: number; seconds: number } | null = null;
  for (const mode of ['off', 'on', 'off', 'on'] as const) {
    const db = await createLedgerDatabase(`seal_drain_${mode}`);
    try {
      await acceptMany(db, db.functions.inline, jobs);
      const env: Record<string, string> =
        mode === 'on' ? { LEDGER_SEALER: 'on', LEDGER_SIGNING_KEY: key.privateKeyPem } : { LEDGER_SEALER: 'off' };
      let lag = 0;
      const r = await drainWithOurWorker(db, jobs, INLINE_WORKER, '0', {
        env,
        // the worker's own sealer catches up before the worker stops: how long after the drain's last event?
        beforeStop:
          mode === 'on'
            ? async () => {
                const total = await eventCount(db);
                for (;;) {
                  const { rows } = await sql<{ n: number; lag: number }>`
                    select s.tree_size::int as n,
                           extract(epoch from s.sealed_at - (select max(occurred_at) from ledger.events))::float8 as lag
                    from ledger.seal_state s`.execute(db.handle.db);
                  if ((rows[0]?.n ?? 0) >= total) {
                    lag = Math.max(0, rows[0]?.lag ?? 0);
                    return;
                  }
                  await new Promise((resolve) => setTimeout(resolve, 200));
                }
              }
            : undefined,
      });
      rates[mode].push(jobs / r.seconds);
      if (mode === 'on') lags.push(lag);
      log(`seal: drain with the sealer ${mode}: ${Math.round(jobs / r.seconds)} jobs/s${mode === 'on' ? `, all sealed ${lag.toFixed(2)} s after the last event` : ''}`);
      // the first drained ledger, sealed afterwards by one process with nothing else running
      if (mode === 'off' && !alone) {
        alone = await sealAllTimed(db);
        log(`seal: ${alone.events} events sealed alone in ${alone.seconds.toFixed(2)} s`);
      }
    } finally {
      await db.close();
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const note = `inline worker, concurrency ${INLINE_WORKER.concurrency}, ${jobs} jobs; runs off/on/off/on on fresh databases`;
  return [
    { scenario: S, subject: 'drain, sealer off', metric: 'jobs/s', value: mean(rates.off), unit: 'jobs/s', note: `${note}; runs: ${rates.off.map(Math.round).join(', ')}` },
    {
      scenario: S,
      subject: 'drain, sealer on (same process)',
      metric: 'jobs/s',
      value: mean(rates.on),
      unit: 'jobs/s',
      note: `runs: ${rates.on.map(Math.round).join(', ')}; ${((mean(rates.on) / mean(rates.off)) * 100).toFixed(0)}% of off`,
    },
    { scenario: S, subject: 'sealer lag at the end of the drain', metric: 'seconds', value: Math.max(...lags), unit: 's', note: 'last event → all sealed (worst run)' },
    ...(alone ? [{ scenario: S, subject: 'sealing alone', metric: 'events/s', value: alone.events / alone.seconds, unit: 'events/s', note: `${alone.events} drained events (3 per invocation), one process` }] : []),
  ];
}

async function atScale(scale: BenchScale): Promise<Measurement[]> {
  const n = scale.quick ? 100_000 : 1_000_000;
  const db = await createLedgerDatabase('seal_proofs');
  try {
    log(`seal: writing ${n} events`);
    await acceptMany(db, db.functions.inline, n, 2_000);
    const sealed = await sealAllTimed(db);
    log(`seal: ${sealed.events} events sealed in ${sealed.seconds.toFixed(1)} s`);
    const key = parseSigningKey(generateSigningKey().privateKeyPem);
    const head = (await signLatestTreeHead(db.handle.db, key, { wait: true }))!.head;
    const { rows: sizes } = await sql<{ bytes: number }>`
      select (pg_total_relation_size('ledger.merkle_leaf_blocks') + pg_total_relation_size('ledger.merkle_nodes'))::float8 as bytes`.execute(db.handle.db);
    const { rows: positions } = await sql<{ p: string }>`
      select position::text as p from ledger.events tablesample system (1) limit 200`.execute(db.handle.db);

    const inclusion: number[] = [];
    let hashes = 0;
    for (const { p } of positions) {
      const t0 = performance.now();
      const proof = await eventInclusionProof(db.handle.db, p);
      inclusion.push(performance.now() - t0);
      hashes = Math.max(hashes, proof.auditPath.length);
    }
    const consistency: number[] = [];
    let consistencyHashes = 0;
    for (let i = 0; i < 100; i++) {
      const from = 1 + Math.floor(Math.random() * (head.treeSize - 1));
      const t0 = performance.now();
      const c = await consistencyProof(db.handle.db, from, head.treeSize);
      consistency.push(performance.now() - t0);
      consistencyHashes = Math.max(consistencyHashes, c.proof.length);
    }
    inclusion.sort((a, b) => a - b);
    consistency.sort((a, b) => a - b);

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const t0 = performance.now();
    const report = await verifyLedger({ client, treeHeads: [head], publicKey: key.publicKey });
    const verifySeconds = (performance.now() - t0) / 1000;
    await client.end();
    if (!report.ok) throw new Error(`the verifier found problems in an untouched ledger: ${report.problems[0]?.message}`);
    const label = `${n / 1000}k events`;
    return [
      { scenario: S, subject: `sealing ${label}`, metric: 'events/s', value: sealed.events / sealed.seconds, unit: 'events/s', note: `${sealed.seconds.toFixed(1)} s, one process` },
      { scenario: S, subject: `stored record, ${label}`, metric: 'bytes/event', value: (sizes[0]?.bytes ?? 0) / n, unit: 'B', note: 'merkle_leaf_blocks + merkle_nodes, indexes included' },
      { scenario: S, subject: `inclusion proof, ${label}`, metric: 'p50', value: percentile(inclusion, 50), unit: 'ms', note: `p95 ${percentile(inclusion, 95).toFixed(2)} ms; ${inclusion.length} random events; ${hashes} hashes (⌈log2 n⌉ = ${Math.ceil(Math.log2(n))})` },
      { scenario: S, subject: `consistency proof, ${label}`, metric: 'p50', value: percentile(consistency, 50), unit: 'ms', note: `p95 ${percentile(consistency, 95).toFixed(2)} ms; 100 random sizes → ${n}; at most ${consistencyHashes} hashes` },
      { scenario: S, subject: `verify-ledger.mjs, ${label}`, metric: 'seconds', value: verifySeconds, unit: 's', note: `${Math.round(n / verifySeconds)} events/s, recompute and check one head` },
    ];
  } finally {
    await db.close();
  }
}

export async function sealScenario(scale: BenchScale): Promise<Measurement[]> {
  const pick = new Set((process.env.BENCH_SEAL_PARTS ?? 'drain,scale').split(','));
  return [...(pick.has('drain') ? await drainPair(scale) : []), ...(pick.has('scale') ? await atScale(scale) : [])];
}
