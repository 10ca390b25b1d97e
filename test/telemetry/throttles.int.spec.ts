// Throttles write no event, so each process adds what it counted to ledger.throttle_counts
// (docs/observability.md#throttles): two real server processes throttle sync calls and
// async work, and the table (as audit.throttles) holds what each process counted, summed.
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { waitFor } from '../worker/helpers.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
let t: TestDatabase;
const servers: { proc: ServiceProcess; port: number }[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const proc = await spawnService('all', port, { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: FIXTURES, THROTTLE_FLUSH_INTERVAL_MS: '200', POLL_INTERVAL_MS: '100' });
    servers.push({ proc, port });
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => endProcess(s.proc)));
}, 60_000);

const invoke = (port: number, type: 'RequestResponse' | 'Event', n: number) =>
  fetch(`http://127.0.0.1:${port}/2015-03-31/functions/one-at-a-time/invocations`, {
    method: 'POST',
    headers: { 'x-amz-invocation-type': type },
    body: JSON.stringify({ n }),
  });

/** This process's ledger_throttles_total, by type. */
async function counted(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const by: Record<string, number> = {};
  for (const m of text.matchAll(/^ledger_throttles_total\{([^}]*)\} (\d+)/gm)) {
    if (!m[1]?.includes('function="one-at-a-time"')) continue;
    const type = /type="(\w+)"/.exec(m[1])?.[1] as string;
    by[type] = (by[type] ?? 0) + Number(m[2]);
  }
  return by;
}

async function inTable(): Promise<Record<string, number>> {
  const { rows } = await sql<{ type: string; n: string }>`
    select invocation_type as type, sum(count) as n from audit.throttles where function_name = 'one-at-a-time' group by 1`.execute(t.db);
  return Object.fromEntries(rows.map((r) => [r.type, Number(r.n)]));
}

describe('throttle counts', () => {
  it('every 429 and every async push-back of two processes is in ledger.throttle_counts, summed', { timeout: 120_000 }, async () => {
    // sync: 10 concurrent calls on each process, one may run at a time
    const answers = await Promise.all(servers.flatMap((s) => Array.from({ length: 10 }, (_, i) => invoke(s.port, 'RequestResponse', i))));
    const refused = answers.filter((r) => r.status === 429).length;
    expect(refused).toBeGreaterThan(0);
    // async: 20 queued at once, the workers take them one at a time
    const queued = await Promise.all(Array.from({ length: 20 }, (_, i) => invoke(servers[0]!.port, 'Event', i)));
    expect(queued.every((r) => r.status === 202)).toBe(true);
    await waitFor('the async invocations to finish', async () => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.invocations where function_name = 'one-at-a-time' and invocation_type = 'async' and status = 'succeeded'`.execute(t.db);
      return rows[0]?.n === 20;
    }, 90_000);

    const perProcess = await Promise.all(servers.map((s) => counted(s.port)));
    const sync = perProcess.reduce((a, p) => a + (p.sync ?? 0), 0);
    const async = perProcess.reduce((a, p) => a + (p.async ?? 0), 0);
    expect(sync).toBe(refused);
    expect(async).toBeGreaterThan(0);
    // the table catches up with both processes' counters within a few flushes
    await waitFor('the counts flushed', async () => {
      const table = await inTable();
      return table.sync === sync && table.async === async ? table : null;
    }, 30_000);
  });

  it('a count can only grow: lowering or deleting one is refused', async () => {
    const lower = await sql`update ledger.throttle_counts set count = count - 1`.execute(t.db).catch((e: Error) => e);
    expect(String(lower)).toMatch(/only grows/);
    const { rows } = await sql<{ ok: boolean }>`select has_table_privilege('ledger_app', 'ledger.throttle_counts', 'delete') as ok`.execute(t.db);
    expect(rows[0]?.ok).toBe(false);
  });
});
