// No runaway loops: a function whose onSuccess destination is itself runs 16 times, as
// on Lambda, and the 17th is recorded as stopped (dead-lettered, RecursiveInvocationLoop,
// without an attempt); an echo loop whose records double each hop stops at the async
// payload limit instead of accepting ever bigger payloads.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes } from '../../apps/runtimes/index.ts';
import { listDestinationDeliveries } from '../../apps/worker/index.ts';
import { listDeadLetterMessages } from '../../db/queues/dead-letters.ts';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { FIXTURES, fn, invokeAsync, silent, startWorker, waitFor, type RunningWorker } from './helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;
let api: Listening;
const apiRuntimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 1 });

beforeAll(async () => {
  t = await createTestDatabase();
  worker = await startWorker(t.db, t.url, { deliveryIntervalMs: 50 });
  api = await listen(composeApi({ db: t.db, instanceId: 'loops-api', runtimes: apiRuntimes, logger: silent, functionsDir: FIXTURES }).app.fetch);
});
afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await apiRuntimes.close();
});

interface Row {
  id: string;
  status: string;
  dead_letter_reason: string | null;
  depth: number | null;
  payload_bytes: number;
  attempts: number;
}

async function invocationsOf(name: string): Promise<Row[]> {
  const { rows } = await sql<Row>`
    select i.id, i.status, i.dead_letter_reason, i.attempts, (e.data ->> 'chainDepth')::int as depth,
           octet_length((e.data -> 'payload')::text) as payload_bytes
    from ledger.invocations i join ledger.events e on e.invocation_id = i.id and e.seq = 1
    where i.function_name = ${name} order by i.accepted_at, i.id`.execute(t.db);
  return rows;
}

describe('recursive loops', () => {
  it('onSuccess: itself runs 16 invocations; the 17th is dead-lettered as RecursiveInvocationLoop without running', { timeout: 120_000 }, async () => {
    const f = await fn(t.db, 'loop-self', 'noop.ts', { onSuccess: 'function:loop-self' });
    await invokeAsync(t.db, f, [{ start: true }]);
    await waitFor('the loop to be stopped', async () => (await invocationsOf('loop-self')).some((r) => r.status === 'dead_lettered'), 90_000);
    // nothing runs after the stop
    await waitFor('the chain to settle', async () => (await invocationsOf('loop-self')).every((r) => r.status === 'succeeded' || r.status === 'dead_lettered'));
    const rows = await invocationsOf('loop-self');
    expect(rows).toHaveLength(17);
    expect(rows.slice(0, 16).every((r) => r.status === 'succeeded')).toBe(true);
    expect(rows.map((r) => r.depth ?? 0)).toEqual(Array.from({ length: 17 }, (_, i) => i));
    const stopped = rows[16] as Row;
    expect(stopped).toMatchObject({ status: 'dead_lettered', dead_letter_reason: 'RecursiveInvocationLoop', attempts: 0 });
    const { rows: events } = await sql<{ type: string; data: unknown }>`
      select type, data from ledger.events where invocation_id = ${stopped.id}::uuid order by seq`.execute(t.db);
    expect(events.map((e) => e.type)).toEqual(['accepted', 'dead_lettered']);
    expect(events[1]?.data).toEqual({ reason: 'RecursiveInvocationLoop' });
    // the 16th's delivery says what happened to its target
    const [delivery] = await listDestinationDeliveries(t.db, { invocationId: (rows[15] as Row).id });
    expect(delivery).toMatchObject({ status: 'failed', targetInvocationId: stopped.id });
    expect(delivery?.lastError).toMatch(/RecursiveInvocationLoop/);
  });

  it('an echo loop whose record doubles each hop stops at the 1 MB async payload limit', { timeout: 120_000 }, async () => {
    const f = await fn(t.db, 'loop-echo', 'echo.ts', { onSuccess: 'function:loop-echo' });
    await invokeAsync(t.db, f, [{ pad: 'x'.repeat(2_000) }]);
    await waitFor(
      'a delivery refused for its size',
      async () => (await listDestinationDeliveries(t.db, { status: 'failed' })).some((d) => /PayloadTooLarge/.test(d.lastError ?? '')),
      90_000,
    );
    await waitFor('the chain to settle', async () => (await invocationsOf('loop-echo')).every((r) => r.status === 'succeeded'));
    const rows = await invocationsOf('loop-echo');
    expect(rows.every((r) => r.payload_bytes <= 1_048_576)).toBe(true);
    expect(rows.length).toBeLessThan(16);
  });

  it('a handler invoking itself through the API with its chain headers is stopped at the 17th', { timeout: 120_000 }, async () => {
    const f = await fn(t.db, 'self-invoke', 'self-invoke.ts');
    await invokeAsync(t.db, f, [{ base: api.url }]);
    await waitFor('the loop to be stopped', async () => (await invocationsOf('self-invoke')).some((r) => r.status === 'dead_lettered'), 90_000);
    await waitFor('the chain to settle', async () => (await invocationsOf('self-invoke')).every((r) => r.status === 'succeeded' || r.status === 'dead_lettered'));
    const rows = await invocationsOf('self-invoke');
    expect(rows).toHaveLength(17);
    expect(rows.map((r) => r.depth ?? 0)).toEqual(Array.from({ length: 17 }, (_, i) => i));
    expect(rows[16]).toMatchObject({ status: 'dead_lettered', dead_letter_reason: 'RecursiveInvocationLoop', attempts: 0 });
    // each handler saw its own depth in its context
    const { rows: results } = await sql<{ depth: number }>`
      select (e.data -> 'result' ->> 'depth')::int as depth from ledger.events e join ledger.invocations i on i.id = e.invocation_id
      where i.function_name = 'self-invoke' and e.type = 'succeeded' order by i.accepted_at, i.id`.execute(t.db);
    expect(results.map((r) => r.depth)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });

  it('over the API: an async invoke past the limit is accepted stopped, a sync one refused with RecursiveInvocationException', async () => {
    await fn(t.db, 'deep', 'noop.ts');
    const lambda = (type: string) =>
      fetch(`${api.url}/2015-03-31/functions/deep/invocations`, { method: 'POST', headers: { 'x-amz-invocation-type': type, 'x-ledger-chain-depth': '15' }, body: '{}' });
    const sync = await lambda('RequestResponse');
    expect(sync.status).toBe(400);
    expect(sync.headers.get('x-amzn-errortype')).toBe('RecursiveInvocationException');
    expect(((await sync.json()) as { message: string }).message).toMatch(/16 invocations deep/);
    const async = await lambda('Event');
    expect(async.status).toBe(202);
    const id = async.headers.get('x-amzn-requestid') as string;
    await waitFor('recorded', async () => (await invocationsOf('deep')).length === 1);
    expect((await invocationsOf('deep'))[0]).toMatchObject({ id, status: 'dead_lettered', dead_letter_reason: 'RecursiveInvocationLoop', depth: 16 });
    // one below the limit runs
    const ok = await fetch(`${api.url}/invoke/deep`, { method: 'POST', headers: { 'x-ledger-chain-depth': '14' }, body: '{}' });
    expect(ok.status).toBe(200);
    const bad = await fetch(`${api.url}/invoke/deep`, { method: 'POST', headers: { 'x-ledger-chain-depth': 'lots' }, body: '{}' });
    expect(bad.status).toBe(400);
  });

  it('a consumer that sends each message back to its own queue stops at the 17th poll: the message is dead-lettered, not delivered', { timeout: 120_000 }, async () => {
    await fn(t.db, 'requeue', 'requeue.ts');
    await createQueue(t.db, { name: 'loopq' });
    await createEventSourceMapping(t.db, { queueName: 'loopq', functionName: 'requeue', batchSize: 1 });
    await sendMessages(t.db, 'loopq', [{ body: { base: api.url, queue: 'loopq' } }]);
    await waitFor('the loop to be stopped', async () => (await listDeadLetterMessages(t.db, 'loopq')).edges.length > 0, 90_000);
    const dead = (await listDeadLetterMessages(t.db, 'loopq')).edges[0]?.node;
    expect(dead?.deadLetterReason).toBe('RecursiveInvocationLoop');
    await waitFor('the polls to settle', async () => (await invocationsOf('requeue')).every((r) => r.status === 'succeeded'));
    const polls = await invocationsOf('requeue');
    expect(polls.map((r) => r.depth ?? 0)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });
});
