// One LISTEN connection per process, and a work channel signalled only when async work
// becomes due: sync traffic and the workers' own `started` events wake no claim loop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordOutcomes } from '../../db/attempts.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { connectClient } from '../../db/connection.ts';
import { listenToLedger } from '../../db/notifications.ts';
import { EVENTS_CHANNEL, WORK_CHANNEL } from '../../db/writer.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { fn, invokeAsync, startWorker, statusOf, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
const workers: RunningWorker[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

const claims = async (w: RunningWorker) => Number(/ledger_worker_claim_batch_size_count (\d+)/.exec(await w.registry.metrics())?.[1] ?? 0);

// as the login role: the application role may not read other sessions' statements
async function listenConnections(): Promise<number> {
  const { rows } = await adminQuery(t.ownerUrl, `select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen %'`);
  return (rows[0] as { n: number }).n;
}

describe('notifications', () => {
  it('a worker (claim loop and event-source poller) LISTENs on one connection', async () => {
    const before = await listenConnections();
    const w = await startWorker(t.db, t.url, { pollIntervalMs: 60_000 });
    workers.push(w);
    await waitFor('the LISTEN connection', async () => (await listenConnections()) > before);
    // both channels, one connection
    expect((await listenConnections()) - before).toBe(1);
    await w.stop();
    workers.splice(workers.indexOf(w), 1);
    await waitFor('the LISTEN connection to close', async () => (await listenConnections()) === before);
  });

  it('sync traffic does not wake the claim loop; an async accept does', async () => {
    const w = await startWorker(t.db, t.url, { pollIntervalMs: 60_000 });
    workers.push(w);
    const echo = await fn(t.db, 'notify-echo', 'echo.ts');
    // a warm-up async invocation proves the worker listens and claims
    const [warm] = await invokeAsync(t.db, echo, [{ warm: true }]);
    await waitFor('warm-up done', async () => (await statusOf(t.db, warm as string)) === 'succeeded');

    // a second listener in the test sees every append, so we know the traffic was notified
    const seen = listenToLedger(t.ownerUrl);
    let events = 0;
    seen.on(EVENTS_CHANNEL, (p) => p !== null && events++);
    await waitFor('test listener', async () => seen.connected);
    const before = await claims(w);

    // 40 sync invocations, committed one by one: accepted+started, then succeeded
    for (let i = 0; i < 40; i++) {
      const [a] = await acceptInvocations(t.db, [{ fn: echo, invocationType: 'sync', payload: i, startedBy: 'api-elsewhere', leaseMs: 60_000 }]);
      const state = a?.state;
      if (!state) throw new Error('not accepted');
      await recordOutcomes(t.db, [{ state, policy: echo, outcome: { ok: true, result: i, durationMs: 1 } }]);
    }
    await waitFor('the sync traffic to be notified', async () => events >= 80);
    // notifications of one connection arrive in commit order: once the async one is
    // claimed, the worker has seen every sync notification before it
    const [id] = await invokeAsync(t.db, echo, [{ after: 'sync' }]);
    await waitFor('async done', async () => (await statusOf(t.db, id as string)) === 'succeeded');
    const woke = (await claims(w)) - before;
    // the accept's leading-edge wake-up, at most one trailing one: not one per sync commit
    expect(woke).toBeGreaterThanOrEqual(1);
    expect(woke).toBeLessThanOrEqual(2);
    await seen.close();
    await w.stop();
    workers.splice(workers.indexOf(w), 1);
  });

  it('the work channel is notified for due async work only', async () => {
    const l = listenToLedger(t.ownerUrl);
    const got: string[] = [];
    l.on(WORK_CHANNEL, (p) => p !== null && got.push('work'));
    l.on(EVENTS_CHANNEL, (p) => p !== null && got.push('events'));
    await waitFor('listener', async () => l.connected);
    const f = await fn(t.db, 'notify-work', 'echo.ts');
    await acceptInvocations(t.db, [{ fn: f, invocationType: 'sync', payload: 1, startedBy: 'x', leaseMs: 60_000 }]);
    await waitFor('sync notified', async () => got.length >= 1);
    expect(got).toEqual(['events']);
    await acceptInvocations(t.db, [{ fn: f, invocationType: 'async', payload: 2 }]);
    await waitFor('async notified', async () => got.length >= 3);
    expect(got.slice(1).sort()).toEqual(['events', 'work']);
    await l.close();
  });

  it('sends one statement at a time on its connection, however fast handlers come and go', async () => {
    // pg queues a query sent while another runs, a use it deprecates and pg 9 removes;
    // this counts the statements in flight on the real LISTEN connection
    let inFlight = 0;
    let most = 0;
    const l = listenToLedger(t.ownerUrl, {
      connect: async () => {
        const c = await connectClient(t.ownerUrl);
        const query = c.query.bind(c) as (sql: string) => Promise<unknown>;
        (c as unknown as { query: (sql: string) => Promise<unknown> }).query = async (sql: string) => {
          most = Math.max(most, ++inFlight);
          try {
            return await query(sql);
          } finally {
            inFlight--;
          }
        };
        return c;
      },
    });
    const offs = [l.on('concurrent_a', () => {})];
    await waitFor('listener', async () => l.connected);
    // channels added and dropped in one tick: each one a LISTEN or an UNLISTEN
    for (const ch of ['concurrent_b', 'concurrent_c', 'concurrent_d']) offs.push(l.on(ch, () => {}));
    offs.pop()?.();
    offs.pop()?.();
    const got: string[] = [];
    offs.push(l.on(WORK_CHANNEL, (p) => p !== null && got.push(p)));
    const f = await fn(t.db, 'notify-serial', 'echo.ts');
    await waitFor('listening on the work channel', async () => {
      await acceptInvocations(t.db, [{ fn: f, invocationType: 'async', payload: 1 }]);
      return got.length > 0;
    });
    expect(most).toBe(1);
    for (const off of offs) off();
    await l.close();
  });

  it('reconnects after its connection is killed and tells every handler to look again', async () => {
    const l = listenToLedger(t.ownerUrl, { maxBackoffMs: 200 });
    const got: (string | null)[] = [];
    l.on(WORK_CHANNEL, (p) => got.push(p));
    await waitFor('listener', async () => l.connected);
    // the first connect's look-again hint is not the one this test waits for
    expect(got).toEqual([null]);
    got.length = 0;
    await adminQuery(t.ownerUrl, `select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and query ilike 'listen %' and pid <> pg_backend_pid()`);
    await waitFor('the look-again hint', async () => got.includes(null));
    await waitFor('reconnected', async () => l.connected);
    const f = await fn(t.db, 'notify-reconnect', 'echo.ts');
    await acceptInvocations(t.db, [{ fn: f, invocationType: 'async', payload: 1 }]);
    await waitFor('notified after the reconnect', async () => got.includes(''));
    await l.close();
    // the worker of the first tests may have lost its connection too; it reconnects on its own
  });
});
