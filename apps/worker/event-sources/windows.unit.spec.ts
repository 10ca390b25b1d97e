// Tumbling windows (docs/streams.md, "Tumbling windows"): which records a window's batch
// takes, when its final invocation comes, and what a response must hold. No database.
import { describe, expect, it } from 'vitest';
import type { OpenWindow, StreamRecord } from '../../../db/streams.ts';
import { planWindow, windowResponse, windowTimeOf, type BatchWindow } from './windows.ts';

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, 0) + s * 1000);
const rec = (seq: number, arrivedS: number, data: unknown = {}): StreamRecord => ({
  shardId: 'shardId-000000000000',
  sequenceNumber: seq,
  partitionKey: 'k',
  data: Buffer.from(JSON.stringify(data)),
  arrivedAt: at(arrivedS),
  sourceLsn: null,
});
const native = { sourceTable: null, tumblingWindowInSeconds: 60 };
const open = (startS: number, endS: number, o: Partial<OpenWindow> = {}): OpenWindow => ({ start: at(startS), end: at(endS), state: { n: 1 }, terminatedEarly: false, ...o });
const none = { window: null, windowClosedUntil: null };

describe('planWindow', () => {
  it('opens an epoch-aligned window at the first record and stops the batch at the first record of a later window', () => {
    const p = planWindow(native, none, [rec(1, 5), rec(2, 59), rec(3, 60), rec(4, 61)], at(70));
    expect(p).toMatchObject({ kind: 'records', count: 2, cut: true, window: { start: at(0), end: at(60), state: {}, isFinalInvokeForWindow: false } });
  });

  it('goes on with the open window and its state; once it has ended and holds no more records, its final invocation', () => {
    const w = open(0, 60);
    expect(planWindow(native, { window: w, windowClosedUntil: null }, [rec(5, 30), rec(6, 65)], at(70))).toMatchObject({ kind: 'records', count: 1, window: { state: { n: 1 } } });
    expect(planWindow(native, { window: w, windowClosedUntil: null }, [rec(6, 65)], at(70))).toMatchObject({
      kind: 'final',
      window: { start: at(0), end: at(60), state: { n: 1 }, isFinalInvokeForWindow: true, isWindowTerminatedEarly: false },
    });
    expect(planWindow(native, { window: w, windowClosedUntil: null }, [], at(61))).toMatchObject({ kind: 'final' });
    // not ended yet: nothing until its end
    expect(planWindow(native, { window: w, windowClosedUntil: null }, [], at(50))).toEqual({ kind: 'wait', ms: 10_000 });
  });

  it('counts a record that committed late in the window in progress, never in one already closed', () => {
    expect(planWindow(native, { window: open(60, 120), windowClosedUntil: null }, [rec(7, 30)], at(90))).toMatchObject({ kind: 'records', count: 1, window: { start: at(60) } });
    expect(planWindow(native, { window: null, windowClosedUntil: at(60) }, [rec(7, 30)], at(90))).toMatchObject({ kind: 'records', window: { start: at(60), end: at(120) } });
  });

  it('ends a window early after an oversize state, or at once when the mapping no longer has windows', () => {
    expect(planWindow(native, { window: open(0, 60, { terminatedEarly: true }), windowClosedUntil: null }, [rec(1, 10)], at(20))).toMatchObject({
      kind: 'final',
      window: { isFinalInvokeForWindow: true, isWindowTerminatedEarly: true },
    });
    expect(planWindow({ sourceTable: null, tumblingWindowInSeconds: 0 }, { window: open(0, 60), windowClosedUntil: null }, [], at(20))).toMatchObject({
      kind: 'final',
      window: { isWindowTerminatedEarly: true },
    });
    expect(planWindow(native, none, [], at(20))).toEqual({ kind: 'idle' });
  });

  it('windows change records by their source commit time', () => {
    const r = rec(1, 500, { dynamodb: { ApproximateCreationDateTime: at(5).getTime() / 1000 } });
    expect(windowTimeOf({ sourceTable: 'public.orders' }, r)).toBe(at(5).getTime());
    expect(planWindow({ sourceTable: 'public.orders', tumblingWindowInSeconds: 60 }, none, [r], at(600))).toMatchObject({ window: { start: at(0) } });
  });
});

describe('windowResponse', () => {
  const w: BatchWindow = { start: at(0), end: at(60), state: {}, isFinalInvokeForWindow: false, isWindowTerminatedEarly: false };
  const ok = (result: unknown) => ({ ok: true as const, result, durationMs: 1, log: '' });
  it('takes the state object; without one the invocation failed, except the final one', () => {
    expect(windowResponse(ok({ state: { a: 1 }, batchItemFailures: [] }), w).state).toEqual({ a: 1 });
    for (const bad of [null, {}, { state: [1] }, { state: 'x' }]) {
      const r = windowResponse(ok(bad), w);
      expect(r.run.ok ? null : r.run.error.errorType).toBe('InvalidTumblingWindowResponse');
    }
    expect(windowResponse(ok(null), { ...w, isFinalInvokeForWindow: true }).run.ok).toBe(true);
  });
});
