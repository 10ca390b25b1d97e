// The scheduler on /metrics (docs/observability.md, docs/schedules.md#watching-the-scheduler):
// how long the earliest due tick has waited, read from the database, and the ticks a worker
// decided by outcome, equal to what audit.schedule_ticks holds. Real PostgreSQL, the
// scheduler loop in-process, its clock moved instead of waiting.
import { sql } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';
import { SchedulerLoop } from '../../apps/worker/scheduler.ts';
import { createFunction } from '../../db/functions.ts';
import { createSchedule, setSchedulerClockOffset } from '../../db/schedule-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { waitFor } from '../worker/helpers.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await createFunction(t.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
});

const value = async (registry: Registry, name: string, labels: Record<string, string> = {}) =>
  ((await registry.getSingleMetric(name)?.get())?.values ?? []).find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;

describe('scheduler metrics', () => {
  it('the oldest due tick waits as long as the clock moved past it, then 0; ticks counted as audit.schedule_ticks records them', async () => {
    const registry = new Registry();
    const loop = new SchedulerLoop({ db: t.db, logger: pino({ level: 'silent' }), workerId: 'metrics-test', intervalMs: 100, registry });
    try {
      expect(await value(registry, 'ledger_schedule_oldest_due_seconds')).toBe(0);
      const s = await createSchedule(t.db, { name: 'every-minute', expression: 'rate(1 minute)', target: { functionName: 'echo' } }, { actor: 'test' });
      // five minutes pass with no worker: the first tick (at activeSince) has waited that long
      const { rows } = await sql<{ now: Date }>`select now()`.execute(t.db);
      await setSchedulerClockOffset(t.db, s.activeSince.getTime() + 5 * 60_000 + 1_000 - rows[0]!.now.getTime());
      expect(await value(registry, 'ledger_schedule_oldest_due_seconds')).toBeGreaterThanOrEqual(300);

      loop.start();
      await waitFor('the due ticks decided', async () => (await value(registry, 'ledger_schedule_oldest_due_seconds')) === 0, 30_000);
      // the loop counts a pass's ticks once its transactions have committed
      const counted = async () =>
        ((await value(registry, 'ledger_schedule_ticks_total', { outcome: 'fired' })) ?? 0) + ((await value(registry, 'ledger_schedule_ticks_total', { outcome: 'skipped' })) ?? 0);
      await waitFor('the ticks counted', async () => (await counted()) === 6, 30_000);
      const { rows: ticks } = await sql<{ outcome: string; n: number }>`
        select outcome, count(*)::int as n from audit.schedule_ticks where schedule_name = 'every-minute' group by 1`.execute(t.db);
      const recorded = Object.fromEntries(ticks.map((r) => [r.outcome, r.n]));
      // six ticks came due (0…5 minutes); the default policy fires the recent ones and coalesces the missed
      expect((recorded.fired ?? 0) + (recorded.skipped ?? 0)).toBe(6);
      expect(recorded.skipped).toBeGreaterThan(0);
      expect(await value(registry, 'ledger_schedule_ticks_total', { outcome: 'fired' })).toBe(recorded.fired);
      expect(await value(registry, 'ledger_schedule_ticks_total', { outcome: 'skipped' })).toBe(recorded.skipped);
      expect(await value(registry, 'ledger_schedule_errors_total')).toBe(0);
    } finally {
      await loop.stop();
      await setSchedulerClockOffset(t.db, 0);
    }
  });
});
