import { describe, expect, it } from 'vitest';
import { comparePair, diffResults, pointer, summarise, type ReplayOutcome } from './replay-report.ts';

const ok = (result: unknown, durationMs = 10): ReplayOutcome => ({
  invocationId: 'x',
  version: 1,
  alias: null,
  status: 'succeeded',
  ok: true,
  result,
  errorType: null,
  errorMessage: null,
  durationMs,
});
const err = (errorType: string, durationMs = 10): ReplayOutcome => ({ ...ok(null, durationMs), status: 'failed', ok: false, errorType, errorMessage: 'boom' });

describe('diffResults', () => {
  it('is empty for structurally equal values, whatever the key order', () => {
    expect(diffResults({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 })).toEqual([]);
    expect(diffResults(null, null)).toEqual([]);
    expect(diffResults('x', 'x')).toEqual([]);
  });
  it('names every change by its JSON Pointer, sorted by path with numeric segments in order', () => {
    const before = { list: Array.from({ length: 11 }, (_, i) => i), gone: true, 'a/b': 1 };
    const after = { list: [...before.list.slice(0, 2), 99, ...before.list.slice(3), 11], 'a/b': 2, added: 'y' };
    expect(diffResults(before, after)).toEqual([
      { op: 'CHANGE', path: '/a~1b', before: 1, after: 2 },
      { op: 'CREATE', path: '/added', after: 'y' },
      { op: 'REMOVE', path: '/gone', before: true },
      { op: 'CHANGE', path: '/list/2', before: 2, after: 99 },
      { op: 'CREATE', path: '/list/11', after: 11 },
    ]);
  });
  it('reports a change of the whole value when the shapes differ', () => {
    expect(diffResults(1, 2)).toEqual([{ op: 'CHANGE', path: '/', before: 1, after: 2 }]);
    expect(diffResults([1], { 0: 1 })).toEqual([{ op: 'CHANGE', path: '/', before: [1], after: { 0: 1 } }]);
    expect(diffResults(null, {})).toEqual([{ op: 'CHANGE', path: '/', before: null, after: {} }]);
  });
  it('escapes ~ and / in pointers (RFC 6901)', () => {
    expect(pointer(['a~b', 'c/d', 0])).toBe('/a~0b/c~1d/0');
    expect(pointer([])).toBe('/');
  });
});

describe('comparePair', () => {
  it('classifies each pair', () => {
    expect(comparePair(1, {}, ok({ a: 1 }), ok({ a: 1 })).kind).toBe('same');
    expect(comparePair(1, {}, ok({ a: 1 }), ok({ a: 2 })).kind).toBe('changed');
    expect(comparePair(1, {}, ok(1), err('Error')).kind).toBe('error_now');
    expect(comparePair(1, {}, err('Error'), ok(1)).kind).toBe('error_before');
    expect(comparePair(1, {}, err('Error'), err('Error')).kind).toBe('same_error');
    expect(comparePair(1, {}, err('Error'), err('TypeError')).kind).toBe('changed_error');
    expect(comparePair(1, {}, ok(1), null).kind).toBe('pending');
    expect(comparePair(1, {}, ok(1), { ...ok(null), ok: null, status: 'running' }).kind).toBe('pending');
  });
  it('gives the duration change', () => {
    expect(comparePair(1, {}, ok(1, 10), ok(1, 25.5)).durationChangeMs).toBe(15.5);
    expect(comparePair(1, {}, ok(1, 10), null).durationChangeMs).toBeNull();
  });
});

describe('summarise', () => {
  it('counts by kind and puts the worst examples first', () => {
    const pairs = [
      comparePair(1, { n: 1 }, ok({ a: 1 }), ok({ a: 2 }, 11)),
      comparePair(2, { n: 2 }, ok({ a: 1, b: 1 }), ok({ a: 2, b: 2 }, 12)),
      comparePair(3, { n: 3 }, ok(1, 10), ok(1, 100)),
      comparePair(4, { n: 4 }, ok(1, 10), ok(1, 5)),
    ];
    const s = summarise(pairs, 1);
    expect(s.byKind.map((k) => [k.kind, k.count])).toEqual([
      ['same', 2],
      ['changed', 2],
    ]);
    expect(s.byKind[1]?.examples.map((p) => p.ordinal)).toEqual([2]);
    expect(s.durations.slowest.map((p) => p.ordinal)).toEqual([3]);
    expect(s.durations.beforeMedianMs).toBe(10);
    expect(s.durations.afterMedianMs).toBe(11.5);
    expect(s.durations.medianRatio).toBe(1.15);
    expect(s.finished).toBe(4);
  });
});
