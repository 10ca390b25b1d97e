// What a tick hands its target: context attributes, execution id, idempotency key, and the
// flexible offset that decides when it fires.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONTEXT_ATTRIBUTES, executionIdFor, formatScheduledTime, idempotencyKeyFor, substituteContextAttributes, tickEvent, type ExecutionContext } from './context.ts';
import { ScheduleValidationError } from './expression.ts';
import { checkFlexibleTimeWindow, flexibleOffsetMs, type FlexibleTimeWindow } from './flexible.ts';

const tick = new Date('2022-03-22T18:59:43Z');
const ARN = 'arn:aws:scheduler:us-east-1:000000000000:schedule/default/nightly';
const ctx: ExecutionContext = { scheduleArn: ARN, scheduledTime: tick, executionId: executionIdFor('s-1', tick), attemptNumber: 1 };

describe('context attributes', () => {
  it('writes the scheduled time as EventBridge does: UTC, whole seconds, Z', () => {
    expect(formatScheduledTime(tick)).toBe('2022-03-22T18:59:43Z');
    expect(formatScheduledTime(new Date('2022-03-22T18:59:43.999Z'))).toBe('2022-03-22T18:59:43Z');
  });

  it('substitutes the four keywords inside and outside JSON strings, every occurrence', () => {
    const input = JSON.stringify({
      MessageBody: CONTEXT_ATTRIBUTES.scheduledTime,
      id: `run-${CONTEXT_ATTRIBUTES.executionId}`,
      arn: CONTEXT_ATTRIBUTES.scheduleArn,
      again: CONTEXT_ATTRIBUTES.scheduledTime,
    }).replace('}', `,"attempt":${CONTEXT_ATTRIBUTES.attemptNumber}}`);
    const out = substituteContextAttributes(input, { ...ctx, attemptNumber: 3 });
    expect(JSON.parse(out)).toEqual({
      MessageBody: '2022-03-22T18:59:43Z',
      id: `run-${ctx.executionId}`,
      arn: ARN,
      again: '2022-03-22T18:59:43Z',
      attempt: 3,
    });
  });

  it('keeps other text, unknown keywords and near misses as they are, and substitutes in one pass', () => {
    const input = '<aws.scheduler.unknown> <AWS.SCHEDULER.SCHEDULED-TIME> <aws.scheduler.scheduled-time <aws.scheduler.attempt-number>>';
    expect(substituteContextAttributes(input, ctx)).toBe('<aws.scheduler.unknown> <AWS.SCHEDULER.SCHEDULED-TIME> <aws.scheduler.scheduled-time 1>');
    // a value that looks like a keyword is not substituted again
    const sneaky = substituteContextAttributes('<aws.scheduler.schedule-arn>', { ...ctx, scheduleArn: '<aws.scheduler.attempt-number>' });
    expect(sneaky).toBe('<aws.scheduler.attempt-number>');
  });

  it('refuses an attempt number below 1', () => {
    expect(() => substituteContextAttributes('x', { ...ctx, attemptNumber: 0 })).toThrow('attempt number must be a whole number ≥ 1');
  });

  it('leaves a text without keywords unchanged', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        fc.pre(!s.includes('<aws.scheduler.'));
        expect(substituteContextAttributes(s, ctx)).toBe(s);
      }),
    );
  });
});

describe('execution id and idempotency key', () => {
  it('are the same for the same schedule and tick, and differ otherwise', () => {
    const other = new Date(tick.getTime() + 60_000);
    expect(executionIdFor('s-1', tick)).toBe(executionIdFor('s-1', new Date(tick.getTime())));
    expect(executionIdFor('s-1', tick)).toMatch(/^[0-9a-f]{32}$/);
    expect(executionIdFor('s-1', tick)).not.toBe(executionIdFor('s-1', other));
    expect(executionIdFor('s-1', tick)).not.toBe(executionIdFor('s-2', tick));
    expect(idempotencyKeyFor('0198c0de-0000-7000-8000-000000000001', tick)).toBe('schedule:0198c0de-0000-7000-8000-000000000001:2022-03-22T18:59:43Z');
    expect(idempotencyKeyFor('s-1', tick)).not.toBe(idempotencyKeyFor('s-1', other));
    expect(() => idempotencyKeyFor('', tick)).toThrow('non-empty');
  });

  it('never collide across schedules and ticks (distinct inputs, distinct keys)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.uuid(), fc.integer({ min: 0, max: 10_000_000 })), { minLength: 2, maxLength: 50, selector: ([id, m]) => `${id}/${m}` }),
        (pairs) => {
          const at = (m: number) => new Date(Date.UTC(2026, 0, 1) + m * 60_000);
          expect(new Set(pairs.map(([id, m]) => executionIdFor(id, at(m)))).size).toBe(pairs.length);
          expect(new Set(pairs.map(([id, m]) => idempotencyKeyFor(id, at(m)))).size).toBe(pairs.length);
        },
      ),
    );
  });
});

describe('flexible time window', () => {
  const window = (minutes: number): FlexibleTimeWindow => ({ mode: 'FLEXIBLE', maximumWindowInMinutes: minutes });

  it('OFF fires on the scheduled time', () => {
    expect(flexibleOffsetMs('s-1', tick, { mode: 'OFF' })).toBe(0);
  });

  it('is a pinned function of schedule and tick (auditors recompute it; docs/schedules.md)', () => {
    // SHA-256("flexible\ns-1\n2022-03-22T18:59:43Z"), first 48 bits, mod 900 s (values computed with Python's hashlib)
    expect(flexibleOffsetMs('s-1', tick, window(15))).toBe(flexibleOffsetMs('s-1', new Date('2022-03-22T18:59:43.000Z'), window(15)));
    expect(flexibleOffsetMs('s-1', tick, window(15))).toBe(895_000);
    expect(flexibleOffsetMs('another', tick, window(15))).toBe(158_000);
  });

  it('lies in [0, window), on whole seconds', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.integer({ min: 0, max: 7_000_000_000_000 }), fc.integer({ min: 1, max: 1440 }), (id, ms, minutes) => {
        const offset = flexibleOffsetMs(id, new Date(ms), window(minutes));
        expect(offset).toBeGreaterThanOrEqual(0);
        expect(offset).toBeLessThan(minutes * 60_000);
        expect(offset % 1000).toBe(0);
      }),
    );
  });

  it('spreads the ticks of a schedule over the window', () => {
    // deterministic: 10 000 minutely ticks of one schedule over a 60-minute window, in ten buckets
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const offset = flexibleOffsetMs('spread', new Date(Date.UTC(2026, 0, 1) + i * 60_000), window(60));
      buckets[Math.floor(offset / 360_000)]! += 1;
    }
    for (const b of buckets) expect(b).toBeGreaterThan(900);
    for (const b of buckets) expect(b).toBeLessThan(1100);
  });

  it('validates the window', () => {
    expect(checkFlexibleTimeWindow({ mode: 'OFF' })).toEqual({ mode: 'OFF' });
    expect(checkFlexibleTimeWindow({ mode: 'FLEXIBLE', maximumWindowInMinutes: 1440 })).toEqual(window(1440));
    const refusals: [unknown, string, string][] = [
      [{ mode: 'FLEXIBLE' }, 'FlexibleTimeWindow.MaximumWindowInMinutes', 'is required with Mode FLEXIBLE'],
      [{ mode: 'FLEXIBLE', maximumWindowInMinutes: 1441 }, 'FlexibleTimeWindow.MaximumWindowInMinutes', 'must be a whole number of minutes 1–1440'],
      [{ mode: 'FLEXIBLE', maximumWindowInMinutes: 0 }, 'FlexibleTimeWindow.MaximumWindowInMinutes', '1–1440'],
      [{ mode: 'FLEXIBLE', maximumWindowInMinutes: 2.5 }, 'FlexibleTimeWindow.MaximumWindowInMinutes', '1–1440'],
      [{ mode: 'FLEXIBLE', maximumWindowInMinutes: '15' }, 'FlexibleTimeWindow.MaximumWindowInMinutes', '1–1440'],
      [{ mode: 'OFF', maximumWindowInMinutes: 5 }, 'FlexibleTimeWindow.MaximumWindowInMinutes', 'only allowed with Mode FLEXIBLE'],
      [{ mode: 'ON' }, 'FlexibleTimeWindow.Mode', 'must be OFF or FLEXIBLE'],
      [null, 'FlexibleTimeWindow', 'must be an object'],
    ];
    for (const [input, field, reason] of refusals) {
      try {
        checkFlexibleTimeWindow(input);
        expect.unreachable(JSON.stringify(input));
      } catch (e) {
        expect(e).toBeInstanceOf(ScheduleValidationError);
        expect((e as ScheduleValidationError).field).toBe(field);
        expect((e as ScheduleValidationError).reason).toContain(reason);
      }
    }
  });
});

describe('tickEvent', () => {
  const input = { template: '{"n": <aws.scheduler.attempt-number>, "id": "<aws.scheduler.execution-id>", "at": "<aws.scheduler.scheduled-time>"}', scheduleArn: ARN, scheduledTime: formatScheduledTime(tick), executionId: ctx.executionId };

  it('renders the event of each attempt: only the attempt number changes', () => {
    expect([1, 2, 3].map((n) => tickEvent(input, n))).toEqual([1, 2, 3].map((n) => ({ n, id: ctx.executionId, at: '2022-03-22T18:59:43Z' })));
  });

  it('keeps text that is not JSON as text, and refuses attempt 0', () => {
    expect(tickEvent({ ...input, template: 'attempt <aws.scheduler.attempt-number>' }, 2)).toBe('attempt 2');
    expect(() => tickEvent(input, 0)).toThrow('attempt number must be a whole number ≥ 1');
  });
});
