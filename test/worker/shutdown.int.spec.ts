// Graceful shutdown (running attempts finish, nothing new is claimed), lease heartbeats,
// lease expiry of an attempt whose worker vanished, and the metrics a worker exposes.
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { acceptInvocations } from '../../db/invocations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { eventsOf, eventTypes, fn, invokeAsync, startWorker, statusOf, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
const cleanup: RunningWorker[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
});

// one worker at a time, so each test knows who ran what
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await Promise.all(cleanup.splice(0).map((w) => w.stop()));
});

describe('shutdown', () => {
  it('stop() waits for running attempts and claims nothing new', async () => {
    const worker = await startWorker(t.db, t.url, { concurrency: 2 });
    const f = await fn(t.db, 'gauge-slow', 'gauge.ts', { maxRetries: 0 });
    const ids = await invokeAsync(t.db, f, [{ ms: 600 }, { ms: 600 }, { ms: 600 }, { ms: 600 }]);
    await waitFor('two running', async () => {
      const statuses = await Promise.all(ids.map((id) => statusOf(t.db, id)));
      return statuses.filter((s) => s === 'running').length === 2;
    });
    await worker.stop();
    const statuses = await Promise.all(ids.map((id) => statusOf(t.db, id)));
    expect(statuses.filter((s) => s === 'succeeded')).toHaveLength(2);
    expect(statuses.filter((s) => s === 'queued')).toHaveLength(2);
    // the rest is left for another worker
    const next = await startWorker(t.db, t.url);
    cleanup.push(next);
    await waitFor('rest done', async () => (await Promise.all(ids.map((id) => statusOf(t.db, id)))).every((s) => s === 'succeeded'));
  });

  it('heartbeats keep an attempt that waited for a thread leased past timeoutMs + grace', async () => {
    // one thread, two attempts: the second is started (and leased for 1000 + 300 ms) at
    // once but waits ~700 ms for the thread, so it ends after its first lease expired
    const worker = await startWorker(t.db, t.url, { leaseGraceMs: 300, concurrency: 2, reapIntervalMs: 100 }, { poolSize: 1 });
    cleanup.push(worker);
    const f = await fn(t.db, 'long', 'gauge.ts', { timeoutMs: 1_000, maxRetries: 0, isolation: 'thread', memoryMb: 64 });
    const ids = await invokeAsync(t.db, f, [{ ms: 700 }, { ms: 700 }]);
    await waitFor('done', async () => (await Promise.all(ids.map((id) => statusOf(t.db, id)))).every((s) => s === 'succeeded'), 15_000);
    for (const id of ids) expect(await eventTypes(t.db, id)).toEqual(['accepted', 'started', 'succeeded']);
  });

  it('an attempt whose worker vanished is recorded as WorkerLost and retried', async () => {
    const worker = await startWorker(t.db, t.url, { leaseGraceMs: 200 });
    cleanup.push(worker);
    const f = await fn(t.db, 'orphan', 'noop.ts', { maxRetries: 1, retryBaseDelayMs: 10, timeoutMs: 100 });
    // an attempt started by a worker that no longer exists (as a crashed process leaves it)
    const [accepted] = await acceptInvocations(t.db, [{ fn: f, invocationType: 'async', payload: {}, startedBy: 'ghost-worker', leaseMs: 100 }]);
    const id = accepted?.invocationId as string;
    await waitFor('recovered', async () => (await statusOf(t.db, id)) === 'succeeded', 10_000);
    const events = await eventsOf(t.db, id);
    expect(events.map((e) => e.type)).toEqual(['accepted', 'started', 'failed', 'retried', 'started', 'succeeded']);
    expect(events[2]?.data).toMatchObject({ attempt: 1, willRetry: true, error: { errorType: 'WorkerLost' } });
    expect((events[2]?.data.error as { errorMessage: string }).errorMessage).toContain('ghost-worker');
    expect(events[4]?.data.workerId).toBe(worker.workerId);
    const metrics = await worker.registry.metrics();
    expect(metrics).toMatch(/ledger_worker_lease_expiries_total \d/);
  });

  it('a sync invocation whose API process died is failed with WorkerLost', async () => {
    const worker = await startWorker(t.db, t.url, { leaseGraceMs: 200 });
    cleanup.push(worker);
    const f = await fn(t.db, 'sync-orphan', 'noop.ts');
    const [accepted] = await acceptInvocations(t.db, [{ fn: f, invocationType: 'sync', payload: {}, startedBy: 'dead-api', leaseMs: 100 }]);
    const id = accepted?.invocationId as string;
    await waitFor('failed', async () => (await statusOf(t.db, id)) === 'failed', 10_000);
    expect(await eventTypes(t.db, id)).toEqual(['accepted', 'started', 'failed']);
  });

  it('exposes invocation, duration, claim, queue and lease metrics', async () => {
    const worker = await startWorker(t.db, t.url);
    cleanup.push(worker);
    const f = await fn(t.db, 'metered', 'noop.ts');
    const ids = await invokeAsync(t.db, f, [{}, {}, {}]);
    await waitFor('done', async () => (await Promise.all(ids.map((id) => statusOf(t.db, id)))).every((s) => s === 'succeeded'));
    // the outcome counter is bumped after the commit: give it a moment
    await waitFor('counted', async () => /ledger_worker_invocations_total\{function="metered",outcome="succeeded"\} 3/.test(await worker.registry.metrics()));
    const text = await worker.registry.metrics();
    expect(text).toMatch(/ledger_worker_attempt_duration_seconds_count\{function="metered",outcome="ok"\} 3/);
    expect(text).toMatch(/ledger_worker_claim_batch_size_count [1-9]\d*/); // the three were claimed: not 0
    expect(text).toMatch(/ledger_queue_depth\{state="due"\} \d+/);
    expect(text).toMatch(/ledger_queue_oldest_due_seconds \d/);
    expect(text).toMatch(/ledger_worker_lease_expiries_total/);
    // finished invocations leave the queue
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.queue where invocation_id = any(${ids}::uuid[])`.execute(t.db);
    expect(rows[0]?.n).toBe(0);
  });
});
