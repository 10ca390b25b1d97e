// The scheduler's transaction (decideDueTicks) in-process, for the paths the worker tests do
// not reach: ticks of a disabled schedule, ticks overtaken by an update, a missing target,
// completion at EndDate with ActionAfterCompletion DELETE; and the database refusing a
// second decision of a tick.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { listChanges } from './changes.ts';
import { createFunction } from './functions.ts';
import { createSchedule, decideDueTicks, getSchedule, listTicks, setSchedulerClockOffset, updateSchedule, type ScheduleInput } from './schedule-store.ts';

let t: TestDatabase;
const MINUTE = 60_000;
const by = { actor: 'test' };

async function setClock(at: number): Promise<void> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(t.db);
  await setSchedulerClockOffset(t.db, at - (rows[0] as { now: Date }).now.getTime());
}

const decide = () => decideDueTicks(t.db, { workerId: 'test', limit: 100 });
const def = (name: string, extra: Partial<ScheduleInput> = {}): ScheduleInput => ({ name, expression: 'rate(1 minute)', target: { functionName: 'echo' }, misfirePolicy: { mode: 'all', maxCatchUp: 1000 }, ...extra });
const outcomes = async (name: string) => (await listTicks(t.db, null, name, 1000)).map((x) => x.skipReason ?? x.outcome);

beforeAll(async () => {
  t = await createTestDatabase();
  await createFunction(t.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
});

afterAll(async () => {
  await setSchedulerClockOffset(t.db, 0);
});

describe('decideDueTicks', () => {
  it('records the ticks of a disabled schedule as skipped, and fires again once enabled', async () => {
    const s = await createSchedule(t.db, def('paused', { state: 'DISABLED' }), by);
    const anchor = Math.ceil(s.activeSince.getTime() / 1000) * 1000;
    await setClock(anchor + 2 * MINUTE + 1000);
    await decide();
    expect(await outcomes('paused')).toEqual(['disabled', 'disabled', 'disabled']);
    await updateSchedule(t.db, def('paused'), by);
    await setClock(anchor + 4 * MINUTE + 1000);
    await decide();
    expect((await outcomes('paused')).slice(3)).toContain('fired');
    expect((await outcomes('paused')).slice(0, 3)).toEqual(['disabled', 'disabled', 'disabled']);
  });

  it('an update records the ticks that came due before it and were not decided as skipped (updated)', async () => {
    const s = await createSchedule(t.db, def('changed'), by);
    const anchor = Math.ceil(s.activeSince.getTime() / 1000) * 1000;
    await setClock(anchor + 2 * MINUTE + 1000); // three ticks due, no worker has decided them
    await updateSchedule(t.db, def('changed', { expression: 'rate(1 hour)' }), by);
    expect(await outcomes('changed')).toEqual(['updated', 'updated', 'updated']);
    // the new definition's first tick is the update itself (a rate() without StartDate)
    await setClock(anchor + 3 * MINUTE);
    expect(await decide().then(() => outcomes('changed'))).toEqual(['updated', 'updated', 'updated', 'fired']);
  });

  it('an update that moves EndDate before ticks that came due records those as skipped (end_date), the others as updated', async () => {
    const s = await createSchedule(t.db, def('ending'), by);
    const anchor = Math.ceil(s.activeSince.getTime() / 1000) * 1000;
    await setClock(anchor + 3 * MINUTE + 1000); // four ticks due (0, 1, 2, 3 minutes), none decided
    await updateSchedule(t.db, def('ending', { endDate: new Date(anchor + MINUTE + 30_000) }), by);
    expect(await outcomes('ending')).toEqual(['updated', 'updated', 'end_date', 'end_date']);
  });

  it('a tick whose target does not exist is recorded as skipped (target_missing), with no invocation', async () => {
    const s = await createSchedule(t.db, def('orphan', { target: { functionName: 'no-such-function' } }), by);
    await setClock(Math.ceil(s.activeSince.getTime() / 1000) * 1000 + 1000);
    await decide();
    const [tick] = await listTicks(t.db, null, 'orphan');
    expect(tick).toMatchObject({ outcome: 'skipped', skipReason: 'target_missing', invocationId: null });
  });

  it('a schedule past its EndDate with ActionAfterCompletion DELETE is deleted by the scheduler', async () => {
    const now = Date.now() + 10 * 24 * 60 * MINUTE;
    await setClock(now);
    const start = new Date(Math.ceil(now / MINUTE) * MINUTE);
    await createSchedule(t.db, def('bounded', { startDate: start, endDate: new Date(start.getTime() + 2 * MINUTE), actionAfterCompletion: 'DELETE' }), by);
    await setClock(start.getTime() + 5 * MINUTE);
    await decide();
    expect(await getSchedule(t.db, null, 'bounded')).toBeNull();
    expect(await outcomes('bounded')).toEqual(['fired', 'fired', 'fired']);
    const [last] = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/bounded' });
    expect(last).toMatchObject({ action: 'deleted', actor: 'scheduler' });
  });

  it('a schedule that cannot be decided is put back a minute and does not hold up the others', async () => {
    const now = Date.now() + 20 * 24 * 60 * MINUTE;
    await setClock(now);
    // stored before a rule it breaks existed (here: written around the checks)
    await sql`
      insert into ledger.schedules (id, name, expression, target_function, active_since, decided_through, next_fire_at)
      values (gen_random_uuid(), 'poison', 'cron(nonsense)', 'echo', ${new Date(now)}, ${new Date(now - 1)}, ${new Date(now - MINUTE)})`.execute(t.db);
    const good = await createSchedule(t.db, def('healthy'), by);
    await setClock(Math.ceil(good.activeSince.getTime() / 1000) * 1000 + 1000);
    const errors: string[] = [];
    const r = await decideDueTicks(t.db, { workerId: 'test', limit: 100, onError: (_e, s) => errors.push(s.name) });
    expect(errors).toEqual(['poison']);
    expect(r.fired).toBeGreaterThanOrEqual(1);
    expect(await outcomes('healthy')).toEqual(['fired']);
    const poison = await getSchedule(t.db, null, 'poison');
    expect(poison?.nextFireAt?.getTime()).toBeGreaterThan(now);
    expect(await listTicks(t.db, null, 'poison')).toEqual([]);
  });

  it('the database refuses a second decision of a tick, and tick rows cannot be changed', async () => {
    const [tick] = await listTicks(t.db, null, 'bounded');
    const again = sql`
      insert into ledger.schedule_ticks (schedule_id, schedule_name, group_name, scheduled_time, outcome, skip_reason, decided_at, decided_by)
      values (${tick?.scheduleId}, 'bounded', 'default', ${tick?.scheduledTime}, 'skipped', 'disabled', now(), 'test')`.execute(t.db);
    await expect(again).rejects.toThrow(/duplicate key/);
    // the application role has no UPDATE or DELETE on it, and the owner is stopped by triggers
    await expect(sql`update ledger.schedule_ticks set late = true`.execute(t.db)).rejects.toThrow(/permission denied|append-only/);
    await expect(sql`delete from ledger.schedule_ticks`.execute(t.db)).rejects.toThrow(/permission denied|append-only/);
    const owner = t.open({ role: '' });
    try {
      await expect(sql`update ledger.schedule_ticks set late = true`.execute(owner.db)).rejects.toThrow(/append-only/);
    } finally {
      await owner.close();
    }
  });
});
