// The scheduler in three real worker processes (`invoke-ledger start --role worker`): each
// tick fires exactly one invocation however many workers look, misfire policies after the
// workers were stopped, at() with ActionAfterCompletion DELETE, daylight saving time in two
// zones and flexible windows. Nothing sleeps for minutes: the tests move the scheduler's
// clock (ledger.scheduler_clock) and wait for the tick rows.
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listChanges } from '../../db/changes.ts';
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  listTicks,
  schedulerNow,
  setSchedulerClockOffset,
  type ScheduleInput,
  type TickRecord,
} from '../../db/schedule-store.ts';
import { idempotencyKeyFor } from '../../db/schedules/context.ts';
import { FLEXIBLE_OFFSET_SQL, flexibleOffsetMs } from '../../db/schedules/flexible.ts';
import { DEFAULT_MISFIRE_GRACE_MS } from '../../db/schedules/misfire.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { waitFor } from '../worker/helpers.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const MINUTE = 60_000;
const by = { actor: 'test' };

let t: TestDatabase;
let workers: ServiceProcess[] = [];

async function startWorkers(n: number): Promise<void> {
  workers = await Promise.all(
    Array.from({ length: n }, async () =>
      spawnService('worker', await freePort(), { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: FIXTURES, POLL_INTERVAL_MS: '100', WORKER_LEASE_GRACE_MS: '2000' }),
    ),
  );
}

async function stopWorkers(): Promise<void> {
  await Promise.all(workers.map((w) => endProcess(w)));
  workers = [];
}

/** Sets the scheduler's clock to `at` (the database's clock plus an offset). */
async function setClock(at: Date): Promise<void> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(t.db);
  await setSchedulerClockOffset(t.db, at.getTime() - (rows[0] as { now: Date }).now.getTime());
}

const schedule = (name: string, expression: string, extra: Partial<ScheduleInput> = {}): ScheduleInput => ({
  name,
  expression,
  target: { functionName: 'tick', input: '{"at": "<aws.scheduler.scheduled-time>", "execution": "<aws.scheduler.execution-id>"}' },
  ...extra,
});

async function ticksOf(name: string): Promise<TickRecord[]> {
  return listTicks(t.db, null, name, 10_000);
}

beforeAll(async () => {
  t = await createTestDatabase();
  await startWorkers(3);
}, 120_000);

afterAll(async () => {
  await stopWorkers();
  await setSchedulerClockOffset(t.db, 0);
}, 60_000);

describe('scheduler in three worker processes', () => {
  it('100 ticks of a rate(1 minute) fire exactly 100 invocations, none late', { timeout: 600_000 }, async () => {
    const s = await createSchedule(t.db, schedule('every-minute', 'rate(1 minute)', { misfirePolicy: { mode: 'all', maxCatchUp: 1000 } }), by);
    const anchor = s.activeSince;
    for (let k = 0; k < 100; k++) {
      // one second after tick k: due, and well within the grace period
      await setClock(new Date(Math.ceil(anchor.getTime() / 1000) * 1000 + k * MINUTE + 1000));
      await waitFor(`tick ${k}`, async () => (await ticksOf('every-minute')).length >= k + 1, 50_000);
    }
    await deleteSchedule(t.db, null, 'every-minute', by);
    const ticks = await ticksOf('every-minute');
    expect(ticks).toHaveLength(100);
    expect(ticks.every((x) => x.outcome === 'fired' && !x.late)).toBe(true);
    const { rows } = await sql<{ n: number; keys: number }>`
      select count(*)::int as n, count(distinct idempotency_key)::int as keys from ledger.invocations
      where idempotency_key like ${`schedule:${s.id}:%`}`.execute(t.db);
    expect(rows[0]).toEqual({ n: 100, keys: 100 });
    // the tick rows name exactly those invocations, with the idempotency key of their tick
    const { rows: joined } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.schedule_ticks k join ledger.invocations i on i.id = k.invocation_id
      where k.schedule_id = ${s.id} and i.idempotency_key = 'schedule:' || k.schedule_id || ':' || to_char(k.scheduled_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`.execute(t.db);
    expect(joined[0]?.n).toBe(100);
    expect(idempotencyKeyFor(s.id, ticks[0]?.scheduledTime as Date)).toMatch(/^schedule:/);
    // the function received the Input with the context attributes replaced
    await waitFor('the invocations to finish', async () => {
      const { rows: r } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations where idempotency_key like ${`schedule:${s.id}:%`} and status = 'succeeded'`.execute(t.db);
      return r[0]?.n === 100;
    }, 180_000);
    const { rows: results } = await sql<{ result: { at: string; execution: string } }>`
      select e.data -> 'result' as result from ledger.events e where e.invocation_id = ${ticks[5]?.invocationId} and e.type = 'succeeded'`.execute(t.db);
    expect(results[0]?.result).toEqual({ at: (ticks[5]?.scheduledTime as Date).toISOString().replace('.000Z', 'Z'), execution: ticks[5]?.executionId });
  });

  it('a one-time at() fires once and, with ActionAfterCompletion DELETE, the schedule is gone', { timeout: 120_000 }, async () => {
    const now = await schedulerNow(t.db);
    const when = new Date(Math.ceil(now.getTime() / MINUTE) * MINUTE + 2 * MINUTE);
    const s = await createSchedule(t.db, schedule('once', `at(${when.toISOString().slice(0, 19)})`, { actionAfterCompletion: 'DELETE' }), by);
    expect(s.nextFireAt?.toISOString()).toBe(when.toISOString());
    await setClock(new Date(when.getTime() + 5_000));
    await waitFor('the schedule deleted', async () => (await getSchedule(t.db, null, 'once')) === null, 30_000);
    await setClock(new Date(when.getTime() + 10 * MINUTE));
    const ticks = await ticksOf('once');
    expect(ticks.map((x) => [x.scheduledTime.toISOString(), x.outcome])).toEqual([[when.toISOString(), 'fired']]);
    const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/once' });
    expect(changes.map((c) => [c.action, c.actor])).toEqual([
      ['deleted', 'scheduler'],
      ['created', 'test'],
    ]);
  });

  it('workers stopped for ten ticks apply each misfire policy when they come back', { timeout: 180_000 }, async () => {
    await stopWorkers();
    const policies = { skip: { mode: 'skip' }, once: { mode: 'once' }, all: { mode: 'all', maxCatchUp: 3 } } as const;
    const created = await Promise.all(
      Object.entries(policies).map(([name, misfirePolicy]) => createSchedule(t.db, schedule(`misfire-${name}`, 'rate(1 minute)', { misfirePolicy }), by)),
    );
    const anchor = Math.ceil((created[0] as { activeSince: Date }).activeSince.getTime() / 1000) * 1000;
    await setClock(new Date(anchor + 10 * MINUTE + 30_000));
    await startWorkers(3);
    for (const [name, policy] of Object.entries(policies)) {
      const s = created.find((c) => c.name === `misfire-${name}`);
      const ticks = await waitFor(`${name}: 11 ticks decided`, async () => {
        const list = await ticksOf(`misfire-${name}`);
        return list.length >= 11 ? list : null;
      }, 60_000);
      await deleteSchedule(t.db, null, `misfire-${name}`, by);
      // every tick from the anchor on, once
      const ownAnchor = Math.ceil((s?.activeSince as Date).getTime() / 1000) * 1000;
      expect(ticks.slice(0, 11).map((x) => x.scheduledTime.getTime())).toEqual(Array.from({ length: 11 }, (_, k) => ownAnchor + k * MINUTE));
      const first = ticks.slice(0, 11);
      // missed: more than the grace period past when the worker decided them
      const missed = first.filter((x) => x.decidedAt.getTime() - x.scheduledTime.getTime() > DEFAULT_MISFIRE_GRACE_MS);
      expect(missed.length).toBeGreaterThanOrEqual(10);
      const onTime = first.filter((x) => !missed.includes(x));
      expect(onTime.every((x) => x.outcome === 'fired' && !x.late)).toBe(true);
      const late = missed.filter((x) => x.outcome === 'fired');
      expect(late.every((x) => x.late)).toBe(true);
      const skipped = missed.filter((x) => x.outcome === 'skipped');
      if (policy.mode === 'skip') {
        expect(late).toHaveLength(0);
        expect(skipped.every((x) => x.skipReason === 'misfire_skip')).toBe(true);
      } else if (policy.mode === 'once') {
        expect(late.map((x) => x.scheduledTime)).toEqual([missed.at(-1)?.scheduledTime]);
        expect(skipped.every((x) => x.skipReason === 'misfire_coalesced')).toBe(true);
      } else {
        expect(late.map((x) => x.scheduledTime)).toEqual(missed.slice(-3).map((x) => x.scheduledTime));
        expect(skipped.every((x) => x.skipReason === 'misfire_cap')).toBe(true);
      }
      expect(late.length + skipped.length).toBe(missed.length);
    }
  });

  it('daylight saving time in New York and Berlin: a skipped local time does not fire, a repeated one fires once', { timeout: 120_000 }, async () => {
    const catchUp = { mode: 'all', maxCatchUp: 1000 } as const;
    await setClock(new Date('2026-03-07T00:00:00Z'));
    await createSchedule(t.db, schedule('dst-ny', 'cron(30 2 * * ? *)', { timezone: 'America/New_York', misfirePolicy: catchUp }), by);
    await setClock(new Date('2026-03-10T00:00:00Z'));
    const ny = await waitFor('New York ticks', async () => {
      const list = await ticksOf('dst-ny');
      return list.length >= 2 ? list : null;
    }, 30_000);
    await deleteSchedule(t.db, null, 'dst-ny', by);
    expect(ny.map((x) => x.scheduledTime.toISOString())).toEqual(['2026-03-07T07:30:00.000Z', '2026-03-09T06:30:00.000Z']);

    await setClock(new Date('2026-10-24T23:30:00Z'));
    await createSchedule(t.db, schedule('dst-berlin', 'cron(0 * * * ? *)', { timezone: 'Europe/Berlin', misfirePolicy: catchUp }), by);
    await setClock(new Date('2026-10-25T03:30:00Z'));
    const berlin = await waitFor('Berlin ticks', async () => {
      const list = await ticksOf('dst-berlin');
      return list.length >= 3 ? list : null;
    }, 30_000);
    await deleteSchedule(t.db, null, 'dst-berlin', by);
    // 02:00 CEST, then 03:00 CET and 04:00 CET: 02:00 CET (01:00Z) does not run again
    expect(berlin.map((x) => x.scheduledTime.toISOString())).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z']);
    expect([...ny, ...berlin].every((x) => x.outcome === 'fired')).toBe(true);
  });

  it('a flexible window fires each tick at its deterministic offset, the same in SQL', { timeout: 120_000 }, async () => {
    const start = new Date(Math.ceil(Date.now() / MINUTE) * MINUTE + 24 * 60 * MINUTE);
    await setClock(start);
    const s = await createSchedule(
      t.db,
      schedule('flexible', 'rate(1 minute)', { flexibleTimeWindow: { mode: 'FLEXIBLE', maximumWindowInMinutes: 5 }, misfirePolicy: { mode: 'all', maxCatchUp: 1000 } }),
      by,
    );
    const anchor = Math.ceil(s.activeSince.getTime() / 1000) * 1000;
    // step through 30 ticks half a minute at a time: a tick fires only once its fire time has come
    for (let k = 1; k <= 70; k++) await setClock(new Date(anchor + k * 30_000)).then(() => new Promise((r) => setTimeout(r, 150)));
    await setClock(new Date(anchor + 40 * MINUTE));
    const ticks = await waitFor('30 flexible ticks', async () => {
      const list = await ticksOf('flexible');
      return list.length >= 30 ? list.slice(0, 30) : null;
    }, 30_000);
    await deleteSchedule(t.db, null, 'flexible', by);
    for (const x of ticks) {
      expect(x.outcome).toBe('fired');
      expect(x.flexibleOffsetMs).toBe(flexibleOffsetMs(s.id, x.scheduledTime, s.flexibleTimeWindow));
      expect(x.fireAt?.getTime()).toBe(x.scheduledTime.getTime() + x.flexibleOffsetMs);
      // never before its fire time
      expect(x.decidedAt.getTime()).toBeGreaterThanOrEqual(x.fireAt?.getTime() as number);
      const { rows } = await sql<{ offset_ms: string }>`${sql.raw(FLEXIBLE_OFFSET_SQL.replace('$1', `'${s.id}'`).replace('$2', `'${x.scheduledTime.toISOString()}'`).replace('$3', '5'))}`.execute(t.db);
      expect(Number(rows[0]?.offset_ms)).toBe(x.flexibleOffsetMs);
    }
    // spread over the window, not bunched at its start
    expect(new Set(ticks.map((x) => Math.floor(x.flexibleOffsetMs / MINUTE))).size).toBeGreaterThanOrEqual(4);
  });

  it('an auditor lists every tick of a schedule in SQL', async () => {
    const rows = await t.db.transaction().execute(async (tx) => {
      await sql`set local role ledger_auditor`.execute(tx);
      const r = await sql<{ n: number; fired: number }>`
        select count(*)::int as n, count(*) filter (where outcome = 'fired' and invocation_status is not null)::int as fired
        from audit.schedule_ticks where schedule_name = 'every-minute'`.execute(tx);
      // the auditor reads the view, not the tables behind it
      await expect(sql`select 1 from ledger.schedule_ticks`.execute(tx)).rejects.toThrow(/permission denied/);
      return r.rows;
    });
    expect(rows[0]).toEqual({ n: 100, fired: 100 });
  });
});
