// Runtimes.reserve: a sync invoke takes its thread before it writes anything, and is
// refused (with a time to retry after) instead of queueing past the function's timeout.
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, attemptRequest, moduleFunction } from './test-fixtures.ts';
import { createRuntimes } from './index.ts';

// one thread per memory size: holding it makes the pool full
const runtimes = createRuntimes({ functionsDir: FIXTURES_DIR, poolSize: 1 });
afterAll(() => runtimes.close());

describe('reserve', () => {
  it('grants a free thread at once and runs the attempt on it', async () => {
    const fn = moduleFunction('thread-id.ts', { memoryMb: 70 });
    const slot = await runtimes.reserve(fn, { maxWaitMs: 1_000 });
    expect(slot.granted).toBe(true);
    if (!slot.granted) return;
    expect(await slot.run(attemptRequest())).toMatchObject({ ok: true });
    // the thread is free again
    expect(await runtimes.run(fn, attemptRequest())).toMatchObject({ ok: true });
  });

  it('admits one waiter per thread before any attempt was timed, refuses the next at once, and hands a released thread on', async () => {
    const fn = moduleFunction('thread-id.ts', { memoryMb: 72 });
    const held = await runtimes.reserve(fn, { maxWaitMs: 60_000 });
    expect(held.granted).toBe(true);
    const waiting = runtimes.reserve(fn, { maxWaitMs: 60_000 });
    const refused = await runtimes.reserve(fn, { maxWaitMs: 60_000 });
    expect(refused).toMatchObject({ granted: false, reason: 'busy' });
    expect(refused.granted || refused.retryAfterMs).toBeGreaterThanOrEqual(1_000);
    if (held.granted) held.release();
    const next = await waiting;
    expect(next.granted).toBe(true);
    if (next.granted) expect(await next.run(attemptRequest())).toMatchObject({ ok: true });
  });

  it('refuses a waiter that got no thread within maxWaitMs, and one whose caller went away', async () => {
    const fn = moduleFunction('thread-id.ts', { memoryMb: 74 });
    const held = await runtimes.reserve(fn, { maxWaitMs: 60_000 });
    expect(held.granted).toBe(true);
    expect(await runtimes.reserve(fn, { maxWaitMs: 50 })).toMatchObject({ granted: false, reason: 'busy' });

    const caller = new AbortController();
    const waiting = runtimes.reserve(fn, { maxWaitMs: 60_000, signal: caller.signal });
    caller.abort(new Error('client closed the connection'));
    expect(await waiting).toMatchObject({ granted: false, reason: 'aborted' });
    if (held.granted) held.release();
  });

  it('after timing attempts, admits as many waiters as can start within maxWaitMs', async () => {
    const fn = moduleFunction('thread-id.ts', { memoryMb: 76 });
    // a few quick attempts teach the pool its mean hold time (milliseconds)
    for (let i = 0; i < 5; i++) expect(await runtimes.run(fn, attemptRequest())).toMatchObject({ ok: true });
    const held = await runtimes.reserve(fn, { maxWaitMs: 60_000 });
    expect(held.granted).toBe(true);
    // a minute's wait covers many millisecond attempts: two more callers wait rather than being refused
    const second = runtimes.reserve(fn, { maxWaitMs: 60_000 });
    const third = runtimes.reserve(fn, { maxWaitMs: 60_000 });
    if (held.granted) held.release();
    const s2 = await second;
    expect(s2.granted).toBe(true);
    if (s2.granted) expect(await s2.run(attemptRequest())).toMatchObject({ ok: true });
    const s3 = await third;
    expect(s3.granted).toBe(true);
    if (s3.granted) s3.release();
  });

  it('inline and HTTP functions need no thread: granted at once', async () => {
    const inline = moduleFunction('throws.ts#syncValue', { isolation: 'inline' });
    const slot = await runtimes.reserve(inline, { maxWaitMs: 1 });
    expect(slot.granted).toBe(true);
    if (slot.granted) expect(await slot.run(attemptRequest(1))).toMatchObject({ ok: true, result: { sync: 1 } });
  });

  it('a held thread that saw a stray error is not used: the attempt gets a fresh thread', async () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    const own = createRuntimes({ functionsDir: FIXTURES_DIR, poolSize: 1, logger });
    try {
      const which = moduleFunction('late.ts#whichThread');
      const before = await own.run(which, attemptRequest());
      // returns, leaving a timer that throws 50 ms later; the thread is reserved meanwhile
      expect(await own.run(moduleFunction('late.ts#throwLater'), attemptRequest({ ms: 50 }))).toMatchObject({ ok: true });
      const held = await own.reserve(which, { maxWaitMs: 60_000 });
      expect(held.granted).toBe(true);
      while (!warnings.join('').includes('runtime thread retired')) await new Promise((r) => setTimeout(r, 10));
      if (!held.granted) return;
      const after = await held.run(attemptRequest());
      expect(after.ok).toBe(true);
      expect(after.ok && after.result).not.toBe(before.ok && before.result);
    } finally {
      await own.close();
    }
  });
});
