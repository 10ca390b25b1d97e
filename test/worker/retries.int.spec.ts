// Retries with backoff, dead letters, redrive and cancel, driven by the worker.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryDelayMs } from '../../db/lifecycle.ts';
import { cancel, redrive } from '../../db/invocations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { eventsOf, eventTypes, fn, invokeAsync, startWorker, statusOf, terminal, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;
let dir: string;

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'worker-retries-'));
  worker = await startWorker(t.db, t.url);
});

afterAll(async () => {
  await worker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('retries', () => {
  it('a function that always throws is tried 1 + maxRetries times, then dead-lettered', async () => {
    const f = await fn(t.db, 'always-throws', 'always-throws.ts', { maxRetries: 2, retryBaseDelayMs: 10 });
    const [id] = await invokeAsync(t.db, f, [{}]);
    await waitFor('dead letter', async () => (await statusOf(t.db, id as string)) === 'dead_lettered');
    expect(await eventTypes(t.db, id as string)).toEqual([
      'accepted', 'started', 'failed', 'retried', 'started', 'failed', 'retried', 'started', 'failed', 'dead_lettered',
    ]);
    const events = await eventsOf(t.db, id as string);
    expect(events.at(-1)?.data).toEqual({ reason: 'RetriesExhausted' });
    expect(events.filter((e) => e.type === 'started').map((e) => e.data.workerId)).toEqual([worker.workerId, worker.workerId, worker.workerId]);
    expect(events.filter((e) => e.type === 'failed').map((e) => e.data.willRetry)).toEqual([true, true, false]);
  });

  it('retried.runAt follows retryBaseDelayMs * 2^(n-1) within the jitter, capped by retryMaxDelayMs', async () => {
    const base = 200;
    const max = 500;
    const f = await fn(t.db, 'backoff', 'always-throws.ts', { maxRetries: 3, retryBaseDelayMs: base, retryMaxDelayMs: max });
    const [id] = await invokeAsync(t.db, f, [{}]);
    await waitFor('dead letter', async () => (await statusOf(t.db, id as string)) === 'dead_lettered', 30_000);
    const events = await eventsOf(t.db, id as string);
    const retried = events.filter((e) => e.type === 'retried');
    expect(retried).toHaveLength(3);
    retried.forEach((r, i) => {
      const n = i + 1;
      const exp = Math.min(max, base * 2 ** (n - 1));
      const delay = r.data.delayMs as number;
      // "equal jitter": between half and all of the exponential delay
      expect(delay).toBeGreaterThanOrEqual(retryDelayMs(n, base, max, 0));
      expect(delay).toBeLessThanOrEqual(retryDelayMs(n, base, max, 1));
      expect(delay).toBeGreaterThanOrEqual(exp / 2 - 1);
      // runAt is the delay after the moment the outcome was decided, which lies between the
      // attempt's start and the failure's commit (one machine's clock; no slack needed)
      const failedAt = events[events.indexOf(r) - 1]?.occurred_at as Date;
      const startedAt = events[events.indexOf(r) - 2]?.occurred_at as Date;
      const decidedAt = new Date(r.data.runAt as string).getTime() - delay;
      expect(decidedAt).toBeGreaterThanOrEqual(startedAt.getTime());
      expect(decidedAt).toBeLessThanOrEqual(failedAt.getTime());
      // and the next attempt did not start before it was due
      const nextStart = events[events.indexOf(r) + 1];
      expect(nextStart?.type).toBe('started');
      expect((nextStart?.occurred_at as Date).getTime()).toBeGreaterThanOrEqual(new Date(r.data.runAt as string).getTime() - 50);
    });
  });

  it('a redriven dead letter gets a new attempt with a fresh retry budget and succeeds once the cause is fixed', async () => {
    const flag = path.join(dir, 'fixed');
    const f = await fn(t.db, 'flag-file', 'flag-file.ts', { maxRetries: 1, retryBaseDelayMs: 10 });
    const [id] = await invokeAsync(t.db, f, [{ flag }]);
    await waitFor('dead letter', async () => (await statusOf(t.db, id as string)) === 'dead_lettered');
    await writeFile(flag, 'ok');
    await redrive(t.db, [id as string], 'test');
    await waitFor('success', async () => terminal(await statusOf(t.db, id as string)));
    expect(await statusOf(t.db, id as string)).toBe('succeeded');
    expect(await eventTypes(t.db, id as string)).toEqual([
      'accepted', 'started', 'failed', 'retried', 'started', 'failed', 'dead_lettered', 'redriven', 'started', 'succeeded',
    ]);
    const events = await eventsOf(t.db, id as string);
    expect(events.at(-1)?.data).toMatchObject({ attempt: 3, result: { fixed: true } });
  });

  it('redrives many dead letters at once', async () => {
    const flag = path.join(dir, 'fixed-many');
    const f = await fn(t.db, 'flag-many', 'flag-file.ts', { maxRetries: 0 });
    const ids = await invokeAsync(t.db, f, Array.from({ length: 5 }, () => ({ flag })));
    await waitFor('dead letters', async () => (await Promise.all(ids.map((id) => statusOf(t.db, id)))).every((s) => s === 'dead_lettered'));
    await writeFile(flag, 'ok');
    await redrive(t.db, ids, 'test');
    await waitFor('successes', async () => (await Promise.all(ids.map((id) => statusOf(t.db, id)))).every((s) => s === 'succeeded'));
  });

  it('a cancelled retry is never attempted again, also once it is due', async () => {
    // the retry is due 3-6 s after the failure: time enough to cancel it first
    const f = await fn(t.db, 'slow-retry', 'always-throws.ts', { maxRetries: 2, retryBaseDelayMs: 6_000 });
    const [id] = await invokeAsync(t.db, f, [{}]);
    await waitFor('retry scheduled', async () => (await statusOf(t.db, id as string)) === 'retry_scheduled');
    await cancel(t.db, [id as string], 'test');
    const runAt = new Date((await eventsOf(t.db, id as string)).find((e) => e.type === 'retried')?.data.runAt as string);
    // wait until the retry would have been due, then until the worker has claimed work accepted after that
    await waitFor('the retry to be due', async () => Date.now() > runAt.getTime() + 100, 30_000);
    const sentinel = await fn(t.db, 'sentinel', 'echo.ts');
    const [s] = await invokeAsync(t.db, sentinel, [{}]);
    await waitFor('a later claim', async () => (await statusOf(t.db, s as string)) === 'succeeded', 30_000);
    expect(await eventTypes(t.db, id as string)).toEqual(['accepted', 'started', 'failed', 'retried', 'cancelled']);
  }, 60_000);
});
