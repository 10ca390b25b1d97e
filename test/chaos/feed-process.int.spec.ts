// The live feed across real server processes: a subscriber whose server is SIGKILLed
// mid-drain reconnects to another with Last-Event-ID and misses nothing (and sees
// nothing twice); SIGTERM with an SSE client connected completes the stream, stops
// claiming at once, and exits.
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCursor, parseCursor } from '../../apps/api/graphql/feed.ts';
import { requireFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { openSse, type SseClient } from '../graphql/sse-client.ts';

const FUNCTIONS = fileURLToPath(new URL('../worker/fixtures/', import.meta.url));

let t: TestDatabase;
const services = new Set<ServiceProcess>();
const clients: SseClient[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all([...services].map((p) => endProcess(p)));
}, 60_000);

async function spawnAll(env: Record<string, string> = {}): Promise<ServiceProcess & { url: string }> {
  const p = await spawnService('all', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FUNCTIONS,
    POLL_INTERVAL_MS: '200',
    WORKER_LEASE_GRACE_MS: '1000',
    DB_POOL_SIZE: '6',
    ...env,
  });
  services.add(p);
  return Object.assign(p, { url: `http://127.0.0.1:${p.port}` });
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ledgerCursors(fn: string, after: string): Promise<string[]> {
  const { txId, position } = parseCursor(after);
  const { rows } = await sql<{ txId: string; position: string }>`
    select e.tx_id::text as "txId", e.position::text as position
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id
    where i.function_name = ${fn} and (e.tx_id, e.position) > (${txId}::xid8, ${position}::bigint)
    order by e.tx_id, e.position`.execute(t.db);
  return rows.map(formatCursor);
}

describe('the live feed across processes', () => {
  it('a subscriber whose server was SIGKILLed resumes on another with Last-Event-ID: nothing missed, nothing twice', { timeout: 300_000 }, async () => {
    const a = await spawnAll();
    const echo = await requireFunction(t.db, 'echo');
    const [origin] = await acceptInvocations(t.db, [{ fn: echo, invocationType: 'sync', payload: 'origin', startedBy: 'nobody', leaseMs: 600_000 }]);
    const { rows } = await sql<{ txId: string; position: string }>`
      select tx_id::text as "txId", position::text as position from ledger.events where invocation_id = ${origin?.invocationId as string}::uuid and seq = 2`.execute(t.db);
    const start = formatCursor(rows[0] as { txId: string; position: string });
    const query = `subscription { invocationEvents(functionName: "echo", after: "${start}") { cursor invocationId seq type } }`;

    const first = await openSse(a.url, query);
    clients.push(first);
    const TOTAL = 900;
    let produced = 0;
    const producing = (async () => {
      while (produced < TOTAL) {
        await acceptInvocations(t.db, Array.from({ length: 50 }, (_, i) => ({ fn: echo, invocationType: 'async' as const, payload: { i: produced + i } })));
        produced += 50;
      }
    })();
    await first.until('a few hundred events', () => first.events().length >= 200);
    await endProcess(a, 'SIGKILL');
    await first.until('the connection to drop', () => first.closed);
    const seenFirst = first.events();
    const lastId = first.frames.filter((f) => f.event === 'next' && f.id).at(-1)?.id as string;
    expect(lastId).toBe(seenFirst.at(-1)?.cursor);

    const b = await spawnAll();
    const second = await openSse(b.url, query, { 'last-event-id': lastId });
    clients.push(second);
    await producing;
    // every invocation ends (the killed server's attempts are recovered as WorkerLost and retried)
    await until('all invocations to end', async () => {
      const { rows: left } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.invocations where function_name = 'echo' and invocation_type = 'async' and status not in ('succeeded', 'dead_lettered')`.execute(t.db);
      return left[0]?.n === 0;
    });
    const expected = await ledgerCursors('echo', start);
    await second.until('every event', () => seenFirst.length + second.events().length >= expected.length);
    const got = [...seenFirst, ...second.events()].map((e) => e.cursor);
    expect(got.length).toBe(expected.length);
    expect(got).toEqual(expected);
    await endProcess(b);
  });

  it('SIGTERM with an SSE client connected: the stream completes, claiming stops at once, the process exits', { timeout: 120_000 }, async () => {
    // the only process running: whatever starts, this one started
    expect([...services].filter((s) => s.child.exitCode === null && s.child.signalCode === null)).toEqual([]);
    const p = await spawnAll({ WORKER_CONCURRENCY: '1' });
    const gauge = await requireFunction(t.db, 'gauge');
    const sub = await openSse(p.url, 'subscription { invocationEvents(functionName: "gauge") { cursor type } }');
    clients.push(sub);
    const accepted = await acceptInvocations(t.db, Array.from({ length: 20 }, () => ({ fn: gauge, invocationType: 'async' as const, payload: { ms: 400 } })));
    const ids = accepted.map((a) => a.invocationId);
    const started = async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.events where invocation_id = any(${ids}::uuid[]) and type = 'started'`.execute(t.db);
      return rows[0]?.n ?? 0;
    };
    await until('the first attempt to run', async () => (await started()) >= 1);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      p.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    // endProcess would SIGKILL a process that lingers 15 s: the exit must come from SIGTERM alone
    await endProcess(p, 'SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    await sub.until('the stream to end', () => sub.closed);
    expect(sub.completed).toBe(true);
    // the running attempt (and at most one claim already in flight), not the queue behind it
    expect(await started()).toBeLessThanOrEqual(2);
    // the rest is left for another process
    const q = await spawnAll();
    await until('the rest to be done', async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from ledger.invocations where id = any(${ids}::uuid[]) and status = 'succeeded'`.execute(t.db);
      return rows[0]?.n === 20;
    });
    await endProcess(q);
  });
});
