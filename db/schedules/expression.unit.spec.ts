import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toCronerPattern } from './cron.ts';
import { parseScheduleExpression, ScheduleValidationError, type CronExpression } from './expression.ts';

const cron = (text: string) => parseScheduleExpression(text) as CronExpression;

/** The reason an expression is refused, or null when it is accepted. */
function refusal(text: string): string | null {
  try {
    parseScheduleExpression(text);
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(ScheduleValidationError);
    const err = e as ScheduleValidationError;
    expect(err.code).toBe('InvalidParameter');
    expect(err.awsErrorType).toBe('ValidationException');
    expect(err.field).toBe('ScheduleExpression');
    expect(err.message).toContain(err.reason);
    return err.reason;
  }
}

describe('at()', () => {
  it('reads a local date and time', () => {
    expect(parseScheduleExpression('at(2022-11-20T13:00:00)')).toEqual({
      kind: 'at',
      text: 'at(2022-11-20T13:00:00)',
      at: { year: 2022, month: 11, day: 20, hour: 13, minute: 0, second: 0 },
    });
    expect(parseScheduleExpression('at(2025-01-31T15:59:42)')).toMatchObject({ at: { second: 42 } });
    expect(parseScheduleExpression('at(2024-02-29T00:00:00)')).toMatchObject({ at: { month: 2, day: 29 } });
  });

  it.each([
    ['at(2022-11-20 13:00:00)', 'yyyy-mm-ddThh:mm:ss'],
    ['at(2022-11-20T13:00:00Z)', 'without a zone'],
    ['at(2022-11-20T13:00)', 'yyyy-mm-ddThh:mm:ss'],
    ['at(2022-11-20T13:00:00.000)', 'without a zone or fraction'],
    ['at(2023-02-29T00:00:00)', '2023-02 has no day 29'],
    ['at(2022-13-01T00:00:00)', 'no month 13'],
    ['at(2022-11-20T24:00:00)', 'hour must be 00–23'],
    ['at(2022-11-20T23:60:00)', 'minute must be 00–59'],
    ['at(2022-11-20T23:59:60)', 'second must be 00–59'],
    ['at(1969-12-31T23:59:59)', 'year must be 1970–2199'],
    ['at(2200-01-01T00:00:00)', 'year must be 1970–2199'],
  ])('refuses %s', (text, reason) => {
    expect(refusal(text)).toContain(reason);
  });
});

describe('rate()', () => {
  it.each([
    ['rate(5 minutes)', 5, 'minutes', 300_000],
    ['rate(1 minute)', 1, 'minute', 60_000],
    ['rate(1 hour)', 1, 'hour', 3_600_000],
    ['rate(7 days)', 7, 'days', 604_800_000],
    ['rate(1 days)', 1, 'days', 86_400_000], // the Scheduler guide's own example writes rate(1 days)
    ['rate(12 hours)', 12, 'hours', 43_200_000],
  ])('reads %s', (text, value, unit, periodMs) => {
    expect(parseScheduleExpression(text)).toEqual({ kind: 'rate', text, value, unit, periodMs });
  });

  it.each([
    ['rate(5 minute)', 'a rate of 5 takes the plural unit minutes'],
    ['rate(2 hour)', 'plural unit hours'],
    ['rate(0 minutes)', 'at least 1'],
    ['rate(-1 minutes)', 'positive whole number'],
    ['rate(1.5 hours)', 'positive whole number'],
    ['rate(5 seconds)', 'must be one of minute, minutes, hour, hours, day, days'],
    ['rate(5 weeks)', 'must be one of'],
    ['rate(5 Minutes)', 'must be one of'],
    ['rate(5)', 'a value and a unit'],
    ['rate(minutes)', 'a value and a unit'],
    ['rate(99999999999999 days)', 'too long'],
  ])('refuses %s', (text, reason) => {
    expect(refusal(text)).toContain(reason);
  });
});

describe('cron()', () => {
  it.each([
    // the examples of the EventBridge documentation
    ['cron(0 10 * * ? *)', '0 0 10 * * * 1970-2199'],
    ['cron(15 12 * * ? *)', '0 15 12 * * * 1970-2199'],
    ['cron(0 18 ? * MON-FRI *)', '0 0 18 * * 2-6 1970-2199'],
    ['cron(0 8 1 * ? *)', '0 0 8 1 * * 1970-2199'],
    ['cron(0/15 * * * ? *)', '0 0-59/15 * * * * 1970-2199'],
    ['cron(0/10 * ? * MON-FRI *)', '0 0-59/10 * * * 2-6 1970-2199'],
    ['cron(0/5 8-17 ? * MON-FRI *)', '0 0-59/5 8-17 * * 2-6 1970-2199'],
    ['cron(0 9 ? * 2#1 *)', '0 0 9 * * 2#1 1970-2199'],
    ['cron(15 10 ? * 6L 2022-2023)', '0 15 10 * * 6L 2022-2023'],
    ['cron(0 5 L * ? *)', '0 0 5 L * * 1970-2199'],
    ['cron(0 5 LW * ? *)', '0 0 5 LW * * 1970-2199'],
    ['cron(0 5 15W * ? *)', '0 0 5 15W * * 1970-2199'],
    ['cron(0 5 ? * L *)', '0 0 5 * * 7 1970-2199'],
    ['cron(0 5 ? * FRIL *)', '0 0 5 * * 6L 1970-2199'],
    ['cron(0 5 ? * fri#3 *)', '0 0 5 * * 6#3 1970-2199'],
    ['cron(0 0 1 JAN,jul ? *)', '0 0 0 1 1,7 * 1970-2199'],
    // WED holds a W, which is no nearest-weekday marker there
    ['cron(0 18 ? * SUN-WED *)', '0 0 18 * * 1-4 1970-2199'],
    ['cron(0 18 ? * WED#2 *)', '0 0 18 * * 4#2 1970-2199'],
    ['cron(0 18 ? * WEDL *)', '0 0 18 * * 4L 1970-2199'],
    ['cron(0 0 1 FEB-NOV/3 ? *)', '0 0 0 1 2-11/3 * 1970-2199'],
    ['cron(*/20 * * * ? 2030/5)', '0 0-59/20 * * * * 2030-2199/5'],
    // accepted by AWS (reported against an emulator that refused them)
    ['cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)', '0 0-15/1 8-8 * * 2,3,4,5,6,7 1970-2199'],
    ['cron(30-30 13-13 ? * 2,4,6 *)', '0 30-30 13-13 * * 2,4,6 1970-2199'],
    ['cron(1-31/30 1-1 ? * 1,7 *)', '0 1-31/30 1-1 * * 1,7 1970-2199'],
    ['cron(  0   10 * * ? *  )', '0 0 10 * * * 1970-2199'],
  ])('reads %s', (text, pattern) => {
    expect(toCronerPattern(cron(text))).toBe(pattern);
  });

  it('keeps the structure of L, W and #', () => {
    expect(cron('cron(0 9 ? * 3#2 *)').dayOfWeek).toEqual({ kind: 'nth', weekday: 3, nth: 2 });
    expect(cron('cron(0 9 ? * 5L *)').dayOfWeek).toEqual({ kind: 'last', weekday: 5 });
    expect(cron('cron(0 9 15W * ? *)').dayOfMonth).toEqual({ kind: 'nearestWeekday', day: 15 });
    expect(cron('cron(0 9 LW * ? *)').dayOfMonth).toEqual({ kind: 'lastWeekday' });
    expect(cron('cron(0 9 L * ? *)').dayOfMonth).toEqual({ kind: 'last' });
    expect(cron('cron(0 9 * * ? *)').dayOfWeek).toEqual({ kind: 'any' });
  });

  it.each([
    ['cron(0 10 * * *)', 'six fields'],
    ['cron(0 0 10 * * ? *)', 'six fields'],
    ['cron(0 10 * * * *)', 'cannot both be given; put ? in one of them'],
    ['cron(0 10 1 * MON *)', 'cannot both be given'],
    ['cron(0 10 ? * ? *)', 'cannot both be ?'],
    ['cron(60 10 * * ? *)', 'minutes 60: 60 is out of range (0–59)'],
    ['cron(0 24 * * ? *)', 'hours 24: 24 is out of range (0–23)'],
    ['cron(0 0 0 * ? *)', 'day-of-month 0: 0 is out of range (1–31)'],
    ['cron(0 0 32 * ? *)', 'out of range (1–31)'],
    ['cron(0 0 1 13 ? *)', 'month 13: 13 is out of range (1–12 or JAN–DEC)'],
    ['cron(0 0 1 JANUARY ? *)', 'JANUARY is not a name'],
    ['cron(0 0 ? * 0 *)', 'day-of-week 0: 0 is out of range (1–7 or SUN–SAT)'],
    ['cron(0 0 ? * 8 *)', 'out of range (1–7'],
    ['cron(0 0 ? * SUNDAY *)', 'SUNDAY is not a name'],
    ['cron(0 0 1 * ? 1969)', 'year 1969: 1969 is out of range (1970–2199)'],
    ['cron(0 0 1 * ? 2200)', 'out of range (1970–2199)'],
    ['cron(0 0 ? * 1/2 *)', 'increments (/) are not allowed in day-of-week'],
    ['cron(0/0 * * * ? *)', 'increment must be 1–60'],
    ['cron(0/61 * * * ? *)', 'increment must be 1–60'],
    ['cron(0/x * * * ? *)', 'after / must be a whole number'],
    ['cron(30-10 * * * ? *)', 'a range runs from low to high'],
    ['cron(FRI-MON * * * ? *)', 'FRI is not a number'],
    ['cron(0 0 ? * FRI-MON *)', 'a range runs from low to high'],
    ['cron(1,,2 * * * ? *)', 'empty element'],
    ['cron(*,5 * * * ? *)', '* stands alone'],
    ['cron(1-2-3 * * * ? *)', 'a range has one -'],
    ['cron(? * * * ? *)', '? is only for day-of-month or day-of-week'],
    ['cron(0 0 ? * 3#1,6#3 *)', 'one expression only'],
    ['cron(0 0 ? * 3#6 *)', 'occurrence after # must be 1–5'],
    ['cron(0 0 ? * 3#0 *)', 'occurrence after # must be 1–5'],
    ['cron(0 0 ? * #2 *)', '# takes a weekday and an occurrence'],
    ['cron(0 0 ? * 8L *)', 'out of range (1–7'],
    ['cron(0 0 ? * 2,L *)', 'L stands alone, or after one weekday'],
    ['cron(0 0 L-3 * ? *)', 'offsets from the last day (L-n) are not supported'],
    ['cron(0 0 1,L * ? *)', 'L and LW stand alone'],
    ['cron(0 0 32W * ? *)', 'W takes a day 1–31'],
    ['cron(0 0 1-5W * ? *)', 'W takes one day'],
    ['cron(0 0 ? * 2W *)', 'W belongs in day-of-month'],
    ['cron(0 0 1,? * * *)', '? stands alone'],
    ['cron(0 0 # * ? *)', 'is not a number'],
    ['cron(0 0 1 * ? * 5)', 'six fields'],
    ['cron()', 'six fields'],
  ])('refuses %s', (text, reason) => {
    expect(refusal(text)).toContain(reason);
  });
});

describe('the expression as a whole', () => {
  it.each([
    ['every 5 minutes', 'must be at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron('],
    ['CRON(0 10 * * ? *)', 'must be at('],
    ['cron 0 10 * * ? *', 'must be at('],
    ['', 'must be at('],
    [`cron(${'1,'.repeat(200)}1 * * * ? *)`, 'at most 256 characters'],
  ])('refuses %j', (text, reason) => {
    expect(refusal(text)).toContain(reason);
  });

  it('refuses what is not a string', () => {
    expect(() => parseScheduleExpression(5)).toThrow(ScheduleValidationError);
    expect(() => parseScheduleExpression(null)).toThrow('must be a string');
  });

  it('names the expression and the reason in the message', () => {
    expect(() => parseScheduleExpression('cron(0 10 * * * *)')).toThrow(
      'Invalid ScheduleExpression cron(0 10 * * * *): day-of-month and day-of-week cannot both be given; put ? in one of them (as in cron(0 10 * * ? *))',
    );
  });

  it('accepts or refuses any text with a ScheduleValidationError, never another error', () => {
    const fieldText = fc.stringMatching(/^[0-9A-Z*?,\-/#LW]{1,6}$/);
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.array(fieldText, { minLength: 5, maxLength: 7 }).map((f) => `cron(${f.join(' ')})`),
      fc.tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 8 })).map(([v, u]) => `rate(${v} ${u})`),
      fc.stringMatching(/^at\([0-9T:\-]{0,22}\)$/),
    );
    fc.assert(
      fc.property(text, (t) => {
        try {
          const parsed = parseScheduleExpression(t);
          if (parsed.kind === 'cron') toCronerPattern(parsed); // whatever the parser accepts, the translator renders
        } catch (e) {
          if (!(e instanceof ScheduleValidationError)) throw e;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
