// The live feed under the ways it was broken: no resumable position, slow consumers that
// froze the API, a feed that spun while an open transaction held events back, and a
// fan-out that executed every event once per subscriber.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerFeed, formatCursor, parseCursor, type FeedEvent, type Subscription } from '../../apps/api/graphql/feed.ts';
import { liveStats } from '../../apps/api/graphql/live.ts';
import { encodeCursor } from '../../db/cursor.ts';
import { isLedgerError } from '../../db/errors.ts';
import { createFunction, type FunctionVersion } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { listenToLedger, type LedgerNotifications } from '../../db/notifications.ts';
import { EVENTS_CHANNEL } from '../../db/writer.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { createHarness, mount, type Harness } from './harness.ts';
import { openSse, type SseClient } from './sse-client.ts';

let h: Harness;
let notifications: LedgerNotifications;
let feed: LedgerFeed;
let server: Listening;
const clients: SseClient[] = [];

beforeAll(async () => {
  h = await createHarness();
  notifications = listenToLedger(h.t.ownerUrl);
  // a small queue bound, so slow consumers show within a test
  feed = new LedgerFeed({ db: h.t.db, notifications, maxQueuedEvents: 50, maxQueuedBytes: 1 << 20 });
  server = await listen(mount(h.deps, { feed, live: { slowConsumerGraceMs: 60_000 } }).fetch);
});
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.close();
  await feed?.close(0);
  await notifications?.close();
  await h?.close();
});

const fns = new Map<string, FunctionVersion>();
async function fnNamed(name: string): Promise<FunctionVersion> {
  let f = fns.get(name);
  if (!f) fns.set(name, (f = await createFunction(h.t.db, name, { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' })));
  return f;
}

/** n async invocations, committed one statement each; returns their ids in commit order. */
async function accept(name: string, n: number, payload: (i: number) => unknown = (i) => ({ i })): Promise<string[]> {
  const f = await fnNamed(name);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const [a] = await acceptInvocations(h.t.db, [{ fn: f, invocationType: 'async', payload: payload(i) }]);
    ids.push(a?.invocationId as string);
  }
  return ids;
}

async function cursorsOf(ids: string[]): Promise<string[]> {
  const { rows } = await sql<{ txId: string; position: string }>`
    select tx_id::text as "txId", position::text as position from ledger.events
    where invocation_id = any(${ids}::uuid[]) order by tx_id, position`.execute(h.t.db);
  return rows.map(formatCursor);
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function sse(query: string, headers: Record<string, string> = {}, o: { paused?: boolean } = {}): Promise<SseClient> {
  const c = await openSse(server.url, query, headers, o);
  clients.push(c);
  return c;
}

async function take(sub: Subscription, n: number): Promise<FeedEvent[]> {
  const out: FeedEvent[] = [];
  while (out.length < n) {
    const r = await sub.next();
    if (r.done) throw new Error(`ended after ${out.length} of ${n}`);
    out.push(r.value);
  }
  return out;
}

describe('resumable positions', () => {
  it('every SSE event carries its cursor as id; `after` resumes right after it; Last-Event-ID wins', async () => {
    const past = await accept('resume', 6);
    const cursors = await cursorsOf(past);
    const sub = await sse(`subscription { invocationEvents(functionName: "resume", after: "${cursors[1]}") { cursor invocationId seq type } }`);
    await sub.until('the four events after the second', () => sub.events().length >= 4);
    const live = await accept('resume', 2);
    await sub.until('two live events', () => sub.events().length >= 6);
    const got = sub.events();
    expect(got.map((e) => e.invocationId)).toEqual([...past.slice(2), ...live]);
    expect(got.map((e) => e.cursor)).toEqual([...cursors.slice(2), ...(await cursorsOf(live))]);
    // the SSE id of each frame is the event's cursor
    expect(sub.frames.filter((f) => f.event === 'next').map((f) => f.id)).toEqual(got.map((e) => e.cursor));

    // a reconnecting EventSource repeats its request and says where it was
    const again = await sse(`subscription { invocationEvents(functionName: "resume", after: "${cursors[0]}") { invocationId } }`, {
      'last-event-id': cursors[3] as string,
    });
    await again.until('the events after the fourth', () => again.events().length >= 4);
    expect(again.events().map((e) => e.invocationId)).toEqual([...past.slice(4), ...live]);
  });

  it('an EventSource-style GET with Last-Event-ID resumes too', async () => {
    const past = await accept('resume-get', 3);
    const cursors = await cursorsOf(past);
    const query = encodeURIComponent('subscription { invocationEvents(functionName: "resume-get") { cursor invocationId } }');
    const ac = new AbortController();
    const res = await fetch(`${server.url}/graphql?query=${query}`, { headers: { accept: 'text/event-stream', 'last-event-id': cursors[0] as string }, signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while ((text.match(/event: next/g) ?? []).length < 2) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    expect([...text.matchAll(/^id: (.+)$/gm)].map((m) => m[1])).toEqual(cursors.slice(1));
  });

  it('a cursor that is not one is InvalidParameter', async () => {
    const bad = await sse(`subscription { invocationEvents(after: "12:x") { seq } }`);
    await bad.until('the error', () => bad.errors().length > 0 || bad.closed);
    expect(bad.errors()[0]?.extensions?.code).toBe('InvalidParameter');
  });
});

describe('slow consumers', () => {
  it('a subscriber that falls behind is ended with SubscriberTooSlow, its queue released, and resumes where it stopped', async () => {
    const small = new LedgerFeed({ db: h.t.db, notifications, maxQueuedEvents: 5 });
    const sub = small.subscribe({ functionName: 'behind' });
    await until('the feed to run', () => small.isRunning);
    const first = await accept('behind', 2);
    expect((await take(sub, 2)).map((e) => e.invocationId)).toEqual(first);
    const more = await accept('behind', 20);
    let err: unknown;
    await until('the drop', async () => {
      try {
        await Promise.race([sub.next(), new Promise((r) => setTimeout(r, 50))]);
      } catch (e) {
        err = e;
      }
      return err !== undefined;
    });
    expect(isLedgerError(err) && err.code).toBe('SubscriberTooSlow');
    const resumeAfter = (err as { details: { resumeAfter: string } }).details.resumeAfter;
    expect(resumeAfter).toBe((await cursorsOf(first))[1]);
    expect(small.subscriberCount).toBe(0);
    expect(small.stats.dropped).toBe(1);

    const resumed = small.subscribe({ functionName: 'behind' }, { after: parseCursor(resumeAfter) });
    expect((await take(resumed, 20)).map((e) => e.invocationId)).toEqual(more);
    await resumed.return();
    await small.close(0);
  });

  // big events fill the sockets' buffers, then the 1 MB queue bound of each subscriber
  const big = () => ({ blob: randomBytes(192 << 10).toString('base64') });
  // the data field makes each frame as big as the event
  const BIG = 'subscription { invocationEvents(functionName: "big") { cursor invocationId data } }';

  it('over SSE: a reader that fell behind gets SubscriberTooSlow as its last message, with where to resume', { timeout: 180_000 }, async () => {
    const slow = await sse(BIG, {}, { paused: true });
    await until('subscribed', () => feed.subscriberCount >= 1);
    const dropped = feed.stats.dropped;
    for (let i = 0; i < 400 && feed.stats.dropped === dropped; i += 5) await accept('big', 5, big);
    expect(feed.stats.dropped).toBe(dropped + 1);

    slow.resume();
    await slow.until('the end of the stream', () => slow.completed);
    const errors = slow.errors();
    expect(errors).toHaveLength(1);
    expect(errors[0]?.extensions?.code).toBe('SubscriberTooSlow');
    // it resumes after the last event it did receive
    const last = slow.events().at(-1)?.cursor ?? null;
    expect(errors[0]?.extensions?.resumeAfter).toBe(last);
    expect(slow.frames.at(-1)?.event).toBe('complete');
  });

  it('over SSE: a client that reads nothing at all is disconnected after the grace period', { timeout: 180_000 }, async () => {
    const own = new LedgerFeed({ db: h.t.db, notifications, maxQueuedEvents: 50, maxQueuedBytes: 1 << 20 });
    const srv = await listen(mount(h.deps, { feed: own, live: { slowConsumerGraceMs: 200 } }).fetch);
    try {
      const stalled = await openSse(srv.url, BIG, {}, { paused: true });
      clients.push(stalled);
      await until('subscribed', () => own.subscriberCount === 1);
      const cut = liveStats.disconnected;
      for (let i = 0; i < 400 && own.stats.dropped === 0; i += 5) await accept('big', 5, big);
      expect(own.stats.dropped).toBe(1);
      // The grace period ends in a cut when the server still holds frames the client has not
      // taken. When the last of them was already handed to the kernel (loopback's socket
      // buffers are large and grow), the server holds nothing and has nothing to cut: seen
      // once in CI under load, where this test used to wait for a cut that had no reason to
      // come. Either way the server ends up holding nothing for the stalled client.
      const wasCut = await until('the connection to be cut', () => liveStats.disconnected > cut, 10_000).then(
        () => true,
        () => false,
      );
      stalled.resume();
      if (wasCut) {
        // what was already in flight reaches it, then the connection ends: no clean completion
        await stalled.until('the connection to close', () => stalled.closed);
        expect(stalled.completed).toBe(false);
      } else {
        // nothing was held back: reading again, it learns why it was dropped, and the stream ends
        await stalled.until('the end of the stream', () => stalled.completed || stalled.closed);
        expect(liveStats.disconnected > cut || stalled.completed).toBe(true);
        if (stalled.completed) expect(stalled.errors().map((e) => e.extensions?.code)).toEqual(['SubscriberTooSlow']);
      }
    } finally {
      await srv.close();
      await own.close(0);
    }
  });

  it('subscribers with the same operation share one execution per event; the fan-out reads each body once', async () => {
    const query = 'subscription { invocationEvents(functionName: "fanout") { cursor invocationId seq type data } }';
    const subs = await Promise.all(Array.from({ length: 40 }, () => sse(query)));
    const other = await sse('subscription { invocationEvents(functionName: "fanout") { invocationId } }');
    await until('41 subscribers', () => feed.subscriberCount >= 41);
    const executions = liveStats.executions;
    const bodies = feed.stats.bodiesRead;
    const ids = await accept('fanout', 25);
    for (const s of [...subs, other]) await s.until('25 events', () => s.events().length >= 25);
    for (const s of subs) expect(s.events().map((e) => e.invocationId)).toEqual(ids);
    // one execution per event for the 40 alike, one for the other operation
    expect(liveStats.executions - executions).toBe(50);
    expect(feed.stats.bodiesRead - bodies).toBe(25);
  });

  it('reads ids first: bodies only for events someone wants', async () => {
    const watch = await accept('ids-first', 1);
    const bodies = feed.stats.bodiesRead;
    const sub = feed.subscribe({ invocationId: watch[0] as string });
    expect((await take(sub, 1))[0]?.type).toBe('accepted'); // its history
    await accept('ids-first-noise', 30);
    await h.gql(`mutation { cancelInvocation(id: "${watch[0]}") { id } }`);
    expect((await take(sub, 1))[0]?.type).toBe('cancelled');
    // the 30 others passed the reader as ids only (no other subscriber is open now)
    expect(feed.stats.bodiesRead - bodies).toBeLessThanOrEqual(2);
    await sub.return();
  });
});

describe('an open transaction elsewhere', () => {
  it('holds events back without the feed re-reading them: it watches the horizon and backs off', async () => {
    const held = new LedgerFeed({ db: h.t.db, notifications, pollIntervalMs: 1_000, heldBackRetryMs: 25 });
    const sub = held.subscribe({ functionName: 'held' });
    await until('the feed to run', () => held.isRunning);
    const seen = { n: 0 };
    const off = notifications.on(EVENTS_CHANNEL, (p) => p !== null && seen.n++);

    const open = new pg.Client({ connectionString: h.t.ownerUrl });
    await open.connect();
    await open.query('begin');
    await open.query('select txid_current()');
    try {
      const before = { ...held.stats };
      const notified = seen.n;
      const ids = await accept('held', 60);
      await until('the 60 appends to be notified', () => seen.n >= notified + 60);
      // a few backoff rounds pass while the transaction stays open
      await until('the feed to look at the horizon again', () => held.stats.horizonChecks >= before.horizonChecks + 3);
      expect(sub.takeReady(100)).toEqual([]);
      expect(held.stats.entryReads).toBe(before.entryReads);
      expect(held.stats.bodyReads).toBe(before.bodyReads);
      // notifications do not each cost a look: the backoff timer paces it
      expect(held.stats.horizonChecks - before.horizonChecks).toBeLessThan(60);

      await open.query('commit');
      const got = await take(sub, 60);
      expect(got.map((e) => e.invocationId)).toEqual(ids);
    } finally {
      off();
      await open.end();
      await sub.return();
      await held.close(0);
    }
  });
});

describe('shutdown', () => {
  it('close() completes every SSE stream, so the server can close', async () => {
    const own = new LedgerFeed({ db: h.t.db, notifications });
    const srv = await listen(mount(h.deps, { feed: own }).fetch);
    const c = await openSse(srv.url, 'subscription { invocationEvents { cursor } }');
    clients.push(c);
    await until('subscribed', () => own.subscriberCount === 1);
    await own.close();
    await c.until('completed', () => c.completed);
    expect(c.frames.at(-1)?.event).toBe('complete');
    await srv.close();
  });
});

// keep the helper honest: formatCursor is what the wire carries, db/cursor.ts's one format
it('formats cursors as every page does (db/cursor.ts) and refuses the old <tx_id>:<position>', () => {
  expect(formatCursor({ txId: '12', position: '34' })).toBe(encodeCursor(['12', '34']));
  expect(parseCursor(formatCursor({ txId: '12', position: '34' }))).toEqual({ txId: '12', position: '34' });
  expect(() => parseCursor('12:34')).toThrow(/invalid feed cursor/);
});
