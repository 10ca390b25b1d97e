// Wall clocks of IANA time zones, from the platform's own time zone database (Intl, which
// Node ships with full ICU data). Pure computation, no I/O. A wall time is carried as the
// milliseconds it would have in UTC ("wall ms"), so the cron library can walk a calendar
// that has no daylight saving time, and this module alone decides what a wall time means
// as an instant: none (the clocks skip it), one, or two (the clocks repeat it).

import { ScheduleValidationError } from './expression.ts';

/** ScheduleExpressionTimezone when none is given. */
export const DEFAULT_TIMEZONE = 'UTC';

const FIELD = 'ScheduleExpressionTimezone';
const DAY_MS = 86_400_000;

// Region/City names and the legacy ones (UTC, EST5EDT, Etc/GMT+5): no offsets such as
// "+05:00", which newer engines accept but which are not names in the IANA database.
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Returns the zone name if the IANA database knows it; throws ScheduleValidationError otherwise. */
export function checkTimeZone(zone: unknown): string {
  if (typeof zone !== 'string' || zone.length === 0 || zone.length > 50 || !ZONE_NAME.test(zone)) {
    throw new ScheduleValidationError(FIELD, 'must be an IANA time zone name such as America/New_York or UTC', zone);
  }
  try {
    formatter(zone);
  } catch {
    throw new ScheduleValidationError(FIELD, 'is not a time zone of the IANA database (for example Europe/Berlin, America/New_York, UTC)', zone);
  }
  return zone;
}

// "03/08/2026, 01:59:00": format() is about three times faster than formatToParts(), which
// stays as the fallback should the locale data ever print it differently.
const EN_US = /^(\d{2})\/(\d{2})\/(\d{4}), (\d{2}):(\d{2}):(\d{2})$/;

/** The wall-clock reading of an instant in `zone`, as wall ms (whole seconds). */
export function wallClockMs(instantMs: number, zone: string): number {
  const seconds = Math.floor(instantMs / 1000) * 1000;
  const f = formatter(zone);
  const m = EN_US.exec(f.format(seconds));
  if (m) return Date.UTC(Number(m[3]), Number(m[1]) - 1, Number(m[2]), Number(m[4]) % 24, Number(m[5]), Number(m[6]));
  const v: Record<string, number> = {};
  for (const p of f.formatToParts(seconds)) v[p.type] = Number(p.value);
  return Date.UTC(v.year as number, (v.month as number) - 1, v.day, (v.hour as number) % 24, v.minute, v.second);
}

/** How far `zone` is ahead of UTC at an instant, in ms (whole seconds). */
export function offsetMs(instantMs: number, zone: string): number {
  return wallClockMs(instantMs, zone) - Math.floor(instantMs / 1000) * 1000;
}

/**
 * The instants at which `zone`'s clocks read the wall time `wallMs`, earliest first:
 * none when the clocks skip it (spring forward), two when they show it twice (fall back).
 */
export function instantsAtWallTime(wallMs: number, zone: string): number[] {
  // An offset is at most a day from UTC, so the instant lies within a day of wallMs; the
  // offsets in force a day before and a day after cover both sides of any one transition.
  const offsets = new Set([offsetMs(wallMs - DAY_MS, zone), offsetMs(wallMs, zone), offsetMs(wallMs + DAY_MS, zone)]);
  const found = new Set<number>();
  for (const o of offsets) {
    const instant = wallMs - o;
    if (wallClockMs(instant, zone) === wallMs) found.add(instant);
  }
  return [...found].sort((a, b) => a - b);
}

/** A wall ms as `yyyy-mm-ddThh:mm:ss`, for messages and docs. */
export function formatWallMs(wallMs: number): string {
  return new Date(wallMs).toISOString().slice(0, 19);
}
