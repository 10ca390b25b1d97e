// The registry under real concurrency: every call on its own connection pool, as separate
// server processes would be. Creating one name from several callers at once gives one
// function and FunctionExists for the others; registering a FUNCTIONS_DIR from several
// processes at once (servers starting together) writes each version once and fails none.
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFunctionsDir } from '../apps/cli/register-functions.ts';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import type { DatabaseHandle } from './connection.ts';
import { LedgerError } from './errors.ts';
import { createFunction, updateFunction, upsertFunction } from './functions.ts';

const FUNCTIONS_DIR = fileURLToPath(new URL('../functions/', import.meta.url));
const silent = pino({ level: 'silent' });

let t: TestDatabase;
let pools: DatabaseHandle[];

beforeAll(async () => {
  t = await createTestDatabase();
  pools = Array.from({ length: 4 }, () => t.open({ max: 2 }));
  // connections open before the race, so the calls really overlap
  await Promise.all(pools.map((p) => sql`select 1`.execute(p.db)));
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

const codeOf = (r: PromiseSettledResult<unknown>) =>
  r.status === 'fulfilled' ? 'ok' : r.reason instanceof LedgerError ? r.reason.code : `unexpected: ${(r.reason as Error).message}`;

describe('the function registry under concurrency', () => {
  it('four concurrent createFunction of one name: one succeeds, the others get FunctionExists', async () => {
    for (let round = 0; round < 20; round++) {
      const name = `race-create-${round}`;
      const results = await Promise.allSettled(
        pools.map((p, i) => createFunction(p.db, name, { runtime: 'MODULE', handler: 'echo.ts', timeoutMs: 1_000 + i })),
      );
      expect(results.map(codeOf).sort()).toEqual(['FunctionExists', 'FunctionExists', 'FunctionExists', 'ok']);
      const { rows } = await sql<{ version: number }>`select version from ledger.function_versions where name = ${name}`.execute(t.db);
      expect(rows).toEqual([{ version: 1 }]);
    }
  });

  it('creating a deleted name again races safely too: one new version', async () => {
    await createFunction(t.db, 'race-revive', { runtime: 'MODULE', handler: 'echo.ts' });
    await sql`update ledger.functions set deleted_at = now() where name = 'race-revive'`.execute(t.db);
    const results = await Promise.allSettled(pools.map((p) => createFunction(p.db, 'race-revive', { runtime: 'MODULE', handler: 'echo.ts' })));
    expect(results.map(codeOf).sort()).toEqual(['FunctionExists', 'FunctionExists', 'FunctionExists', 'ok']);
    const { rows } = await sql<{ version: number }>`select version from ledger.function_versions where name = 'race-revive' order by 1`.execute(t.db);
    expect(rows).toEqual([{ version: 1 }, { version: 2 }]);
  });

  it('concurrent updates with one change write one new version; the others see it and write nothing', async () => {
    await createFunction(t.db, 'race-update', { runtime: 'MODULE', handler: 'echo.ts' });
    for (let round = 0; round < 10; round++) {
      const results = await Promise.allSettled(pools.map((p) => updateFunction(p.db, 'race-update', { timeoutMs: 2_000 + round })));
      expect(results.map(codeOf)).toEqual(['ok', 'ok', 'ok', 'ok']);
      const versions = new Set(results.map((r) => (r as PromiseFulfilledResult<{ version: number }>).value.version));
      expect(versions).toEqual(new Set([round + 2]));
    }
  });

  it('four servers registering one FUNCTIONS_DIR at once, on a registry that has none of it', async () => {
    for (let round = 0; round < 2; round++) {
      const fresh = await createTestDatabase({ verify: false });
      const handles = Array.from({ length: 4 }, () => fresh.open({ max: 2 }));
      try {
        await Promise.all(handles.map((h) => sql`select 1`.execute(h.db)));
        const results = await Promise.allSettled(handles.map((h) => registerFunctionsDir(h.db, FUNCTIONS_DIR, {}, silent)));
        expect(results.map(codeOf)).toEqual(['ok', 'ok', 'ok', 'ok']);
        const registered = (results[0] as PromiseFulfilledResult<string[]>).value;
        expect(registered.length).toBeGreaterThan(0);
        for (const r of results) expect((r as PromiseFulfilledResult<string[]>).value).toEqual(registered);
        const { rows } = await sql<{ name: string; versions: number }>`
          select name, count(*)::int as versions from ledger.function_versions group by name order by name`.execute(fresh.db);
        expect(rows.every((r) => r.versions === 1)).toBe(true);
      } finally {
        await Promise.all(handles.map((h) => h.close()));
      }
    }
  });

  it('upsert from several servers with a changed file: one new version', async () => {
    await upsertFunction(t.db, 'race-upsert', { runtime: 'MODULE', handler: 'echo.ts', codeHash: 'a' });
    const results = await Promise.allSettled(pools.map((p) => upsertFunction(p.db, 'race-upsert', { runtime: 'MODULE', handler: 'echo.ts', codeHash: 'b' })));
    expect(results.map(codeOf)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(new Set(results.map((r) => (r as PromiseFulfilledResult<{ version: number }>).value.version))).toEqual(new Set([2]));
  });
});
