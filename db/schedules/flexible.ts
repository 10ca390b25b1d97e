// FlexibleTimeWindow: OFF, or FLEXIBLE with MaximumWindowInMinutes (1–1440). A tick of a
// flexible schedule fires at scheduled time + offset, the offset in [0, window) drawn from
// a hash of (schedule id, scheduled time): spread like a random one, yet the same on every
// worker and every replay, and recomputable in SQL (docs/schedules.md, "Flexible time windows").

import { createHash } from 'node:crypto';
import { formatScheduledTime } from './context.ts';
import { ScheduleValidationError } from './expression.ts';

export type FlexibleTimeWindow = { mode: 'OFF' } | { mode: 'FLEXIBLE'; maximumWindowInMinutes: number };

export const FLEXIBLE_TIME_WINDOW_OFF: FlexibleTimeWindow = Object.freeze({ mode: 'OFF' });
export const MAX_FLEXIBLE_WINDOW_MINUTES = 1440;

/** Validates a window as the API receives it (`{ mode, maximumWindowInMinutes }`). */
export function checkFlexibleTimeWindow(input: unknown): FlexibleTimeWindow {
  if (input === null || typeof input !== 'object') {
    throw new ScheduleValidationError('FlexibleTimeWindow', 'must be an object with Mode OFF or FLEXIBLE', input);
  }
  const { mode, maximumWindowInMinutes } = input as { mode?: unknown; maximumWindowInMinutes?: unknown };
  if (mode === 'OFF') {
    if (maximumWindowInMinutes !== undefined && maximumWindowInMinutes !== null) {
      throw new ScheduleValidationError('FlexibleTimeWindow.MaximumWindowInMinutes', 'is only allowed with Mode FLEXIBLE', maximumWindowInMinutes);
    }
    return FLEXIBLE_TIME_WINDOW_OFF;
  }
  if (mode !== 'FLEXIBLE') throw new ScheduleValidationError('FlexibleTimeWindow.Mode', 'must be OFF or FLEXIBLE', mode);
  if (maximumWindowInMinutes === undefined || maximumWindowInMinutes === null) {
    throw new ScheduleValidationError('FlexibleTimeWindow.MaximumWindowInMinutes', 'is required with Mode FLEXIBLE', maximumWindowInMinutes);
  }
  if (
    typeof maximumWindowInMinutes !== 'number' ||
    !Number.isInteger(maximumWindowInMinutes) ||
    maximumWindowInMinutes < 1 ||
    maximumWindowInMinutes > MAX_FLEXIBLE_WINDOW_MINUTES
  ) {
    throw new ScheduleValidationError('FlexibleTimeWindow.MaximumWindowInMinutes', `must be a whole number of minutes 1–${MAX_FLEXIBLE_WINDOW_MINUTES}`, maximumWindowInMinutes);
  }
  return { mode: 'FLEXIBLE', maximumWindowInMinutes };
}

/**
 * How long after its scheduled time a tick fires, in ms (whole seconds): 0 with the
 * window OFF; otherwise
 *   first 48 bits of SHA-256("flexible\n" + schedule id + "\n" + scheduled time) mod (window × 60)
 * seconds, the scheduled time written as in `<aws.scheduler.scheduled-time>`.
 */
export function flexibleOffsetMs(scheduleId: string, scheduledTime: Date, window: FlexibleTimeWindow): number {
  if (window.mode === 'OFF') return 0;
  if (typeof scheduleId !== 'string' || scheduleId.length === 0) throw new TypeError('a schedule id is a non-empty string');
  const digest = createHash('sha256').update(`flexible\n${scheduleId}\n${formatScheduledTime(scheduledTime)}`, 'utf8').digest();
  const seconds = digest.readUIntBE(0, 6) % (window.maximumWindowInMinutes * 60);
  return seconds * 1000;
}

/**
 * The same offset computed by PostgreSQL, for auditors ($1 schedule id, $2 scheduled time,
 * $3 MaximumWindowInMinutes); docs/schedules.md prints it and a test runs it.
 */
export const FLEXIBLE_OFFSET_SQL = `select (('x' || left(encode(sha256(convert_to(
         'flexible' || chr(10) || $1::text || chr(10)
           || to_char($2::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
         'UTF8')), 'hex'), 12))::bit(48)::bigint % ($3::int * 60)) * 1000 as offset_ms`;
