import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bruteForceTicks, bruteWall, cronCase, matchesWall, transitions, wallTimesOfDay } from '../../test/helpers/schedule-oracle.ts';
import { ScheduleValidationError } from './expression.ts';
import { checkScheduleForWrite, compileSchedule, nextTicks, ticksBetween, type ScheduleDefinition } from './ticks.ts';

const Z = (text: string) => new Date(text);
const isoList = (ticks: Date[]) => ticks.map((t) => t.toISOString().replace('.000Z', 'Z'));
const schedule = (expression: string, extra: Partial<ScheduleDefinition> = {}) => compileSchedule({ id: 'sched-1', expression, ...extra });
const next = (expression: string, after: string, count: number, extra: Partial<ScheduleDefinition> = {}) =>
  isoList(nextTicks(schedule(expression, extra), Z(after), count));

describe('the examples of the EventBridge documentation (UTC)', () => {
  // 2026-01-01 is a Thursday
  it.each([
    ['cron(0 10 * * ? *)', '2026-01-01T00:00:00Z', ['2026-01-01T10:00:00Z', '2026-01-02T10:00:00Z', '2026-01-03T10:00:00Z']],
    ['cron(15 12 * * ? *)', '2026-01-01T12:15:00Z', ['2026-01-02T12:15:00Z', '2026-01-03T12:15:00Z', '2026-01-04T12:15:00Z']],
    ['cron(0 18 ? * MON-FRI *)', '2026-01-01T00:00:00Z', ['2026-01-01T18:00:00Z', '2026-01-02T18:00:00Z', '2026-01-05T18:00:00Z']],
    ['cron(0 8 1 * ? *)', '2026-01-01T08:00:00Z', ['2026-02-01T08:00:00Z', '2026-03-01T08:00:00Z', '2026-04-01T08:00:00Z']],
    ['cron(0/15 * * * ? *)', '2026-01-01T00:00:00Z', ['2026-01-01T00:15:00Z', '2026-01-01T00:30:00Z', '2026-01-01T00:45:00Z', '2026-01-01T01:00:00Z']],
    ['cron(0/10 * ? * MON-FRI *)', '2026-01-02T23:45:00Z', ['2026-01-02T23:50:00Z', '2026-01-05T00:00:00Z', '2026-01-05T00:10:00Z']],
    ['cron(0/5 8-17 ? * MON-FRI *)', '2026-01-02T17:50:00Z', ['2026-01-02T17:55:00Z', '2026-01-05T08:00:00Z', '2026-01-05T08:05:00Z']],
    ['cron(0 9 ? * 2#1 *)', '2026-01-01T00:00:00Z', ['2026-01-05T09:00:00Z', '2026-02-02T09:00:00Z', '2026-03-02T09:00:00Z']],
    ['cron(15 10 ? * 6L 2022-2023)', '2022-01-01T00:00:00Z', ['2022-01-28T10:15:00Z', '2022-02-25T10:15:00Z', '2022-03-25T10:15:00Z']],
    ['cron(15 10 ? * 6L 2022-2023)', '2023-12-01T00:00:00Z', ['2023-12-29T10:15:00Z']],
    ['cron(0 0 L * ? *)', '2026-01-31T00:00:00Z', ['2026-02-28T00:00:00Z', '2026-03-31T00:00:00Z', '2026-04-30T00:00:00Z']],
    ['cron(0 0 L 2 ? *)', '2027-03-01T00:00:00Z', ['2028-02-29T00:00:00Z', '2029-02-28T00:00:00Z']],
    ['cron(0 0 LW * ? *)', '2026-01-01T00:00:00Z', ['2026-01-30T00:00:00Z', '2026-02-27T00:00:00Z', '2026-03-31T00:00:00Z']],
    // 1 August 2026 is a Saturday: the nearest weekday within the month is Monday the 3rd
    ['cron(0 0 1W * ? *)', '2026-07-15T00:00:00Z', ['2026-08-03T00:00:00Z', '2026-09-01T00:00:00Z', '2026-10-01T00:00:00Z', '2026-11-02T00:00:00Z']],
    // 31 May 2026 is a Sunday: Friday the 29th; months without a 31st do not fire
    ['cron(0 0 31W * ? *)', '2026-04-01T00:00:00Z', ['2026-05-29T00:00:00Z', '2026-07-31T00:00:00Z', '2026-08-31T00:00:00Z']],
    ['cron(0 12 ? * L *)', '2026-01-01T00:00:00Z', ['2026-01-03T12:00:00Z', '2026-01-10T12:00:00Z']],
    ['cron(0 12 ? * 1 *)', '2026-01-01T00:00:00Z', ['2026-01-04T12:00:00Z', '2026-01-11T12:00:00Z']],
    ['cron(0 12 ? * 6#5 *)', '2026-01-01T00:00:00Z', ['2026-01-30T12:00:00Z', '2026-05-29T12:00:00Z', '2026-07-31T12:00:00Z']],
    ['cron(0 0 29 2 ? *)', '2026-01-01T00:00:00Z', ['2028-02-29T00:00:00Z', '2032-02-29T00:00:00Z']],
  ])('%s after %s', (expression, after, expected) => {
    expect(next(expression, after, expected.length + (expected.length === 1 ? 1 : 0))).toEqual(expected);
  });

  it('rate(5 minutes), rate(1 hour), rate(7 days) count from StartDate', () => {
    const startDate = Z('2026-01-01T09:00:00Z');
    expect(next('rate(5 minutes)', '2026-01-01T00:00:00Z', 3, { startDate })).toEqual(['2026-01-01T09:00:00Z', '2026-01-01T09:05:00Z', '2026-01-01T09:10:00Z']);
    expect(next('rate(1 hour)', '2026-01-01T09:00:00Z', 2, { startDate })).toEqual(['2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z']);
    expect(next('rate(7 days)', '2026-01-01T09:30:00Z', 2, { startDate })).toEqual(['2026-01-08T09:00:00Z', '2026-01-15T09:00:00Z']);
  });

  it('a never-matching cron ends instead of searching forever', () => {
    expect(next('cron(0 0 31 2 ? *)', '2026-01-01T00:00:00Z', 3)).toEqual([]);
    expect(next('cron(0 0 30 FEB ? *)', '2026-01-01T00:00:00Z', 3)).toEqual([]);
    expect(next('cron(0 0 * * ? 2199)', '2199-12-31T00:00:00Z', 3)).toEqual([]);
  });
});

describe('time zones and daylight saving time', () => {
  const zoneCase = (zone: string, expression: string, after: string, expected: string[]) => {
    expect(next(expression, after, expected.length, { timezone: zone })).toEqual(expected);
    // nothing else in between: the tick after the last expected one is later still
    const following = nextTicks(schedule(expression, { timezone: zone }), Z(after), expected.length + 1);
    expect(isoList(following).slice(0, expected.length)).toEqual(expected);
  };

  describe('America/New_York (-5 / -4; 2026-03-08 02:00 → 03:00, 2026-11-01 02:00 → 01:00)', () => {
    it('skips a daily time in the spring-forward gap', () => {
      zoneCase('America/New_York', 'cron(30 2 * * ? *)', '2026-03-07T00:00:00Z', ['2026-03-07T07:30:00Z', '2026-03-09T06:30:00Z', '2026-03-10T06:30:00Z']);
    });
    it('runs a daily time in the repeated hour once, at its first occurrence', () => {
      zoneCase('America/New_York', 'cron(30 1 * * ? *)', '2026-10-31T00:00:00Z', ['2026-10-31T05:30:00Z', '2026-11-01T05:30:00Z', '2026-11-02T06:30:00Z']);
    });
    it('runs an interval schedule through the repeated hour once', () => {
      zoneCase('America/New_York', 'cron(0/30 * * * ? *)', '2026-11-01T04:45:00Z', [
        '2026-11-01T05:00:00Z', // 01:00 EDT
        '2026-11-01T05:30:00Z', // 01:30 EDT; 01:00 and 01:30 EST do not run again
        '2026-11-01T07:00:00Z', // 02:00 EST
        '2026-11-01T07:30:00Z',
      ]);
    });
    it('runs an interval schedule across the gap without the missing hour', () => {
      zoneCase('America/New_York', 'cron(0/30 * * * ? *)', '2026-03-08T06:15:00Z', ['2026-03-08T06:30:00Z', '2026-03-08T07:00:00Z', '2026-03-08T07:30:00Z']);
    });
    it('a schedule created during the second pass of the repeated hour does not rerun it', () => {
      // 06:10Z is 01:10 EST, the second 01:10 of the night: 01:30 has already happened (in EDT)
      zoneCase('America/New_York', 'cron(30 1 * * ? *)', '2026-11-01T06:10:00Z', ['2026-11-02T06:30:00Z']);
    });
  });

  describe('Europe/Berlin (+1 / +2; 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00)', () => {
    it('skips 02:30 on the spring-forward day', () => {
      zoneCase('Europe/Berlin', 'cron(30 2 * * ? *)', '2026-03-28T00:00:00Z', ['2026-03-28T01:30:00Z', '2026-03-30T00:30:00Z']);
    });
    it('runs 02:30 once on the fall-back day', () => {
      zoneCase('Europe/Berlin', 'cron(30 2 * * ? *)', '2026-10-24T00:00:00Z', ['2026-10-24T00:30:00Z', '2026-10-25T00:30:00Z', '2026-10-26T01:30:00Z']);
    });
    it('runs hourly through the fall-back night once per wall hour', () => {
      zoneCase('Europe/Berlin', 'cron(0 * * * ? *)', '2026-10-24T23:30:00Z', ['2026-10-25T00:00:00Z', '2026-10-25T02:00:00Z', '2026-10-25T03:00:00Z']);
    });
  });

  describe('Australia/Lord_Howe (+10:30 / +11, a 30-minute shift)', () => {
    it('runs 01:45 once when 02:00 falls back to 01:30 (2026-04-05)', () => {
      zoneCase('Australia/Lord_Howe', 'cron(45 1 * * ? *)', '2026-04-03T00:00:00Z', ['2026-04-03T14:45:00Z', '2026-04-04T14:45:00Z', '2026-04-05T15:15:00Z']);
    });
    it('skips 02:15 when 02:00 springs to 02:30 (2026-10-04), and keeps 02:30 and 02:45', () => {
      zoneCase('Australia/Lord_Howe', 'cron(15 2 * * ? *)', '2026-10-02T00:00:00Z', ['2026-10-02T15:45:00Z', '2026-10-04T15:15:00Z']);
      zoneCase('Australia/Lord_Howe', 'cron(0/15 2 * * ? *)', '2026-10-03T12:00:00Z', ['2026-10-03T15:30:00Z', '2026-10-03T15:45:00Z', '2026-10-04T15:00:00Z']);
    });
  });

  describe('Europe/London (+0 / +1; 2026-03-29 01:00 → 02:00, 2026-10-25 02:00 → 01:00)', () => {
    it('skips 01:30 in spring and runs it once in autumn', () => {
      zoneCase('Europe/London', 'cron(30 1 * * ? *)', '2026-03-28T00:00:00Z', ['2026-03-28T01:30:00Z', '2026-03-30T00:30:00Z']);
      zoneCase('Europe/London', 'cron(30 1 * * ? *)', '2026-10-24T00:00:00Z', ['2026-10-24T00:30:00Z', '2026-10-25T00:30:00Z', '2026-10-26T01:30:00Z']);
    });
  });

  it("AWS's own example, cron(30 2 * * ? *) in America/Los_Angeles", () => {
    zoneCase('America/Los_Angeles', 'cron(30 2 * * ? *)', '2026-03-07T00:00:00Z', ['2026-03-07T10:30:00Z', '2026-03-09T09:30:00Z']);
    zoneCase('America/Los_Angeles', 'cron(30 2 * * ? *)', '2026-10-31T00:00:00Z', ['2026-10-31T09:30:00Z', '2026-11-01T10:30:00Z', '2026-11-02T10:30:00Z']);
  });

  it('evaluates cron in UTC when no zone is given', () => {
    expect(schedule('cron(0 10 * * ? *)').timezone).toBe('UTC');
    expect(next('cron(0 10 * * ? *)', '2026-07-01T00:00:00Z', 1)).toEqual(['2026-07-01T10:00:00Z']);
  });

  it('rate(1 day) stays 24 hours apart across a change of the clocks', () => {
    const ticks = nextTicks(schedule('rate(1 day)', { timezone: 'America/New_York', startDate: Z('2026-03-07T12:00:00Z') }), Z('2026-03-07T00:00:00Z'), 3);
    expect(isoList(ticks)).toEqual(['2026-03-07T12:00:00Z', '2026-03-08T12:00:00Z', '2026-03-09T12:00:00Z']);
  });
});

describe('at()', () => {
  it('fires once, at the local time in the zone', () => {
    expect(next('at(2026-05-01T09:00:00)', '2026-01-01T00:00:00Z', 3, { timezone: 'Europe/Berlin' })).toEqual(['2026-05-01T07:00:00Z']);
    expect(next('at(2026-05-01T09:00:00)', '2026-05-01T07:00:00Z', 3, { timezone: 'Europe/Berlin' })).toEqual([]);
    expect(next('at(2022-11-20T13:00:00)', '2022-01-01T00:00:00Z', 3, { timezone: 'America/Los_Angeles' })).toEqual(['2022-11-20T21:00:00Z']);
  });

  it('ignores StartDate and EndDate, as AWS does', () => {
    const bounds = { startDate: Z('2027-01-01T00:00:00Z'), endDate: Z('2027-01-02T00:00:00Z') };
    expect(next('at(2026-05-01T09:00:00)', '2026-01-01T00:00:00Z', 1, bounds)).toEqual(['2026-05-01T09:00:00Z']);
  });

  it('a repeated local time means its first occurrence', () => {
    expect(next('at(2026-11-01T01:30:00)', '2026-01-01T00:00:00Z', 1, { timezone: 'America/New_York' })).toEqual(['2026-11-01T05:30:00Z']);
  });

  it('refuses a local time the clocks skip when the schedule is written; stored, it never fires', () => {
    const gap = schedule('at(2026-03-08T02:30:00)', { timezone: 'America/New_York' });
    const write = () => checkScheduleForWrite(gap, Z('2026-01-01T00:00:00Z'));
    expect(write).toThrow(ScheduleValidationError);
    expect(write).toThrow('Invalid ScheduleExpression at(2026-03-08T02:30:00): 2026-03-08T02:30:00 does not exist in America/New_York: the clocks skip it for daylight saving time');
    expect(nextTicks(gap, Z('2026-01-01T00:00:00Z'), 3)).toEqual([]);
    expect(() => checkScheduleForWrite(schedule('at(2026-03-08T03:30:00)', { timezone: 'America/New_York' }), Z('2026-01-01T00:00:00Z'))).not.toThrow();
  });
});

describe('StartDate and EndDate', () => {
  it('bound cron ticks, both inclusive', () => {
    const bounds = { startDate: Z('2026-01-02T10:00:00Z'), endDate: Z('2026-01-04T10:00:00Z') };
    expect(next('cron(0 10 * * ? *)', '2026-01-01T00:00:00Z', 10, bounds)).toEqual(['2026-01-02T10:00:00Z', '2026-01-03T10:00:00Z', '2026-01-04T10:00:00Z']);
  });

  it('bound rate ticks; without StartDate rate counts from when the schedule became active, on whole seconds', () => {
    expect(next('rate(10 minutes)', '2026-01-01T00:00:00Z', 10, { activeSince: Z('2026-01-01T08:00:00.250Z'), endDate: Z('2026-01-01T08:30:01Z') })).toEqual([
      '2026-01-01T08:00:01Z',
      '2026-01-01T08:10:01Z',
      '2026-01-01T08:20:01Z',
      '2026-01-01T08:30:01Z',
    ]);
    expect(() => schedule('rate(10 minutes)')).toThrow('rate() without StartDate needs activeSince');
  });

  it('EndDate must come after StartDate', () => {
    const make = () => schedule('cron(0 10 * * ? *)', { startDate: Z('2026-02-01T00:00:00Z'), endDate: Z('2026-01-01T00:00:00Z') });
    expect(make).toThrow(ScheduleValidationError);
    expect(make).toThrow('Invalid EndDate 2026-01-01T00:00:00.000Z: must be after StartDate (2026-02-01T00:00:00.000Z)');
    expect(() => schedule('cron(0 10 * * ? *)', { startDate: new Date(Number.NaN) })).toThrow('Invalid StartDate Invalid Date: must be a valid timestamp');
  });

  it('on write, a recurring StartDate may be at most 5 minutes in the past', () => {
    const now = Z('2026-06-01T12:00:00Z');
    expect(() => checkScheduleForWrite(schedule('rate(1 hour)', { startDate: Z('2026-06-01T11:55:00Z') }), now)).not.toThrow();
    expect(() => checkScheduleForWrite(schedule('rate(1 hour)', { startDate: Z('2026-06-01T11:54:59Z') }), now)).toThrow('cannot be earlier than 5 minutes ago');
    expect(() => checkScheduleForWrite(schedule('at(2026-01-01T00:00:00)', { startDate: Z('2020-01-01T00:00:00Z') }), now)).not.toThrow();
  });

  it('validates the zone and the flexible window', () => {
    expect(() => schedule('cron(0 10 * * ? *)', { timezone: 'Nowhere/Land' })).toThrow('Invalid ScheduleExpressionTimezone Nowhere/Land');
    expect(() => schedule('cron(0 10 * * ? *)', { flexibleTimeWindow: { mode: 'FLEXIBLE', maximumWindowInMinutes: 0 } })).toThrow(
      'Invalid FlexibleTimeWindow.MaximumWindowInMinutes 0: must be a whole number of minutes 1–1440',
    );
  });
});

// --- properties -------------------------------------------------------------------------

const ZONES = [
  'UTC',
  'America/New_York',
  'Europe/Berlin',
  'Australia/Lord_Howe', // 30-minute shift
  'Europe/London',
  'Antarctica/Troll', // 2-hour shift
  'Pacific/Chatham', // +12:45 / +13:45
  'America/St_Johns', // -3:30 / -2:30
  'Africa/Casablanca', // the clocks go back for Ramadan
  'Asia/Kathmandu', // +5:45, no DST
  'America/Santiago', // changes at midnight
  'America/Sao_Paulo', // had DST until 2019
  'Pacific/Apia', // skipped 30 December 2011
];
const YEAR_MS = 365.25 * 86_400_000;
const TRANSITIONS = ZONES.flatMap((zone) =>
  [2026, ...(zone === 'America/Sao_Paulo' ? [2018] : []), ...(zone === 'Pacific/Apia' ? [2011] : [])].flatMap((y) =>
    transitions(zone, Date.UTC(y, 0, 1), Date.UTC(y + 1, 0, 1)).map((t) => ({ zone, t })),
  ),
);

describe('properties', () => {
  it('knows enough real transitions to test around', () => {
    expect(TRANSITIONS.length).toBeGreaterThan(20);
  });

  it('around a change of the clocks, cron ticks are exactly the first occurrences of the matching wall times (brute force)', () => {
    fc.assert(
      fc.property(
        cronCase({ years: [2010, 2030], dense: true }),
        fc.constantFrom(...TRANSITIONS),
        fc.integer({ min: -20 * 60, max: 8 * 60 }),
        ({ text, meaning }, { zone, t }, minutes) => {
          const after = t + minutes * 60_000 + 17_000; // not on a whole minute
          const until = after + 24 * 3_600_000;
          const s = schedule(text, { timezone: zone });
          const actual = ticksBetween(s, new Date(after), new Date(until), 100_000).map((d) => d.getTime());
          expect(actual).toEqual(bruteForceTicks(meaning, zone, after, until));
        },
      ),
      { numRuns: 120 },
    );
  });

  it('in UTC, cron ticks are exactly the matching wall times, day by day (L, W, #, names, steps, years)', () => {
    fc.assert(
      fc.property(cronCase({ years: [2024, 2030] }), fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2030, 0, 1) }), ({ text, meaning }, after) => {
        const count = 25;
        const horizon = after + 3 * YEAR_MS;
        const expected: number[] = [];
        const first = new Date(after);
        for (let day = Date.UTC(first.getUTCFullYear(), first.getUTCMonth(), first.getUTCDate()); day <= horizon && expected.length < count; day += 86_400_000) {
          const d = new Date(day);
          for (const w of wallTimesOfDay(meaning, d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate())) {
            if (w > after && w <= horizon && expected.length < count) expected.push(w);
          }
        }
        const actual = nextTicks(schedule(text), new Date(after), count)
          .map((x) => x.getTime())
          .filter((x) => x <= horizon);
        expect(actual).toEqual(expected);
      }),
      { numRuns: 400 },
    );
  });

  it('in any zone and year, ticks increase, stay in bounds, match the expression on the local clock, and no wall time fires twice', () => {
    const instant = fc.integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2199, 0, 1) });
    fc.assert(
      fc.property(
        cronCase({ years: [1970, 2199] }),
        fc.constantFrom(...ZONES),
        instant,
        fc.option(fc.integer({ min: -30, max: 400 }), { nil: null }),
        fc.option(fc.integer({ min: 1, max: 3000 }), { nil: null }),
        ({ text, meaning }, zone, after, startDays, spanDays) => {
          const startDate = startDays === null ? null : new Date(after + startDays * 86_400_000);
          const endDate = spanDays === null ? null : new Date((startDate?.getTime() ?? after) + spanDays * 86_400_000);
          const ticks = nextTicks(schedule(text, { timezone: zone, startDate, endDate }), new Date(after), 40).map((d) => d.getTime());
          const walls = new Set<number>();
          let prev = after;
          for (const t of ticks) {
            expect(t).toBeGreaterThan(prev);
            prev = t;
            if (startDate) expect(t).toBeGreaterThanOrEqual(startDate.getTime());
            if (endDate) expect(t).toBeLessThanOrEqual(endDate.getTime());
            const wall = bruteWall(t, zone);
            expect(matchesWall(meaning, wall)).toBe(true);
            expect(walls.has(wall)).toBe(false);
            walls.add(wall);
            // the first occurrence: the clock did not show this wall time in the 3 hours before
            // (zones turn their clocks back by multiples of 15 minutes, by 2 hours at most)
            for (let back = 15 * 60_000; back <= 3 * 3_600_000; back += 15 * 60_000) expect(bruteWall(t - back, zone)).not.toBe(wall);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('rate ticks are anchor + k × period, the first after `after`, until EndDate', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 500 }),
        fc.constantFrom('minutes', 'hours', 'days'),
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) }),
        fc.integer({ min: -10 * 86_400_000, max: 400 * 86_400_000 }),
        fc.option(fc.integer({ min: 1, max: 800 * 86_400_000 }), { nil: null }),
        fc.constantFrom(...ZONES),
        (value, unit, start, afterDelta, span, zone) => {
          const periodMs = value * { minutes: 60_000, hours: 3_600_000, days: 86_400_000 }[unit];
          const startDate = new Date(start);
          const anchor = Math.ceil(start / 1000) * 1000;
          const endDate = span === null ? null : new Date(anchor + span);
          const after = start + afterDelta;
          const ticks = nextTicks(schedule(`rate(${value} ${unit})`, { timezone: zone, startDate, endDate }), new Date(after), 20).map((d) => d.getTime());
          for (const [i, t] of ticks.entries()) {
            expect((t - anchor) % periodMs).toBe(0);
            expect(t).toBeGreaterThan(after);
            if (i > 0) expect(t - (ticks[i - 1] as number)).toBe(periodMs);
            if (endDate) expect(t).toBeLessThanOrEqual(endDate.getTime());
          }
          // the first tick is the first k with anchor + k × period > after; the last is within EndDate
          const firstK = after < anchor ? 0 : Math.floor((after - anchor) / periodMs) + 1;
          if (ticks.length > 0) expect(ticks[0]).toBe(anchor + firstK * periodMs);
          const room = endDate ? Math.floor((endDate.getTime() - anchor) / periodMs) - firstK + 1 : 20;
          expect(ticks.length).toBe(Math.max(0, Math.min(20, room)));
        },
      ),
      { numRuns: 500 },
    );
  });
});
