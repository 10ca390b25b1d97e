// Scenario 4: pickup latency of an idle worker (waiting on LISTEN). One invocation at a
// time, with a gap between them; latency = the `started` event's occurred_at minus the
// `accepted` event's (one clock, no skew). The accept's statement time comes before its
// commit, so this counts the commit too and can never come out below zero, as a clock read
// after the commit could: the worker may start the attempt before that read is answered.
import { sql } from 'kysely';
import { openDatabase } from '../../../db/connection.ts';
import { acceptInvocations } from '../../../db/invocations.ts';
import { Unavailable, createLedgerDatabase, queueNotEmpty, workerAvailable } from '../lib/ledger.ts';
import { startLedger } from '../lib/proc.ts';
import { log, percentile, type BenchScale, type Measurement } from '../lib/types.ts';
import { INLINE_WORKER } from './drain.ts';

const GAP_MS = 20;

export async function pickupScenario(scale: BenchScale): Promise<Measurement[]> {
  const subject = 'invoke-ledger';
  if (!workerAvailable()) return [{ scenario: 'pickup', subject, metric: 'p50', value: null, unit: 'ms', note: 'worker not available' }];
  log(`pickup: ${scale.pickupSamples} invocations, ${GAP_MS} ms apart`);
  const db = await createLedgerDatabase('pickup');
  const single = openDatabase(db.url, { max: 1 });
  try {
    const worker = await startLedger('worker', db.url, {
      WORKER_CONCURRENCY: String(INLINE_WORKER.concurrency),
      CLAIM_BATCH_SIZE: String(INLINE_WORKER.claimBatchSize),
    });
    const ids: string[] = [];
    try {
      // warm-up: the first attempt of a process loads the module and the version cache
      for (let i = 0; i < 5; i++) {
        await acceptInvocations(single.db, [{ fn: db.functions.inline, invocationType: 'async', payload: {} }]);
        await new Promise((r) => setTimeout(r, 100));
      }
      for (let i = 0; i < scale.pickupSamples; i++) {
        const [accepted] = await acceptInvocations(single.db, [{ fn: db.functions.inline, invocationType: 'async', payload: { i } }]);
        ids.push(accepted?.invocationId as string);
        await new Promise((r) => setTimeout(r, GAP_MS));
      }
      const deadline = Date.now() + 30_000;
      while (await queueNotEmpty(db)) {
        if (Date.now() > deadline) throw new Unavailable('worker did not pick the invocations up within 30 s');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await worker.stop();
    }
    // occurred_at has microseconds and a JS Date only milliseconds: the difference is taken in SQL
    const { rows } = await sql<{ id: string; ms: number }>`
      select s.invocation_id as id, extract(epoch from (s.occurred_at - a.occurred_at)) * 1000 as ms
      from ledger.events s
      join ledger.events a on a.invocation_id = s.invocation_id and a.seq = 1
      where s.invocation_id = any(${ids}::uuid[]) and s.type = 'started' and s.attempt = 1`.execute(db.handle.db);
    const ms = rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
    if (ms.length !== ids.length) throw new Error(`${ids.length} accepted, ${ms.length} started`);
    return [
      { scenario: 'pickup', subject, metric: 'p50', value: percentile(ms, 50), unit: 'ms', note: `${ms.length} sequential invocations, ${GAP_MS} ms apart; accepted → started (ledger clock, the accept's commit included)` },
      { scenario: 'pickup', subject, metric: 'p99', value: percentile(ms, 99), unit: 'ms' },
      { scenario: 'pickup', subject, metric: 'min', value: ms[0] ?? null, unit: 'ms' },
      { scenario: 'pickup', subject, metric: 'max', value: ms[ms.length - 1] ?? null, unit: 'ms' },
    ];
  } catch (e) {
    if (e instanceof Unavailable) return [{ scenario: 'pickup', subject, metric: 'p50', value: null, unit: 'ms', note: e.message }];
    throw e;
  } finally {
    await single.close();
    await db.close();
  }
}
