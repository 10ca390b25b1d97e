// `invoke-ledger rebuild-projections` while a server runs: producers accept with
// idempotency keys over HTTP, the server's worker drains, projections are corrupted
// meanwhile and the CLI rebuild repairs them, several times over. Every accept answers
// 202 (the old rebuild's table locks deadlocked with keyed accepts, which answered 500),
// every rebuild exits 0, and the ledger verifies clean at the end.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyLedger } from '../../db/replay.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FUNCTIONS = fileURLToPath(new URL('../chaos/fixtures/', import.meta.url));
const TOTAL = 1_500;

let t: TestDatabase;
let server: ServiceProcess;
let owner: pg.Client;

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  server = await spawnService('all', await freePort(), { DATABASE_URL: t.ownerUrl, FUNCTIONS_DIR: FUNCTIONS, POLL_INTERVAL_MS: '200', WORKER_LEASE_GRACE_MS: '2000' });
}, 120_000);

afterAll(async () => {
  if (server) await endProcess(server);
  await owner?.end();
});

/** Runs the CLI as a process of its own; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('exit', (code) => resolve({ code, output }));
  });
}

const unfinished = async () =>
  (await sql<{ n: number }>`select count(*)::int as n from ledger.queue`.execute(t.db)).rows[0]?.n ?? 0;

describe('rebuild-projections while the server runs', () => {
  it('repairs corrupted rows without failing an accept, a claim or itself', { timeout: 600_000 }, async () => {
    const statuses = new Map<number, number>();
    let next = 0;
    const produce = async () => {
      while (next < TOTAL) {
        const i = next++;
        const res = await fetch(`http://127.0.0.1:${server.port}/2015-03-31/functions/flaky/invocations`, {
          method: 'POST',
          headers: { 'X-Amz-Invocation-Type': 'Event', 'Idempotency-Key': `online-${i % 1_000}` },
          body: JSON.stringify({ i }),
        });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
    };
    const producing = Promise.all(Array.from({ length: 8 }, produce));

    const rebuilds: { code: number | null; output: string }[] = [];
    let corrupted = 0;
    while (rebuilds.length < 4 || next < TOTAL) {
      // rows the worker and the producers are busy with, and settled ones
      const { rowCount } = await owner.query(`
        update ledger.invocations set updated_at = updated_at + interval '1 microsecond'
        where id in (select id from ledger.invocations order by random() limit 200)`);
      corrupted += rowCount ?? 0;
      await owner.query(`update ledger.queue set run_at = 'infinity' where invocation_id in (
        select invocation_id from ledger.queue where locked_by is null order by random() limit 20)`);
      rebuilds.push(await cli(['rebuild-projections']));
    }
    await producing;
    while ((await unfinished()) > 0) await new Promise((r) => setTimeout(r, 200));

    expect(Object.fromEntries(statuses)).toEqual({ 202: TOTAL });
    expect(rebuilds.map((r) => (r.code === 0 ? 0 : r.output.slice(-2_000)))).toEqual(rebuilds.map(() => 0));
    expect(rebuilds.every((r) => /rebuilt projections of \d+ invocation\(s\): \d+ repaired/.test(r.output))).toBe(true);
    expect(corrupted).toBeGreaterThan(0);
    expect(await verifyLedger(t.db)).toEqual([]);
    const verify = await cli(['verify']);
    expect(verify).toEqual({ code: 0, output: expect.stringContaining('verify: ledger is consistent') });
    // the server's own log: no statement failed
    expect(server.output()).not.toMatch(/deadlock detected|"level":50/);
  });
});
