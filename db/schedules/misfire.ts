// Which due ticks run and which are recorded as skipped, after downtime or a slow poll. Pure:
// the caller passes the last tick it decided and the present (docs/schedules.md, "Missed
// ticks"). A tick is due when its scheduled time has come; it is missed when even its fire
// time (scheduled time + flexible offset) lies more than a grace period in the past.
//
// - skip: missed ticks do not run.
// - once (the default): one catch-up run, for the most recent missed tick, stands for all
//   missed ticks; the older ones are recorded as coalesced into it.
// - all: the most recent `maxCatchUp` missed ticks run, oldest first; older ones are skipped.
//
// Ticks that are not missed run as usual, whatever the policy. Missed ticks that run are late.

import { ScheduleValidationError } from './expression.ts';
import { flexibleOffsetMs } from './flexible.ts';
import { ticksAfter, type Schedule } from './ticks.ts';

export type MisfirePolicy = { mode: 'skip' } | { mode: 'once' } | { mode: 'all'; maxCatchUp: number };

export const DEFAULT_MISFIRE_POLICY: MisfirePolicy = Object.freeze({ mode: 'once' });
export const MAX_CATCH_UP = 1000;
/** EventBridge Scheduler fires within 60 s of the scheduled minute; later than that is late. */
export const DEFAULT_MISFIRE_GRACE_MS = 60_000;

/** Why a tick did not run. The planner gives the misfire ones; the others are for the recorder. */
export const TICK_SKIP_REASONS = [
  'misfire_skip', // missed, and the policy is skip
  'misfire_coalesced', // missed, policy once: the catch-up run of a later missed tick covers it
  'misfire_cap', // missed, policy all: older than the maxCatchUp most recent missed ticks
  'disabled', // the schedule was DISABLED at the tick
  'end_date', // EndDate moved before a tick that was already planned
  'updated', // the schedule was updated (or re-enabled) after the tick came due and before it was decided
  'target_missing', // the target function (or its version or alias) did not exist when the tick fired
] as const;
export type TickSkipReason = (typeof TICK_SKIP_REASONS)[number];

export interface PlannedRun {
  scheduledTime: Date;
  /** scheduledTime + flexibleOffsetMs: when the tick should fire (may be in the future) */
  fireAt: Date;
  flexibleOffsetMs: number;
  /** a missed tick run by the policy */
  late: boolean;
}

export interface SkippedTick {
  scheduledTime: Date;
  reason: TickSkipReason;
}

export interface DuePlan {
  /** in scheduled order */
  run: PlannedRun[];
  /** in scheduled order */
  skipped: SkippedTick[];
  /**
   * Null when every due tick up to `now` is decided. Otherwise the plan covers only the
   * ticks up to this one: record them, then ask again with `after` = resumeAfter and the
   * same `now`.
   */
  resumeAfter: Date | null;
}

/** Validates a policy as the API receives it (`{ mode, maxCatchUp }`). */
export function checkMisfirePolicy(input: unknown): MisfirePolicy {
  if (input === null || input === undefined) return DEFAULT_MISFIRE_POLICY;
  if (typeof input !== 'object') throw new ScheduleValidationError('MisfirePolicy', 'must be an object with mode skip, once or all', input);
  const { mode, maxCatchUp } = input as { mode?: unknown; maxCatchUp?: unknown };
  if (mode === 'skip' || mode === 'once') {
    if (maxCatchUp !== undefined && maxCatchUp !== null) {
      throw new ScheduleValidationError('MisfirePolicy.maxCatchUp', 'is only allowed with mode all', maxCatchUp);
    }
    return { mode };
  }
  if (mode !== 'all') throw new ScheduleValidationError('MisfirePolicy.mode', 'must be skip, once or all', mode);
  if (typeof maxCatchUp !== 'number' || !Number.isInteger(maxCatchUp) || maxCatchUp < 1 || maxCatchUp > MAX_CATCH_UP) {
    throw new ScheduleValidationError('MisfirePolicy.maxCatchUp', `must be a whole number 1–${MAX_CATCH_UP} with mode all`, maxCatchUp);
  }
  return { mode, maxCatchUp };
}

export interface PlanOptions {
  /** the last tick already decided (run or skipped), or when the schedule became active */
  after: Date;
  now: Date;
  policy?: MisfirePolicy;
  graceMs?: number;
  /** how many ticks one plan looks at before it stops and asks to be resumed (default 10 000) */
  pageSize?: number;
}

/**
 * Decides every tick in (after, now]: which run (on time, or late by the misfire policy)
 * and which are skipped, with the reason. Deterministic: the same inputs give the same plan.
 */
export function planDueTicks(schedule: Schedule, options: PlanOptions): DuePlan {
  const policy = options.policy ?? DEFAULT_MISFIRE_POLICY;
  const graceMs = options.graceMs ?? DEFAULT_MISFIRE_GRACE_MS;
  const nowMs = options.now.getTime();
  if (Number.isNaN(nowMs) || Number.isNaN(options.after.getTime())) throw new TypeError('after and now must be valid dates');
  if (!Number.isFinite(graceMs) || graceMs < 0) throw new TypeError('graceMs must be ≥ 0');
  const keep = policy.mode === 'skip' ? 0 : policy.mode === 'once' ? 1 : policy.mode === 'all' ? policy.maxCatchUp : 0;
  const skipReason: TickSkipReason = policy.mode === 'skip' ? 'misfire_skip' : policy.mode === 'once' ? 'misfire_coalesced' : 'misfire_cap';
  // A page must decide at least one tick. Undecided are only the `keep` buffered missed
  // ticks and the on-time ticks after them; on-time ticks lie within grace + window of now,
  // at least a minute apart, so a page longer than all of them always decides something.
  const windowMs = schedule.flexibleTimeWindow.mode === 'FLEXIBLE' ? schedule.flexibleTimeWindow.maximumWindowInMinutes * 60_000 : 0;
  const onTimeBound = Math.ceil((graceMs + windowMs) / 60_000) + 2;
  const pageSize = Math.max(options.pageSize ?? 10_000, keep + onTimeBound);

  interface Decided {
    t: number;
    run?: PlannedRun;
    skip?: TickSkipReason;
  }
  const decided: Decided[] = [];
  const buffer: PlannedRun[] = []; // the most recent `keep` missed ticks so far, oldest first
  let seen = 0;
  let truncated = false;
  for (const tick of ticksAfter(schedule, options.after)) {
    const t = tick.getTime();
    if (t > nowMs) break;
    if (seen === pageSize) {
      truncated = true;
      break;
    }
    seen++;
    const offset = flexibleOffsetMs(schedule.id, tick, schedule.flexibleTimeWindow);
    const fireAt = t + offset;
    const missed = nowMs - fireAt > graceMs;
    if (!missed) {
      decided.push({ t, run: { scheduledTime: tick, fireAt: new Date(fireAt), flexibleOffsetMs: offset, late: false } });
      continue;
    }
    buffer.push({ scheduledTime: tick, fireAt: new Date(fireAt), flexibleOffsetMs: offset, late: true });
    if (buffer.length > keep) {
      const oldest = buffer.shift() as PlannedRun;
      decided.push({ t: oldest.scheduledTime.getTime(), skip: skipReason });
    }
  }

  let cut = Number.POSITIVE_INFINITY;
  if (truncated && buffer.length > 0) {
    // the buffered ticks wait for what comes after the page; so does everything after them
    cut = (buffer[0] as PlannedRun).scheduledTime.getTime();
  } else {
    for (const r of buffer) decided.push({ t: r.scheduledTime.getTime(), run: r });
  }
  decided.sort((a, b) => a.t - b.t);
  const plan: DuePlan = { run: [], skipped: [], resumeAfter: null };
  let last: number | null = null;
  for (const d of decided) {
    if (d.t >= cut) break;
    if (d.run) plan.run.push(d.run);
    else plan.skipped.push({ scheduledTime: new Date(d.t), reason: d.skip as TickSkipReason });
    last = d.t;
  }
  if (truncated) {
    if (last === null) throw new Error('planDueTicks: a page decided no tick (page size below its bound)');
    plan.resumeAfter = new Date(last);
  }
  return plan;
}
