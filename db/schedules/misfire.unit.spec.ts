import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScheduleValidationError } from './expression.ts';
import { flexibleOffsetMs } from './flexible.ts';
import { checkMisfirePolicy, DEFAULT_MISFIRE_GRACE_MS, planDueTicks, type DuePlan, type MisfirePolicy } from './misfire.ts';
import { compileSchedule, ticksBetween, type Schedule } from './ticks.ts';

const Z = (text: string) => new Date(text);
const iso = (d: Date) => d.toISOString().replace('.000Z', 'Z');
const every5 = compileSchedule({ id: 'sched-1', expression: 'rate(5 minutes)', startDate: Z('2026-01-01T00:00:00Z') });

const summary = (plan: DuePlan) => ({
  run: plan.run.map((r) => `${iso(r.scheduledTime)}${r.late ? ' late' : ''}`),
  skipped: plan.skipped.map((s) => `${iso(s.scheduledTime)} ${s.reason}`),
  resumeAfter: plan.resumeAfter && iso(plan.resumeAfter),
});

describe('planDueTicks', () => {
  // the last tick decided was 00:00; workers were down until 00:21:30 (ticks 00:05 … 00:20 due)
  const down = { after: Z('2026-01-01T00:00:00Z'), now: Z('2026-01-01T00:21:30Z') };

  it('once (the default): one late run for the most recent missed tick, the older ones coalesced into it', () => {
    expect(summary(planDueTicks(every5, down))).toEqual({
      run: ['2026-01-01T00:20:00Z late'],
      skipped: ['2026-01-01T00:05:00Z misfire_coalesced', '2026-01-01T00:10:00Z misfire_coalesced', '2026-01-01T00:15:00Z misfire_coalesced'],
      resumeAfter: null,
    });
  });

  it('skip: nothing missed runs', () => {
    expect(summary(planDueTicks(every5, { ...down, policy: { mode: 'skip' } }))).toEqual({
      run: [],
      skipped: ['00:05', '00:10', '00:15', '00:20'].map((t) => `2026-01-01T${t}:00Z misfire_skip`),
      resumeAfter: null,
    });
  });

  it('all with a cap: the most recent missed ticks run late, oldest first; older ones are skipped', () => {
    expect(summary(planDueTicks(every5, { ...down, policy: { mode: 'all', maxCatchUp: 3 } }))).toEqual({
      run: ['2026-01-01T00:10:00Z late', '2026-01-01T00:15:00Z late', '2026-01-01T00:20:00Z late'],
      skipped: ['2026-01-01T00:05:00Z misfire_cap'],
      resumeAfter: null,
    });
    expect(summary(planDueTicks(every5, { ...down, policy: { mode: 'all', maxCatchUp: 100 } })).run).toHaveLength(4);
  });

  it('a tick within the grace period is on time, whatever the policy', () => {
    const now = Z('2026-01-01T00:21:00Z'); // 00:20 fired 60 s ago: exactly the grace
    for (const policy of [{ mode: 'skip' }, { mode: 'once' }, { mode: 'all', maxCatchUp: 1 }] as MisfirePolicy[]) {
      const plan = planDueTicks(every5, { after: Z('2026-01-01T00:00:00Z'), now, policy });
      expect(plan.run.at(-1)).toMatchObject({ scheduledTime: Z('2026-01-01T00:20:00Z'), late: false });
    }
    // once: the on-time tick runs, and the missed ones still get their one catch-up run
    expect(summary(planDueTicks(every5, { after: Z('2026-01-01T00:00:00Z'), now }))).toEqual({
      run: ['2026-01-01T00:15:00Z late', '2026-01-01T00:20:00Z'],
      skipped: ['2026-01-01T00:05:00Z misfire_coalesced', '2026-01-01T00:10:00Z misfire_coalesced'],
      resumeAfter: null,
    });
  });

  it('nothing is due before its scheduled time, and a normal poll just runs the tick', () => {
    expect(summary(planDueTicks(every5, { after: Z('2026-01-01T00:05:00Z'), now: Z('2026-01-01T00:09:59Z') }))).toEqual({ run: [], skipped: [], resumeAfter: null });
    expect(summary(planDueTicks(every5, { after: Z('2026-01-01T00:05:00Z'), now: Z('2026-01-01T00:10:02Z') }))).toEqual({
      run: ['2026-01-01T00:10:00Z'],
      skipped: [],
      resumeAfter: null,
    });
  });

  it('a flexible tick is planned with its fire time and is late only when that fire time is missed', () => {
    const flexible = compileSchedule({
      id: 'sched-flex',
      expression: 'rate(5 minutes)',
      startDate: Z('2026-01-01T00:00:00Z'),
      flexibleTimeWindow: { mode: 'FLEXIBLE', maximumWindowInMinutes: 15 },
    });
    const now = Z('2026-01-01T00:10:30Z');
    const plan = planDueTicks(flexible, { after: Z('2025-12-31T23:59:00Z'), now, policy: { mode: 'all', maxCatchUp: 10 } });
    const ticks = ['2026-01-01T00:00:00Z', '2026-01-01T00:05:00Z', '2026-01-01T00:10:00Z'].map(Z);
    expect(plan.run.map((r) => r.scheduledTime)).toEqual(ticks);
    for (const r of plan.run) {
      const offset = flexibleOffsetMs('sched-flex', r.scheduledTime, flexible.flexibleTimeWindow);
      expect(r.flexibleOffsetMs).toBe(offset);
      expect(r.fireAt.getTime()).toBe(r.scheduledTime.getTime() + offset);
      expect(r.late).toBe(now.getTime() - r.fireAt.getTime() > DEFAULT_MISFIRE_GRACE_MS);
    }
  });

  it('pages a long outage and resumes where it stopped, with the same decisions as one pass', () => {
    const after = Z('2026-01-01T00:00:00Z');
    const now = Z('2026-01-02T00:00:30Z'); // a day of 5-minute ticks: 288 due
    const whole = planDueTicks(every5, { after, now, policy: { mode: 'all', maxCatchUp: 5 }, pageSize: 100_000 });
    const pages: DuePlan[] = [];
    let cursor: Date | null = after;
    while (cursor) {
      const page = planDueTicks(every5, { after: cursor, now, policy: { mode: 'all', maxCatchUp: 5 }, pageSize: 50 });
      pages.push(page);
      cursor = page.resumeAfter;
    }
    expect(pages.length).toBeGreaterThan(4);
    expect({ run: pages.flatMap((p) => p.run), skipped: pages.flatMap((p) => p.skipped) }).toEqual({ run: whole.run, skipped: whole.skipped });
    // the five most recent missed ticks, late, and midnight's, on time (30 s ago)
    expect(whole.run.map((r) => `${iso(r.scheduledTime)}${r.late ? ' late' : ''}`)).toEqual(
      ['23:35', '23:40', '23:45', '23:50', '23:55'].map((t) => `2026-01-01T${t}:00Z late`).concat(['2026-01-02T00:00:00Z']),
    );
    expect(whole.skipped).toHaveLength(288 - 6);
  });

  it('decides every due tick exactly once, by the policy, however it is paged', () => {
    const policy = fc.oneof(
      fc.constant<MisfirePolicy>({ mode: 'skip' }),
      fc.constant<MisfirePolicy>({ mode: 'once' }),
      fc.integer({ min: 1, max: 40 }).map((n): MisfirePolicy => ({ mode: 'all', maxCatchUp: n })),
    );
    const scheduleArb = fc.oneof(
      fc.constantFrom('rate(1 minute)', 'rate(7 minutes)', 'cron(0/3 * * * ? *)', 'cron(*/10 1-5,22 ? * MON-FRI *)').map((expression) => ({ expression, window: 0 })),
      fc.tuple(fc.constantFrom('rate(2 minutes)', 'cron(* * * * ? *)'), fc.integer({ min: 1, max: 90 })).map(([expression, window]) => ({ expression, window })),
    );
    fc.assert(
      fc.property(
        scheduleArb,
        policy,
        fc.integer({ min: 0, max: 3 * 24 * 60 }),
        fc.integer({ min: 0, max: 6 * 60 }),
        fc.integer({ min: 0, max: 180_000 }),
        fc.integer({ min: 1, max: 400 }),
        ({ expression, window }, pol, startMinutes, downMinutes, graceMs, pageSize) => {
          const s: Schedule = compileSchedule({
            id: `s-${expression}-${window}`,
            expression,
            timezone: 'Europe/Berlin',
            startDate: Z('2026-03-27T00:00:00Z'),
            flexibleTimeWindow: window ? { mode: 'FLEXIBLE', maximumWindowInMinutes: window } : null,
          });
          const after = new Date(Date.parse('2026-03-27T00:00:00Z') + startMinutes * 60_000);
          const now = new Date(after.getTime() + downMinutes * 60_000 + 12_345);
          const due = ticksBetween(s, after, now, 1_000_000).map((d) => d.getTime());
          const run = [];
          const skipped = [];
          let cursor: Date | null = after;
          for (let guard = 0; cursor; guard++) {
            expect(guard).toBeLessThan(10_000);
            const page: DuePlan = planDueTicks(s, { after: cursor, now, policy: pol, graceMs, pageSize });
            run.push(...page.run);
            skipped.push(...page.skipped);
            if (page.resumeAfter) expect(page.resumeAfter.getTime()).toBeGreaterThan(cursor.getTime());
            cursor = page.resumeAfter;
          }
          // every due tick exactly once, in order
          const decided = [...run.map((r) => r.scheduledTime.getTime()), ...skipped.map((k) => k.scheduledTime.getTime())].sort((a, b) => a - b);
          expect(decided).toEqual(due);
          // late ⇔ missed: fire time more than the grace period before now
          const missed = (t: number) => now.getTime() - (t + flexibleOffsetMs(s.id, new Date(t), s.flexibleTimeWindow)) > graceMs;
          for (const r of run) expect(r.late).toBe(missed(r.scheduledTime.getTime()));
          for (const k of skipped) expect(missed(k.scheduledTime.getTime())).toBe(true);
          // the policy: how many missed ticks run, and that they are the most recent ones
          const missedTicks = due.filter(missed);
          const keep = pol.mode === 'skip' ? 0 : pol.mode === 'once' ? 1 : pol.maxCatchUp;
          expect(run.filter((r) => r.late).map((r) => r.scheduledTime.getTime())).toEqual(missedTicks.slice(Math.max(0, missedTicks.length - keep)));
          const reason = pol.mode === 'skip' ? 'misfire_skip' : pol.mode === 'once' ? 'misfire_coalesced' : 'misfire_cap';
          for (const k of skipped) expect(k.reason).toBe(reason);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('checkMisfirePolicy', () => {
  it('defaults to once and accepts the three modes', () => {
    expect(checkMisfirePolicy(undefined)).toEqual({ mode: 'once' });
    expect(checkMisfirePolicy({ mode: 'skip' })).toEqual({ mode: 'skip' });
    expect(checkMisfirePolicy({ mode: 'all', maxCatchUp: 24 })).toEqual({ mode: 'all', maxCatchUp: 24 });
  });

  it.each([
    [{ mode: 'sometimes' }, 'MisfirePolicy.mode', 'must be skip, once or all'],
    [{ mode: 'all' }, 'MisfirePolicy.maxCatchUp', 'must be a whole number 1–1000 with mode all'],
    [{ mode: 'all', maxCatchUp: 0 }, 'MisfirePolicy.maxCatchUp', '1–1000'],
    [{ mode: 'all', maxCatchUp: 1.5 }, 'MisfirePolicy.maxCatchUp', '1–1000'],
    [{ mode: 'once', maxCatchUp: 3 }, 'MisfirePolicy.maxCatchUp', 'only allowed with mode all'],
    ['once', 'MisfirePolicy', 'must be an object'],
  ])('refuses %j', (input, field, reason) => {
    try {
      checkMisfirePolicy(input);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ScheduleValidationError);
      expect((e as ScheduleValidationError).field).toBe(field);
      expect((e as ScheduleValidationError).reason).toContain(reason);
    }
  });
});
