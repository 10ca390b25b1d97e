// The group commit's rules, over a write that fails as a statement would: whole groups,
// never a part. Whatever the grouping and wherever the faulty items are, exactly those
// fail, every other item gets its own output once, and the retry policy tells an
// unreachable database and a conflict from a fault.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupCommit, withRetries } from './group-commit.ts';

const fault = (item: number) => Object.assign(new Error(`item ${item} is at fault`), { code: 'P0001' });
const unavailable = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const deadlock = () => Object.assign(new Error('deadlock detected'), { code: '40P01' });

/** A statement-like write: refuses the whole group if any item in it is bad; records each item it wrote. */
function statement(bad: Set<number>) {
  const written: number[] = [];
  const groups: number[][] = [];
  const write = async (items: readonly number[]) => {
    groups.push([...items]);
    await new Promise((r) => setImmediate(r));
    const culprit = items.find((i) => bad.has(i));
    if (culprit !== undefined) throw fault(culprit);
    written.push(...items);
    return items.map((i) => i * 10);
  };
  return { write, written, groups };
}

describe('GroupCommit', () => {
  it('property: only the items at fault fail; every other resolves with its own output, written once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }),
        fc.array(fc.nat({ max: 299 }), { maxLength: 6 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 4 }),
        async (n, badList, maxBatch, maxConcurrentFlushes) => {
          const bad = new Set(badList.filter((b) => b < n));
          const s = statement(bad);
          const commit = new GroupCommit(s.write, { maxBatch, maxConcurrentFlushes });
          const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => commit.submit(i)));
          settled.forEach((r, i) => {
            if (bad.has(i)) expect(r).toMatchObject({ status: 'rejected', reason: { message: `item ${i} is at fault` } });
            else expect(r).toEqual({ status: 'fulfilled', value: i * 10 });
          });
          expect([...s.written].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !bad.has(i)));
          expect(s.groups.every((g) => g.length <= maxBatch)).toBe(true);
          await commit.drained();
          expect(commit.size).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('groups what arrives while a write is in flight', async () => {
    const s = statement(new Set());
    const commit = new GroupCommit(s.write, { maxConcurrentFlushes: 1 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => commit.submit(i)));
    expect(s.groups.map((g) => g.length)).toEqual([1, 99]);
  });

  it('an item refused alone is replaced once when the caller says so; a refused replacement fails with the first error', async () => {
    const s = statement(new Set([3, 103, 7, 107]));
    const commit = new GroupCommit(s.write, { replace: (i) => (i === 7 || i === 107 ? 107 : i + 100) });
    const settled = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => commit.submit(i)));
    expect(settled[5]).toEqual({ status: 'fulfilled', value: 50 });
    // 3 became 103, which is also bad: rejected with 3's own error
    expect(settled[3]).toMatchObject({ status: 'rejected', reason: { message: 'item 3 is at fault' } });
    expect(s.written).not.toContain(103);
    // replacements are not replaced again
    expect(settled[7]).toMatchObject({ status: 'rejected', reason: { message: 'item 7 is at fault' } });
    const ok = new GroupCommit(statement(new Set([4])).write, { replace: () => 40 });
    expect(await Promise.all([1, 4].map((i) => ok.submit(i)))).toEqual([10, 400]);
  });

  it('an unreachable database is retried for retryForMs, not split; then every item fails with it', async () => {
    let calls = 0;
    const groups: number[] = [];
    const commit = new GroupCommit(
      async (items: readonly number[]) => {
        calls++;
        groups.push(items.length);
        throw unavailable();
      },
      { retry: { retryForMs: 500 }, maxConcurrentFlushes: 1 },
    );
    const settled = await Promise.allSettled([1, 2, 3].map((i) => commit.submit(i)));
    expect(settled.every((r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'ECONNREFUSED')).toBe(true);
    expect(calls).toBeGreaterThanOrEqual(3);
    // never a group split into halves
    expect(new Set(groups)).toEqual(new Set([1, 2]));
  });

  it('with no retry time, an unreachable database fails at once', async () => {
    let calls = 0;
    const commit = new GroupCommit(async () => {
      calls++;
      throw unavailable();
    });
    await expect(commit.submit(1)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(calls).toBe(1);
  });
});

describe('withRetries', () => {
  it('writes again after a deadlock or serialization failure (nothing was written), a few times', async () => {
    let calls = 0;
    expect(
      await withRetries(async () => {
        if (++calls < 3) throw deadlock();
        return 'ok';
      }, { retryForMs: 0 }),
    ).toBe('ok');
    calls = 0;
    await expect(
      withRetries(async () => {
        calls++;
        throw deadlock();
      }, { retryForMs: 0 }),
    ).rejects.toMatchObject({ code: '40P01' });
    expect(calls).toBe(6);
  });

  it('comes back once the database does', async () => {
    let calls = 0;
    expect(
      await withRetries(async () => {
        if (++calls < 4) throw unavailable();
        return calls;
      }, { retryForMs: 10_000 }),
    ).toBe(4);
  });

  it('does not retry an item fault', async () => {
    let calls = 0;
    await expect(
      withRetries(async () => {
        calls++;
        throw fault(1);
      }, { retryForMs: 10_000 }),
    ).rejects.toMatchObject({ code: 'P0001' });
    expect(calls).toBe(1);
  });
});
