import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { parseTimestamptz } from './timestamptz.ts';

const pgParse = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text') as (s: string) => Date | number | null;
const same = (s: string) => {
  const a = parseTimestamptz(s);
  const b = pgParse(s);
  return a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() || (Number.isNaN(a.getTime()) && Number.isNaN(b.getTime())) : a === b;
};

describe('parseTimestamptz gives what pg would have given', () => {
  it('for every fraction of a second pg can print, at one to six digits', () => {
    const bad: string[] = [];
    for (let f = 0; f < 1_000_000; f += 7) {
      const six = String(f).padStart(6, '0');
      for (const frac of [six, six.replace(/0+$/, '')]) {
        const s = `2026-11-30 23:35:48${frac === '' ? '' : `.${frac}`}+00`;
        if (!same(s)) bad.push(s);
      }
    }
    for (let f = 0; f < 1000; f++) {
      for (const frac of [String(f).padStart(3, '0'), String(f).padStart(3, '0').replace(/0+$/, '')]) {
        const s = `2026-01-01 00:00:00${frac === '' ? '' : `.${frac}`}+00`;
        if (!same(s)) bad.push(s);
      }
    }
    expect(bad.slice(0, 5)).toEqual([]);
  });

  it('for the dates, times and shapes at the edges of the fast path', () => {
    const cases = [
      '1970-01-01 00:00:00+00', '2000-02-29 12:34:56.5+00', '1999-12-31 23:59:59.999999+00', '0099-06-01 00:00:00+00',
      '1000-01-01 00:00:00+00', '9999-12-31 23:59:59.99+00', '2026-11-30 23:35:48.123456+02', '2026-11-30 23:35:48-05:30',
      '2026-11-30 23:35:48+05:45', '0044-03-15 12:00:00+00 BC', 'infinity', '-infinity', '12026-01-01 00:00:00+00',
      '2026-11-30 23:35:48.+00', '2026-11-30T23:35:48+00', '2026-13-40 25:61:61+00',
    ];
    for (const s of cases) expect([s, same(s)]).toEqual([s, true]);
    expect(parseTimestamptz('2026-11-30 23:35:48.123456+00')).toEqual(new Date('2026-11-30T23:35:48.123Z'));
  });

  it('is what a pg client of this process returns for timestamptz', async () => {
    await import('./connection.ts');
    expect(pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text')).toBe(parseTimestamptz);
  });
});
