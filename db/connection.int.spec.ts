// The writer's statement as a named prepared statement: prepared once per connection,
// correct past the point where PostgreSQL switches to a generic plan, still usable after
// it failed, and absent when prepared statements are switched off.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { recordOutcomes } from './attempts.ts';
import type { DatabaseHandle } from './connection.ts';
import { SequenceConflict } from './errors.ts';
import { createFunction, type FunctionVersion } from './functions.ts';
import { acceptInvocations, getInvocation } from './invocations.ts';
import type { Db } from './schema.ts';

let t: TestDatabase;
let fn: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  fn = await createFunction(t.db, 'prepared', { runtime: 'MODULE', handler: 'echo.ts', maxRetries: 0 });
});

/** the session's prepared statements: a pool of one connection makes it the writer's */
async function preparedOn(db: Db): Promise<{ name: string; generic: number; custom: number }[]> {
  const { rows } = await sql<{ name: string; generic: number; custom: number }>`
    select name, generic_plans::int as generic, custom_plans::int as custom
    from pg_prepared_statements where name like 'ledger_%'`.execute(db);
  return rows;
}

const accept = async (db: Db, n: number) => (await acceptInvocations(db, [{ fn, invocationType: 'sync', payload: { n }, startedBy: 'test', leaseMs: 60_000 }]))[0]!;

describe('the ledger writer as a prepared statement', () => {
  let one: DatabaseHandle;
  beforeAll(() => {
    one = t.open({ max: 1 });
  });

  it('is prepared once per connection and writes correctly under a generic plan', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const accepted = await accept(one.db, i);
      const [done] = (await recordOutcomes(one.db, [{ state: accepted.state!, policy: fn, outcome: { ok: true, result: { i }, durationMs: 1 } }])).results;
      expect(done!.state.status).toBe('succeeded');
      ids.push(accepted.invocationId);
    }
    const prepared = await preparedOn(one.db);
    expect(prepared).toHaveLength(1);
    // planned once, generically, not per batch (plan_cache_mode in the startup options)
    expect(prepared[0]).toMatchObject({ generic: 24, custom: 0 });
    for (const [i, id] of ids.entries()) {
      const view = await getInvocation(t.db, id);
      expect(view).toMatchObject({ status: 'succeeded', result: { i }, attempts: 1 });
    }
  });

  it('stays usable after an execution failed', async () => {
    const accepted = await accept(one.db, 100);
    const state = accepted.state!;
    await recordOutcomes(one.db, [{ state, policy: fn, outcome: { ok: true, result: 1, durationMs: 1 } }]);
    // the same outcome again from the stale state: the unique (invocation, seq) refuses it
    const err = await recordOutcomes(one.db, [{ state, policy: fn, outcome: { ok: true, result: 2, durationMs: 1 } }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SequenceConflict);
    const next = await accept(one.db, 101);
    expect(next.state!.status).toBe('running');
    expect(await preparedOn(one.db)).toHaveLength(1);
  });
});

it('prepares nothing when switched off', async () => {
  const plain = t.open({ max: 1, preparedStatements: false });
  const accepted = await accept(plain.db, 1);
  await recordOutcomes(plain.db, [{ state: accepted.state!, policy: fn, outcome: { ok: true, result: null, durationMs: 1 } }]);
  expect(await preparedOn(plain.db)).toEqual([]);
  expect((await getInvocation(t.db, accepted.invocationId))?.status).toBe('succeeded');
});
