import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bruteWall, transitions } from '../../test/helpers/schedule-oracle.ts';
import { ScheduleValidationError } from './expression.ts';
import { checkTimeZone, instantsAtWallTime, offsetMs, wallClockMs } from './zone.ts';

const iso = (ms: number) => new Date(ms).toISOString();
const wall = (text: string) => Date.parse(`${text}Z`);

describe('checkTimeZone', () => {
  it.each(['UTC', 'America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe', 'America/Argentina/Buenos_Aires', 'Etc/GMT+5', 'EST5EDT'])('accepts %s', (zone) => {
    expect(checkTimeZone(zone)).toBe(zone);
  });

  it.each([
    ['Mars/Olympus_Mons', 'is not a time zone of the IANA database'],
    ['+05:00', 'must be an IANA time zone name'],
    ['UTC+2', 'is not a time zone of the IANA database'],
    ['', 'must be an IANA time zone name'],
    ['America/New York', 'must be an IANA time zone name'],
    [42, 'must be an IANA time zone name'],
  ])('refuses %j', (zone, reason) => {
    expect(() => checkTimeZone(zone)).toThrow(ScheduleValidationError);
    expect(() => checkTimeZone(zone)).toThrow(reason);
    try {
      checkTimeZone(zone);
    } catch (e) {
      expect((e as ScheduleValidationError).field).toBe('ScheduleExpressionTimezone');
    }
  });
});

describe('wall clocks', () => {
  it('reads an instant on the clock of a zone', () => {
    expect(iso(wallClockMs(Date.parse('2026-03-08T06:59:59Z'), 'America/New_York'))).toBe('2026-03-08T01:59:59.000Z');
    expect(iso(wallClockMs(Date.parse('2026-03-08T07:00:00Z'), 'America/New_York'))).toBe('2026-03-08T03:00:00.000Z');
    expect(iso(wallClockMs(Date.parse('2026-01-01T00:00:00.999Z'), 'Asia/Kathmandu'))).toBe('2026-01-01T05:45:00.000Z');
    expect(offsetMs(Date.parse('2026-07-01T00:00:00Z'), 'Australia/Lord_Howe')).toBe(10.5 * 3_600_000);
    expect(offsetMs(Date.parse('2026-01-01T00:00:00Z'), 'Australia/Lord_Howe')).toBe(11 * 3_600_000);
  });

  it('finds no instant for a skipped wall time, two for a repeated one, earliest first', () => {
    expect(instantsAtWallTime(wall('2026-03-08T02:30:00'), 'America/New_York')).toEqual([]);
    expect(instantsAtWallTime(wall('2026-11-01T01:30:00'), 'America/New_York').map(iso)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-01T06:30:00.000Z']);
    expect(instantsAtWallTime(wall('2026-10-04T02:15:00'), 'Australia/Lord_Howe')).toEqual([]);
    expect(instantsAtWallTime(wall('2026-04-05T01:45:00'), 'Australia/Lord_Howe').map(iso)).toEqual(['2026-04-04T14:45:00.000Z', '2026-04-04T15:15:00.000Z']);
    expect(instantsAtWallTime(wall('2026-10-25T02:30:00'), 'Europe/Berlin').map(iso)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-25T01:30:00.000Z']);
    // Samoa skipped 30 December 2011 whole, moving from -10 to +14
    expect(instantsAtWallTime(wall('2011-12-30T12:00:00'), 'Pacific/Apia')).toEqual([]);
    expect(instantsAtWallTime(wall('2011-12-31T00:00:00'), 'Pacific/Apia').map(iso)).toEqual(['2011-12-30T10:00:00.000Z']);
  });

  it('agrees with a brute-force search over every possible offset, around real transitions', () => {
    const zones = ['America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe', 'Pacific/Chatham', 'Antarctica/Troll', 'Africa/Casablanca', 'America/St_Johns', 'Asia/Kathmandu'];
    const near = zones.flatMap((z) => transitions(z, Date.parse('2026-01-01T00:00:00Z'), Date.parse('2027-01-01T00:00:00Z')).map((t) => ({ z, t })));
    expect(near.length).toBeGreaterThan(12);
    const quarter = 15 * 60_000;
    fc.assert(
      fc.property(fc.constantFrom(...near), fc.integer({ min: -36, max: 36 }), fc.integer({ min: 0, max: 14 }), ({ z, t }, quarters, minute) => {
        const w = Math.floor(bruteWall(t, z) / quarter) * quarter + quarters * quarter + minute * 60_000;
        const expected: number[] = [];
        for (let o = -14 * 4 * quarter; o <= 14 * 4 * quarter; o += quarter) {
          if (bruteWall(w - o, z) === w) expected.push(w - o);
        }
        expect(instantsAtWallTime(w, z)).toEqual(expected.sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });
});
