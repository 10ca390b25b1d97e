// verify and rebuild-projections are safe and correct at any time: while a worker drains
// invocations that fail and retry, and producers keep accepting with idempotency keys,
// verify reports nothing (every problem it reported here used to be false), rebuild finds
// nothing to repair, and neither disturbs the writers (no deadlock, no failed accept).
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { acceptInvocations } from '../../db/invocations.ts';
import type { FunctionVersion } from '../../db/functions.ts';
import { rebuildProjections, verifyLedger, type VerifyProblem } from '../../db/replay.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, invokeAsync, startWorker } from './helpers.ts';

let t: TestDatabase;
let flaky: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  flaky = await fn(t.db, 'flaky', 'flaky.ts', { maxRetries: 4, retryBaseDelayMs: 50, retryMaxDelayMs: 400 });
});

const RUNS_WHILE_PRODUCING = 8;
const queueDepth = async () =>
  (await sql<{ n: number }>`select count(*)::int as n from ledger.queue`.execute(t.db)).rows[0]?.n ?? 0;

describe('verify and rebuild while a worker drains and producers accept', () => {
  it('verify reports no false problem and rebuild repairs nothing, without disturbing the writers', { timeout: 300_000 }, async () => {
    await invokeAsync(t.db, flaky, Array.from({ length: 2_000 }, (_, i) => ({ i })));
    const worker = await startWorker(t.db, t.url, { concurrency: 64, claimBatchSize: 100 });

    // producers: one keyed accept per transaction, some keys repeated, racing each other
    let producing = true;
    const acceptErrors: string[] = [];
    let accepted = 0;
    const producer = async (p: number) => {
      for (let i = 0; producing; i++) {
        try {
          await acceptInvocations(t.db, [{ fn: flaky, invocationType: 'async', payload: { p, i }, idempotencyKey: `p${p}-${i % 50}` }]);
          accepted++;
        } catch (e) {
          acceptErrors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
        }
      }
    };
    const producers = Array.from({ length: 4 }, (_, p) => producer(p));

    const reported: VerifyProblem[] = [];
    const rebuildErrors: string[] = [];
    let repaired = 0;
    try {
      // the first runs overlap the producers by construction, the rest the drain
      for (let run = 0; run < RUNS_WHILE_PRODUCING || (await queueDepth()) > 0; run++) {
        if (run === RUNS_WHILE_PRODUCING) producing = false;
        if (run % 2 === 0) {
          reported.push(...(await verifyLedger(t.db, { pageSize: 300 })));
        } else {
          try {
            repaired += (await rebuildProjections(t.db, { pageSize: 100 })).repaired;
          } catch (e) {
            rebuildErrors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
          }
        }
      }
    } finally {
      producing = false;
      await Promise.all(producers);
      await worker.stop();
    }
    expect(accepted).toBeGreaterThan(0);
    expect({ reported: reported.slice(0, 10), count: reported.length }).toEqual({ reported: [], count: 0 });
    expect(rebuildErrors).toEqual([]);
    expect(repaired).toBe(0);
    expect(acceptErrors).toEqual([]);
    expect(await verifyLedger(t.db)).toEqual([]);
  });
});
