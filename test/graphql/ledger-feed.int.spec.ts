// The ledger feed itself (apps/api/graphql/feed.ts, reads in db/subscriptions.ts): transactions that commit out of order are
// neither skipped nor delivered twice, and the feed works without LISTEN (polling).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { listenToLedger } from '../../db/notifications.ts';
import { requireFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { LedgerFeed, type FeedEvent } from '../../apps/api/graphql/feed.ts';
import { createHarness, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.close();
});

async function take(it: AsyncIterator<FeedEvent>, n: number, ms = 90_000): Promise<FeedEvent[]> {
  const out: FeedEvent[] = [];
  const deadline = Date.now() + ms;
  while (out.length < n) {
    const next = await Promise.race([
      it.next(),
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(0, deadline - Date.now()))),
    ]);
    if (next === 'timeout') throw new Error(`timed out after ${out.length} of ${n} events`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

describe('LedgerFeed', () => {
  it('holds back a committed transaction until an older open one ends, then delivers both in tx order, once', { timeout: 240_000 }, async () => {
    const feed = new LedgerFeed({ db: h.t.db, notifications: listenToLedger(h.t.ownerUrl), pollIntervalMs: 200 });
    const sub = feed.subscribe({ functionName: 'echo' });
    const firstEvent = sub.next();
    await new Promise<void>((r) => {
      const check = () => (feed.isRunning ? r() : setTimeout(check, 10));
      check();
    });
    const echo = await requireFunction(h.t.db, 'echo');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let olderWritten!: () => void;
    const written = new Promise<void>((r) => (olderWritten = r));
    // A: takes its xid and position first, commits last
    const older = h.t.db.transaction().execute(async (tx) => {
      const [a] = await acceptInvocations(tx, [{ fn: echo, invocationType: 'async', payload: 'older', idempotencyKey: null }]);
      olderWritten();
      await gate;
      return a?.invocationId as string;
    });
    await written;
    // B: later xid and position, commits first
    const [b] = await acceptInvocations(h.t.db, [{ fn: echo, invocationType: 'async', payload: 'newer', idempotencyKey: null }]);
    // B is committed and visible, but A might still commit below it: nothing may be delivered yet
    const early = await Promise.race([firstEvent.then(() => 'delivered'), new Promise((r) => setTimeout(() => r('held back'), 500))]);
    expect(early).toBe('held back');
    release();
    const aId = await older;
    const [first] = [await firstEvent];
    const rest = await take(sub, 1);
    const got = [first.value as FeedEvent, ...rest];
    expect(got.map((e) => e.invocationId)).toEqual([aId, b?.invocationId]);
    expect(BigInt(got[0]?.txId as string) < BigInt(got[1]?.txId as string)).toBe(true);
    // and nothing else arrives for them
    const more = await Promise.race([sub.next().then(() => 'more'), new Promise((r) => setTimeout(() => r('none'), 300))]);
    expect(more).toBe('none');
    await sub.return?.();
    expect(feed.subscriberCount).toBe(0);
    await feed.close();
  });

  it('polls without LISTEN, and an invocationId subscriber gets the history first', { timeout: 240_000 }, async () => {
    const feed = new LedgerFeed({ db: h.t.db, pollIntervalMs: 50 });
    const echo = await requireFunction(h.t.db, 'echo');
    const [acc] = await acceptInvocations(h.t.db, [{ fn: echo, invocationType: 'async', payload: 1, idempotencyKey: null }]);
    const id = acc?.invocationId as string;
    const sub = feed.subscribe({ invocationId: id });
    const [history] = await take(sub, 1);
    expect(history).toMatchObject({ invocationId: id, seq: 1, type: 'accepted' });
    await h.gql(`mutation { cancelInvocation(id: "${id}") { id } }`);
    const [live] = await take(sub, 1);
    expect(live).toMatchObject({ invocationId: id, seq: 2, type: 'cancelled' });
    await sub.return?.();
    expect(feed.isRunning).toBe(false);
  });

  it('an aborted signal ends the subscription and frees the feed', async () => {
    const feed = new LedgerFeed({ db: h.t.db, pollIntervalMs: 50 });
    const ac = new AbortController();
    const sub = feed.subscribe({ invocationId: randomUUID() }, { signal: ac.signal });
    const pending = sub.next();
    expect(feed.subscriberCount).toBe(1);
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(feed.subscriberCount).toBe(0);
    await feed.close();
  });
});
