// Belt and braces: a statement that fails for one item although every check passed. A
// trigger created in this test's database raises for one marked payload or result, as a
// constraint or a bug might; the group commit splits the group down to that item, which
// fails alone (an outcome becomes OutcomeNotStored of its own attempt), and everything
// written with it commits once.
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvokeService } from '../../apps/api/invoke.ts';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { createWorker, type Worker } from '../../apps/worker/index.ts';
import { createFunction, requireFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { countEvents } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { listen, type Listening } from '../helpers/http.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { startPoller, type RunningPoller } from '../queues/helpers.ts';
import { countByStatus, silent, waitFor } from '../worker/helpers.ts';

const FIXTURES = fileURLToPath(new URL('../api/fixtures/', import.meta.url));
const QUEUE_FIXTURES = fileURLToPath(new URL('../queues/fixtures/', import.meta.url));

let t: TestDatabase;
let runtimes: Runtimes;
let invoke: InvokeService;
let api: Listening;

beforeAll(async () => {
  t = await createTestDatabase();
  await adminQuery(
    t.ownerUrl,
    `create function ledger.test_injected_fault() returns trigger language plpgsql as $$
     begin
       if new.data -> 'payload' ->> 'poison' = 'accept' or new.data -> 'result' ->> 'poison' = 'outcome' then
         raise exception 'injected fault for invocation %', new.invocation_id;
       end if;
       return new;
     end $$;
     create trigger test_injected_fault before insert on ledger.events for each row execute function ledger.test_injected_fault();`,
  );
  runtimes = createRuntimes({ functionsDir: FIXTURES, logger: silent, poolSize: 2 });
  const composed = composeApi({ db: t.db, instanceId: 'faults-api', runtimes, logger: silent, functionsDir: FIXTURES });
  invoke = composed.invoke;
  api = await listen(composed.app.fetch);
  await createFunction(t.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline', maxRetries: 0 });
});

afterAll(async () => {
  await api?.close();
  await runtimes?.close();
});

const lostCount = async () => {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from ledger.events where type = 'failed' and data -> 'error' ->> 'errorType' = 'WorkerLost'`.execute(t.db);
  return rows[0]?.n;
};

async function outcomeEvent(id: string) {
  const { rows } = await sql<{ type: string; data: { result?: unknown; error?: { errorType: string; errorMessage: string } } }>`
    select type, data from ledger.events where invocation_id = ${id}::uuid and type in ('succeeded', 'failed')`.execute(t.db);
  return rows[0];
}

describe('accepts', () => {
  it('300 accepts in one group, one refused by the statement: 299 commit, it alone fails, nothing of it written', async () => {
    const fn = await requireFunction(t.db, 'echo');
    const before = await countEvents(t.db);
    // submitted together, they wait behind the first write and go as one group
    const settled = await Promise.allSettled(
      Array.from({ length: 300 }, (_, i) => invoke.invokeAsync(fn, i === 150 ? { poison: 'accept' } : { n: i })),
    );
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(299);
    expect(settled[150]).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/injected fault/) } });
    expect(await countEvents(t.db)).toBe(before + 299);
  });

  it('over HTTP: the others are 202, the one the database refused is 500, and it is not in the ledger', async () => {
    const before = await countEvents(t.db);
    const statuses = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const res = await fetch(`${api.url}/invoke/echo?async=true`, { method: 'POST', body: JSON.stringify(i === 150 ? { poison: 'accept' } : { n: i }) });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(statuses.filter((s, i) => i !== 150 && s === 202)).toHaveLength(299);
    expect(statuses[150]).toBe(500);
    expect(await countEvents(t.db)).toBe(before + 299);
  });
});

describe('sync outcomes', () => {
  it('an outcome refused by the statement is recorded as OutcomeNotStored and answered so; the 49 others succeed', async () => {
    const answers = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const payload = i === 25 ? { poison: 'outcome' } : { n: i };
        const res = await fetch(`${api.url}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: JSON.stringify(payload) });
        return { i, status: res.status, functionError: res.headers.get('x-amz-function-error'), id: res.headers.get('x-amzn-requestid') as string, body: (await res.json()) as unknown };
      }),
    );
    for (const a of answers) {
      expect(a.status).toBe(200);
      const recorded = await outcomeEvent(a.id);
      if (a.i === 25) {
        expect(a.functionError).toBe('Unhandled');
        expect(recorded?.type).toBe('failed');
        expect(a.body).toEqual(recorded?.data.error);
        expect(recorded?.data.error).toMatchObject({ errorType: 'OutcomeNotStored', errorMessage: expect.stringMatching(/injected fault/) });
      } else {
        expect(recorded).toEqual({ type: 'succeeded', data: expect.objectContaining({ result: { n: a.i } }) });
        expect(a.body).toEqual({ n: a.i });
      }
    }
  });
});

describe('worker outcomes', () => {
  let worker: Worker | null = null;
  afterAll(async () => {
    await worker?.stop();
  });

  it('one outcome refused by the statement fails its own attempt; the others succeed once, no WorkerLost', async () => {
    const fn = await requireFunction(t.db, 'echo');
    const payloads = Array.from({ length: 200 }, (_, i) => (i === 100 ? { poison: 'outcome' } : { n: i }));
    const ids = (await acceptInvocations(t.db, payloads.map((payload) => ({ fn, invocationType: 'async' as const, payload })))).map((a) => a.invocationId);
    worker = createWorker({ db: t.db, databaseUrl: t.url, runtimes, logger: silent, registry: new Registry(), workerId: 'faults-worker', concurrency: 64, claimBatchSize: 200, pollIntervalMs: 50, leaseGraceMs: 2_000 });
    await worker.start();
    await waitFor('all ended', async () => {
      const by = await countByStatus(t.db, ids);
      return (by.succeeded ?? 0) + (by.dead_lettered ?? 0) === ids.length;
    });
    expect(await countByStatus(t.db, ids)).toEqual({ succeeded: 199, dead_lettered: 1 });
    expect((await outcomeEvent(ids[100] as string))?.data.error?.errorType).toBe('OutcomeNotStored');
    expect(await lostCount()).toBe(0);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations where id = any(${ids}::uuid[]) and attempts <> 1`.execute(t.db);
    expect(rows[0]?.n).toBe(0);
  });
});

describe('queue batch settles', () => {
  let poller: RunningPoller | null = null;
  let queueRuntimes: Runtimes | null = null;
  afterAll(async () => {
    await poller?.stop();
    await queueRuntimes?.close();
  });

  it('a poll outcome refused by the statement fails its batch (messages return); the other batches settle', async () => {
    queueRuntimes = createRuntimes({ functionsDir: QUEUE_FIXTURES, logger: silent, poolSize: 2 });
    const config = { runtime: 'MODULE' as const, handler: 'batch.ts', isolation: 'inline' as const, timeoutMs: 10_000 };
    await createFunction(t.db, 'consumer', config);
    await createQueue(t.db, { name: 'good', maxReceiveCount: 10 });
    await createQueue(t.db, { name: 'poisoned', maxReceiveCount: 2 });
    await sendMessages(t.db, 'good', Array.from({ length: 40 }, (_, i) => ({ body: { n: i } })));
    await sendMessages(t.db, 'poisoned', [{ body: { respond: { poison: 'outcome' } } }]);
    await createEventSourceMapping(t.db, { queueName: 'good', functionName: 'consumer', batchSize: 2 });
    await createEventSourceMapping(t.db, { queueName: 'poisoned', functionName: 'consumer', batchSize: 1 });
    poller = await startPoller(t.db, queueRuntimes);
    await waitFor('good drained, the poisoned message dead-lettered', async () => {
      const { rows } = await sql<{ queue_name: string; live: number; dead: number }>`
        select queue_name, count(*) filter (where dead_lettered_at is null)::int as live, count(*) filter (where dead_lettered_at is not null)::int as dead
        from ledger.messages group by queue_name`.execute(t.db);
      const by = Object.fromEntries(rows.map((r) => [r.queue_name, r]));
      return !by.good && by.poisoned?.dead === 1;
    });
    const { rows: polls } = await sql<{ status: string; error_type: string | null; n: number }>`
      select status, error_type, count(*)::int as n from ledger.invocations where invocation_type = 'poll' group by 1, 2 order by 1`.execute(t.db);
    expect(polls).toEqual([
      { status: 'failed', error_type: 'OutcomeNotStored', n: 2 },
      { status: 'succeeded', error_type: null, n: 20 },
    ]);
    expect(await lostCount()).toBe(0);
  });
});
