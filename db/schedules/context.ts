// What a tick hands its target: the EventBridge Scheduler context attributes substituted
// into the input, a stable execution id, and the idempotency key of the invocation. All
// derived from (schedule id, scheduled time) alone, so a tick can be replayed and audited.

import { createHash } from 'node:crypto';

/** The keywords EventBridge Scheduler replaces in a target's Input. */
export const CONTEXT_ATTRIBUTES = {
  scheduleArn: '<aws.scheduler.schedule-arn>',
  scheduledTime: '<aws.scheduler.scheduled-time>',
  executionId: '<aws.scheduler.execution-id>',
  attemptNumber: '<aws.scheduler.attempt-number>',
} as const;

export interface ExecutionContext {
  /** the schedule's ARN, `arn:aws:scheduler:<region>:<account>:schedule/<group>/<name>` */
  scheduleArn: string;
  /** the tick: the time the schedule names, before any flexible offset */
  scheduledTime: Date;
  /** executionIdFor(schedule id, scheduledTime): one per tick, the same on every attempt */
  executionId: string;
  /** 1 for the first attempt, 2 for the first retry, … */
  attemptNumber: number;
}

/**
 * A scheduled time as EventBridge writes it: UTC, whole seconds, `Z` (2022-03-22T18:59:43Z).
 * Also the text every derived value (execution id, idempotency key, flexible offset) hashes.
 */
export function formatScheduledTime(t: Date): string {
  const ms = t.getTime();
  if (!Number.isFinite(ms)) throw new TypeError('scheduled time is not a valid date');
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const KEYWORD = /<aws\.scheduler\.(schedule-arn|scheduled-time|execution-id|attempt-number)>/g;

/**
 * The target input with every context attribute keyword replaced by its value, as
 * EventBridge Scheduler does when it invokes the target: plain text replacement anywhere
 * in the string (inside or outside JSON strings), in one pass, so a value is never read
 * again as a keyword. Other text, including unknown `<aws.scheduler.…>` keywords, is kept.
 */
export function substituteContextAttributes(input: string, ctx: ExecutionContext): string {
  if (!Number.isInteger(ctx.attemptNumber) || ctx.attemptNumber < 1) {
    throw new TypeError(`attempt number must be a whole number ≥ 1, not ${ctx.attemptNumber}`);
  }
  const values: Record<string, string> = {
    'schedule-arn': ctx.scheduleArn,
    'scheduled-time': formatScheduledTime(ctx.scheduledTime),
    'execution-id': ctx.executionId,
    'attempt-number': String(ctx.attemptNumber),
  };
  return input.replace(KEYWORD, (_, name: string) => values[name] as string);
}

/** What a tick records to render each attempt's event (the `scheduleInput` of its accepted event). */
export interface TickInput {
  template: string;
  scheduleArn: string;
  /** formatScheduledTime of the tick */
  scheduledTime: string;
  executionId: string;
}

/**
 * The event attempt `attemptNumber` of a tick's invocation receives: the template with
 * the context attributes of that attempt, parsed as JSON (the template was checked to be
 * JSON once substituted when the schedule was written; text otherwise, as it was).
 * The scheduler renders attempt 1 when the tick fires; the worker renders each attempt.
 */
export function tickEvent(input: TickInput, attemptNumber: number): unknown {
  const text = substituteContextAttributes(input.template, {
    scheduleArn: input.scheduleArn,
    scheduledTime: new Date(input.scheduledTime),
    executionId: input.executionId,
    attemptNumber,
  });
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function checkScheduleId(scheduleId: string): void {
  if (typeof scheduleId !== 'string' || scheduleId.length === 0) throw new TypeError('a schedule id is a non-empty string');
}

/**
 * The execution id of a tick: 32 hex digits of SHA-256("execution\n" + schedule id + "\n" +
 * scheduled time). One per tick, kept across retries (the attempt number tells them apart).
 */
export function executionIdFor(scheduleId: string, scheduledTime: Date): string {
  checkScheduleId(scheduleId);
  return createHash('sha256').update(`execution\n${scheduleId}\n${formatScheduledTime(scheduledTime)}`, 'utf8').digest('hex').slice(0, 32);
}

/**
 * The idempotency key of the invocation a tick produces: `schedule:<id>:<scheduled time>`,
 * readable in the ledger, the same however often or by whichever worker the tick is fired.
 * Use the schedule's immutable id, not its name: a schedule deleted and created again under
 * the same name is another schedule, and its ticks must not be taken for the old one's.
 */
export function idempotencyKeyFor(scheduleId: string, scheduledTime: Date): string {
  checkScheduleId(scheduleId);
  return `schedule:${scheduleId}:${formatScheduledTime(scheduledTime)}`;
}
