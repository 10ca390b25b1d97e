// subscription invocationEvents over SSE on a real server: one invocation's events in
// order while others run, the functionName filter, and cleanup when the client leaves.
// Waits are long on purpose: the feed waits for the oldest open transaction of the whole
// PostgreSQL cluster, and other test files (or benchmarks) may share the server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenToLedger } from '../../db/notifications.ts';
import { LedgerFeed } from '../../apps/api/graphql/feed.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { createHarness, finishAsync, type Harness } from './harness.ts';

let h: Harness;
let feed: LedgerFeed;
let server: Listening;
let base: string;

beforeAll(async () => {
  const harness = await createHarness({ deps: {} });
  // the same routes, with a feed the test can watch
  feed = new LedgerFeed({ db: harness.t.db, notifications: listenToLedger(harness.t.ownerUrl) });
  const { mount } = await import('./harness.ts');
  h = { ...harness, app: mount(harness.deps, { feed }) };
  server = await listen(h.app.fetch);
  base = server.url;
});
afterAll(async () => {
  await server?.close();
  await feed?.close();
  await h?.close();
});

interface EventMsg {
  position: string;
  invocationId: string;
  functionName: string;
  seq: number;
  type: string;
  attempt: number | null;
  data: Record<string, unknown>;
}

/** Opens an SSE subscription; `next(n)` waits for n more `data:` payloads. */
function subscribe(query: string) {
  const controller = new AbortController();
  const received: EventMsg[] = [];
  const errors: unknown[] = [];
  let waiter = null as (() => void) | null;
  const opened = fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query }),
    signal: controller.signal,
  });
  const done = (async () => {
    const res = await opened;
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const msg = JSON.parse(line.slice(5).trim()) as { data?: { invocationEvents: EventMsg }; errors?: unknown[] };
          if (msg.errors) errors.push(...msg.errors);
          if (msg.data) received.push(msg.data.invocationEvents);
          waiter?.();
        }
      }
    }
  })().catch((e: unknown) => {
    if ((e as Error).name !== 'AbortError') errors.push(e);
    waiter?.();
  });
  return {
    received,
    errors,
    async until(pred: () => boolean, what: string) {
      const deadline = Date.now() + 90_000;
      while (!pred()) {
        if (errors.length) throw new Error(`subscription failed: ${JSON.stringify(errors)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(received.map((e) => [e.invocationId.slice(0, 8), e.seq, e.type]))}`);
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 100);
        });
      }
    },
    async close() {
      controller.abort();
      await done;
    },
  };
}

async function waitFor(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const FIELDS = 'position invocationId functionName seq type attempt occurredAt data';

describe('subscription invocationEvents', () => {
  it("delivers one invocation's events in order, and only those, while other invocations run", { timeout: 240_000 }, async () => {
    const accepted = await h.gql(`mutation { invokeAsync(functionName: "fail", payload: { watched: true }) { id } }`);
    const id = accepted.data?.invokeAsync.id as string;
    const sub = subscribe(`subscription { invocationEvents(invocationId: "${id}") { ${FIELDS} } }`);
    // the history (accepted) comes first, before anything new happens
    await sub.until(() => sub.received.length >= 1, 'the accepted event');
    expect(sub.received[0]).toMatchObject({ invocationId: id, seq: 1, type: 'ACCEPTED', functionName: 'fail' });

    // noise: sync invokes and other async invocations committing at the same time
    const noise = Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? h.gql(`mutation { invoke(functionName: "echo", payload: ${i}) { id } }`)
          : h.gql(`mutation { invokeAsync(functionName: "echo", payload: ${i}) { id } }`).then((r) => h.gql(`mutation { cancelInvocation(id: "${r.data?.invokeAsync.id}") { id } }`)),
      ),
    );
    await finishAsync(h.t.db, id, 'retried'); // started, failed, retried
    await finishAsync(h.t.db, id, 'dead_lettered'); // started, failed, dead_lettered
    await h.gql(`mutation { redrive(invocationId: "${id}") { id } }`);
    await finishAsync(h.t.db, id, 'succeeded'); // started, succeeded
    await noise;

    await sub.until(() => sub.received.length >= 10, 'ten events');
    expect(sub.received.map((e) => [e.seq, e.type, e.attempt])).toEqual([
      [1, 'ACCEPTED', null],
      [2, 'STARTED', 1],
      [3, 'FAILED', 1],
      [4, 'RETRIED', 2],
      [5, 'STARTED', 2],
      [6, 'FAILED', 2],
      [7, 'DEAD_LETTERED', null],
      [8, 'REDRIVEN', null],
      [9, 'STARTED', 3],
      [10, 'SUCCEEDED', 3],
    ]);
    expect(sub.received.every((e) => e.invocationId === id)).toBe(true);
    expect(sub.received[9]?.data).toMatchObject({ result: { attempt: 3 } });
    // positions follow commit order here: one writer after another
    const positions = sub.received.map((e) => BigInt(e.position));
    expect(positions.every((p, i) => i === 0 || p > (positions[i - 1] as bigint))).toBe(true);

    expect(feed.subscriberCount).toBe(1);
    await sub.close();
    await waitFor(() => feed.subscriberCount === 0 && !feed.isRunning, 'the feed to stop after the client left');
  });

  it('filters by function name and fans out to several subscribers at once', { timeout: 240_000 }, async () => {
    const fails = subscribe(`subscription { invocationEvents(functionName: "fail") { ${FIELDS} } }`);
    const all = subscribe(`subscription { invocationEvents { ${FIELDS} } }`);
    await waitFor(() => feed.subscriberCount === 2 && feed.isRunning, 'two subscribers');
    const f = await h.gql(`mutation { invoke(functionName: "fail") { id } }`);
    const e = await h.gql(`mutation { invoke(functionName: "echo") { id } }`);
    const failId = f.data?.invoke.id as string;
    const echoId = e.data?.invoke.id as string;
    await fails.until(() => fails.received.length >= 3, 'the failed invocation');
    await all.until(() => all.received.filter((x) => x.invocationId === echoId).length >= 3, 'both invocations');
    expect(fails.received.map((x) => [x.invocationId, x.type])).toEqual([
      [failId, 'ACCEPTED'],
      [failId, 'STARTED'],
      [failId, 'FAILED'],
    ]);
    expect(all.received.filter((x) => x.invocationId === failId).map((x) => x.type)).toEqual(['ACCEPTED', 'STARTED', 'FAILED']);
    expect(all.received.filter((x) => x.invocationId === echoId).map((x) => x.type)).toEqual(['ACCEPTED', 'STARTED', 'SUCCEEDED']);
    await fails.close();
    await waitFor(() => feed.subscriberCount === 1, 'one subscriber left');
    expect(feed.isRunning).toBe(true);
    await all.close();
    await waitFor(() => feed.subscriberCount === 0 && !feed.isRunning, 'the feed to stop');
  });

  it('an unknown invocation id is InvocationNotFound', async () => {
    const res = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: `subscription { invocationEvents(invocationId: "00000000-0000-4000-8000-000000000000") { seq } }` }),
    });
    const text = await res.text();
    expect(text).toMatch(/InvocationNotFound/);
    expect(feed.subscriberCount).toBe(0);
  });
});
