// A worker with WORKER_CONCURRENCY unset (docs/worker.md, "Concurrency") grows its limit
// while the queue holds more than it may take and attempts are quick, and still records
// every attempt whole. Read from its claim-batch histogram: counters, not timings.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, invokeAsync, startWorker, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
let worker: RunningWorker | undefined;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await worker?.stop();
});

/** claims that picked more than `n` rows (`n` a bucket bound of the histogram) */
async function claimsOver(w: RunningWorker, n: number): Promise<number> {
  const metric = (await w.registry.getMetricsAsJSON()).find((m) => m.name === 'ledger_worker_claim_batch_size');
  const buckets = (metric?.values ?? []).filter((v) => (v as { metricName?: string }).metricName === 'ledger_worker_claim_batch_size_bucket');
  const count = (le: string) => buckets.find((b) => String(b.labels.le) === le)?.value ?? 0;
  return count('+Inf') - count(String(n));
}

describe('adaptive concurrency', () => {
  it('starts at its minimum, claims more than it once the queue stays full, and every invocation ends succeeded', { timeout: 120_000 }, async () => {
    const f = await fn(t.db, 'adaptive_noop', 'noop.ts');
    const ids = await invokeAsync(t.db, f, Array.from({ length: 1500 }, (_, i) => ({ i })));
    worker = await startWorker(t.db, t.url, { concurrency: 8, adaptive: { max: 512 }, claimBatchSize: 1000 });
    await waitFor(
      'the queue drained',
      async () => {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations where id = any(${ids}::uuid[]) and status = 'succeeded'`.execute(t.db);
        return rows[0]?.n === ids.length;
      },
      60_000,
    );
    // a fixed limit of 8 never claims more than 8 at once
    expect(await claimsOver(worker, 10)).toBeGreaterThan(0);
  });
});
