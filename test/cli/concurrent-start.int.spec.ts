// Servers starting together on a fresh database: each migrates (under an advisory lock)
// and registers FUNCTIONS_DIR at the same moment, and all of them must come up. Then
// concurrent createFunction requests of one name over GraphQL: one function, the other
// callers get the FunctionExists error code, never a 500.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../db/connection.ts';
import { adminQuery, databaseUrl, freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';

const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const databases: string[] = [];
const services = new Set<ServiceProcess>();

async function freshDatabase(): Promise<string> {
  const name = `fresh_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `create database "${name}"`);
  databases.push(name);
  return databaseUrl(adminUrl, name);
}

async function start(url: string, role: 'all' | 'api' = 'all'): Promise<ServiceProcess> {
  const p = await spawnService(role, await freePort(), { DATABASE_URL: url, POLL_INTERVAL_MS: '200' });
  services.add(p);
  return p;
}


afterAll(async () => {
  await Promise.all([...services].map((p) => endProcess(p)));
  for (const name of databases) await adminQuery(adminUrl, `drop database if exists "${name}" with (force)`);
}, 120_000);

describe('servers starting together', () => {
  it('two servers on a fresh database both start, and register each function once', { timeout: 300_000 }, async () => {
    for (let trial = 0; trial < 3; trial++) {
      const url = await freshDatabase();
      const started = await Promise.allSettled([start(url), start(url)]);
      const failures = started.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error).message).slice(0, 2_000)] : []));
      expect(failures).toEqual([]);
      const handle = openDatabase(url, { max: 1 });
      try {
        const { rows } = await sql<{ name: string; versions: number }>`
          select name, count(*)::int as versions from ledger.function_versions group by name`.execute(handle.db);
        expect(rows.length).toBeGreaterThan(0);
        expect(rows.filter((r) => r.versions !== 1)).toEqual([]);
      } finally {
        await handle.close();
      }
      for (const s of started) if (s.status === 'fulfilled') await endProcess(s.value);
    }
  });

  it('four concurrent createFunction of one name over GraphQL: one function, three FunctionExists, no 500', { timeout: 120_000 }, async () => {
    const url = await freshDatabase();
    const api = await start(url, 'api');
    const create = (name: string, i: number) =>
      fetch(`http://127.0.0.1:${api.port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          query: 'mutation($input: FunctionInput!) { createFunction(input: $input) { name version } }',
          variables: { input: { name, runtime: 'MODULE', handler: 'echo.ts', timeoutMs: 1_000 + i } },
        }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as { data?: unknown; errors?: { extensions?: { code?: string } }[] } }));
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all([0, 1, 2, 3].map((i) => create(`created-together-${round}`, i)));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      const outcomes = answers.map((a) => (a.body.errors ? (a.body.errors[0]?.extensions?.code ?? 'no code') : 'created')).sort();
      expect(outcomes).toEqual(['FunctionExists', 'FunctionExists', 'FunctionExists', 'created']);
    }
    await endProcess(api);
  });
});
