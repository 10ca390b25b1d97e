// When a schedule fires: its ticks (scheduled times) after an instant, evaluated in the
// schedule's IANA time zone between StartDate and EndDate, with EventBridge Scheduler's
// daylight-saving rules (docs/schedules.md, "Time zones and daylight saving time"):
//
// - cron(): a wall time the clocks skip (spring forward) is skipped; a wall time the clocks
//   show twice (fall back) fires once, at its first occurrence.
// - rate(): fixed durations on absolute time from an anchor (a day is 24 hours), so the
//   clocks changing changes nothing.
// - at(): one wall time in the zone; StartDate and EndDate do not apply (as in AWS).
//
// Pure: no I/O, no clock. Every function takes the instants it needs.

import { nextCronWallTime } from './cron.ts';
import { parseScheduleExpression, ScheduleValidationError, type ScheduleExpression } from './expression.ts';
import { checkFlexibleTimeWindow, FLEXIBLE_TIME_WINDOW_OFF, type FlexibleTimeWindow } from './flexible.ts';
import { checkTimeZone, DEFAULT_TIMEZONE, formatWallMs, instantsAtWallTime, wallClockMs } from './zone.ts';

/** A schedule as stored or received: the inputs of compileSchedule. */
export interface ScheduleDefinition {
  /** immutable identity (not the name): seeds flexible offsets, execution ids and idempotency keys */
  id: string;
  /** ScheduleExpression: at(…), rate(…) or cron(…) */
  expression: string;
  /** ScheduleExpressionTimezone (default UTC) */
  timezone?: string | null;
  /** StartDate: no tick before it (inclusive). Ignored by at(). */
  startDate?: Date | null;
  /** EndDate: no tick after it (inclusive). Ignored by at(). */
  endDate?: Date | null;
  /**
   * The anchor of a rate() without StartDate: when the schedule became active (AWS: it
   * "starts invoking the target immediately" after it is created). Required for rate()
   * unless startDate is given; not used by at() and cron().
   */
  activeSince?: Date | null;
  /** FlexibleTimeWindow (default OFF) */
  flexibleTimeWindow?: FlexibleTimeWindow | null;
}

/** A validated schedule, ready to compute ticks. */
export interface Schedule {
  readonly id: string;
  readonly expression: ScheduleExpression;
  readonly timezone: string;
  readonly startDate: Date | null;
  readonly endDate: Date | null;
  /** rate(): the first tick; every tick is anchor + k × period. Null for at() and cron(). */
  readonly rateAnchor: Date | null;
  readonly flexibleTimeWindow: FlexibleTimeWindow;
  /** at(): its one instant, or null when the wall time does not exist in the zone (it never fires). */
  readonly atInstant: Date | null;
}

function validDate(field: string, d: Date | null | undefined): Date | null {
  if (d === null || d === undefined) return null;
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new ScheduleValidationError(field, 'must be a valid timestamp', d);
  return d;
}

/**
 * Validates a definition and prepares it for tick computation. Throws
 * ScheduleValidationError (an `InvalidParameter`, AWS `ValidationException`) naming the
 * parameter and the reason.
 */
export function compileSchedule(def: ScheduleDefinition): Schedule {
  if (typeof def.id !== 'string' || def.id.length === 0) throw new TypeError('a schedule needs a non-empty id');
  const expression = parseScheduleExpression(def.expression);
  const timezone = checkTimeZone(def.timezone ?? DEFAULT_TIMEZONE);
  const flexibleTimeWindow = def.flexibleTimeWindow ? checkFlexibleTimeWindow(def.flexibleTimeWindow) : FLEXIBLE_TIME_WINDOW_OFF;
  const startDate = validDate('StartDate', def.startDate);
  const endDate = validDate('EndDate', def.endDate);
  if (expression.kind === 'at') {
    const { year, month, day, hour, minute, second } = expression.at;
    const wall = Date.UTC(year, month - 1, day, hour, minute, second);
    // a local time the clocks skip never fires (a write refuses it: checkScheduleForWrite)
    const [first] = instantsAtWallTime(wall, timezone);
    const atInstant = first === undefined ? null : new Date(first);
    return { id: def.id, expression, timezone, startDate, endDate, rateAnchor: null, flexibleTimeWindow, atInstant };
  }
  if (startDate && endDate && endDate.getTime() <= startDate.getTime()) {
    throw new ScheduleValidationError('EndDate', `must be after StartDate (${startDate.toISOString()})`, endDate);
  }
  let rateAnchor: Date | null = null;
  if (expression.kind === 'rate') {
    const since = startDate ?? validDate('activeSince', def.activeSince);
    if (!since) throw new TypeError('rate() without StartDate needs activeSince, the moment the schedule became active');
    // ticks fall on whole seconds (scheduled-time has no fraction), never before the anchor
    rateAnchor = new Date(Math.ceil(since.getTime() / 1000) * 1000);
  }
  return { id: def.id, expression, timezone, startDate, endDate, rateAnchor, flexibleTimeWindow, atInstant: null };
}

/** AWS: a recurring schedule's StartDate may not be more than 5 minutes in the past. */
export const START_DATE_PAST_TOLERANCE_MS = 5 * 60_000;

/**
 * The checks for CreateSchedule and UpdateSchedule only, which a stored schedule need not
 * pass again (its StartDate ages; a time zone's rules can change under an at()): an at()
 * names a local time that exists in its zone, and a recurring schedule's StartDate is not
 * earlier than 5 minutes before `now`.
 */
export function checkScheduleForWrite(schedule: Schedule, now: Date): void {
  const { expression } = schedule;
  if (expression.kind === 'at') {
    if (!schedule.atInstant) {
      const { year, month, day, hour, minute, second } = expression.at;
      const wall = formatWallMs(Date.UTC(year, month - 1, day, hour, minute, second));
      throw new ScheduleValidationError(
        'ScheduleExpression',
        `${wall} does not exist in ${schedule.timezone}: the clocks skip it for daylight saving time`,
        expression.text,
      );
    }
    return;
  }
  if (schedule.startDate && schedule.startDate.getTime() < now.getTime() - START_DATE_PAST_TOLERANCE_MS) {
    throw new ScheduleValidationError('StartDate', 'cannot be earlier than 5 minutes ago', schedule.startDate);
  }
}

/**
 * The ticks strictly after `after`, in increasing order, until EndDate (or forever: stop
 * iterating when you have enough). Each tick is a whole second; cron ticks whole minutes.
 */
export function* ticksAfter(schedule: Schedule, after: Date): Generator<Date, void, undefined> {
  const afterMs = after.getTime();
  if (Number.isNaN(afterMs)) throw new TypeError('after is not a valid date');
  const { expression } = schedule;
  if (expression.kind === 'at') {
    if (schedule.atInstant && schedule.atInstant.getTime() > afterMs) yield schedule.atInstant;
    return;
  }
  const endMs = schedule.endDate ? schedule.endDate.getTime() : Number.POSITIVE_INFINITY;
  if (expression.kind === 'rate') {
    const anchor = (schedule.rateAnchor as Date).getTime();
    const period = expression.periodMs;
    let k = afterMs < anchor ? 0 : Math.floor((afterMs - anchor) / period) + 1;
    for (;;) {
      const t = anchor + k * period;
      if (t > endMs) return;
      yield new Date(t);
      k++;
    }
  }
  // cron: walk wall times in the zone; each names the instant it first occurs at, if any
  let lower = afterMs;
  if (schedule.startDate && schedule.startDate.getTime() - 1 > lower) lower = schedule.startDate.getTime() - 1;
  let wall: number | null = wallClockMs(lower, schedule.timezone);
  for (;;) {
    wall = nextCronWallTime(expression, wall);
    if (wall === null) return;
    const [first] = instantsAtWallTime(wall, schedule.timezone);
    if (first === undefined) continue; // spring forward: this wall time never happens
    if (first <= lower) continue; // fall back, second pass: this wall time already fired (or was before `after`)
    if (first > endMs) return;
    yield new Date(first);
    lower = first;
  }
}

/** The next `count` ticks strictly after `after` (fewer if the schedule ends). */
export function nextTicks(schedule: Schedule, after: Date, count: number): Date[] {
  if (!Number.isInteger(count) || count < 0) throw new TypeError('count must be a whole number ≥ 0');
  const out: Date[] = [];
  if (count === 0) return out;
  for (const t of ticksAfter(schedule, after)) {
    out.push(t);
    if (out.length >= count) break;
  }
  return out;
}

/** The ticks in (after, until], at most `limit` of them. */
export function ticksBetween(schedule: Schedule, after: Date, until: Date, limit: number): Date[] {
  const out: Date[] = [];
  for (const t of ticksAfter(schedule, after)) {
    if (t.getTime() > until.getTime() || out.length >= limit) break;
    out.push(t);
  }
  return out;
}
