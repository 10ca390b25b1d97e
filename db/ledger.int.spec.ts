import { sql } from 'kysely';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { recordOutcomes } from './attempts.ts';
import { SequenceConflict } from './errors.ts';
import { createFunction, type FunctionVersion } from './functions.ts';
import { acceptInvocations, cancel, getInvocation, redrive } from './invocations.ts';
import { LifecycleViolation } from './lifecycle.ts';
import { rebuildProjections, verifyLedger } from './replay.ts';
import { appendEvents } from './writer.ts';

let t: TestDatabase;
let fn: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  fn = await createFunction(t.db, 'ledger-test', { runtime: 'MODULE', handler: 'echo.ts', maxRetries: 1, retryBaseDelayMs: 10 });
});

async function eventCount(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(t.db);
  return rows[0]!.n;
}

describe('ledger.events is append-only', () => {
  const statements = {
    update: 'update ledger.events set type = type',
    'update with no matching row': "update ledger.events set type = type where invocation_id = '00000000-0000-0000-0000-000000000000'",
    delete: 'delete from ledger.events',
    'delete with no matching row': "delete from ledger.events where invocation_id = '00000000-0000-0000-0000-000000000000'",
    truncate: 'truncate ledger.events',
  };

  beforeAll(async () => {
    await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: { n: 1 } }]);
  });

  for (const [what, statement] of Object.entries(statements)) {
    it(`refuses ${what} as the application role`, async () => {
      const before = await eventCount();
      const err = await t.pool.query(statement).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      // the role has no UPDATE/DELETE/TRUNCATE grant, and the trigger stands behind it
      expect(String((err as Error).message)).toMatch(/append-only|permission denied/);
      expect(await eventCount()).toBe(before);
    });

    it(`refuses ${what} as the owner`, async () => {
      const owner = new pg.Client({ connectionString: t.ownerUrl });
      await owner.connect();
      try {
        const before = await eventCount();
        const err = await owner.query(statement).catch((e: Error) => e);
        expect((err as Error).message).toMatch(/ledger\.events is append-only: (UPDATE|DELETE|TRUNCATE) is not allowed/);
        expect(await eventCount()).toBe(before);
      } finally {
        await owner.end();
      }
    });
  }

  it('gives the application role only SELECT and INSERT on ledger.events', async () => {
    const { rows } = await t.pool.query<{ privilege_type: string }>(
      `select privilege_type from information_schema.role_table_grants
       where grantee = 'ledger_app' and table_schema = 'ledger' and table_name = 'events' order by 1`,
    );
    expect(rows.map((r) => r.privilege_type)).toEqual(['INSERT', 'SELECT']);
    const { rows: who } = await t.pool.query<{ current_user: string }>('select current_user');
    expect(who[0]!.current_user).toBe('ledger_app');
  });

  it('refuses a gap in seq at the database, whoever inserts', async () => {
    const [a] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: null }]);
    const err = await t.pool
      .query(`insert into ledger.events (invocation_id, seq, type, attempt, data) values ($1, 3, 'started', 1, '{}')`, [a!.invocationId])
      .catch((e: Error) => e);
    expect((err as Error).message).toMatch(/leaves a gap/);
    const dup = await t.pool
      .query(`insert into ledger.events (invocation_id, seq, type, data) values ($1, 1, 'accepted', '{}')`, [a!.invocationId])
      .catch((e: Error) => e);
    expect((dup as { code?: string }).code).toBe('23505');
    const notFirst = await t.pool
      .query(`insert into ledger.events (invocation_id, seq, type, data) values (gen_random_uuid(), 1, 'started', '{}')`)
      .catch((e: Error) => e);
    expect((notFirst as { code?: string }).code).toBe('23514');
  });
});

describe('the one writer', () => {
  it('lets exactly one of two concurrent appends at one expected seq commit', async () => {
    const [a] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: {} }]);
    const id = a!.invocationId;
    const second = t.open({ max: 2 });
    const attempt = (db: typeof t.db, worker: string) =>
      appendEvents(db, { invocationId: id, expectedSeq: 1, events: [{ type: 'started', data: { attempt: 1, workerId: worker } }] });
    const outcomes = await Promise.allSettled([attempt(t.db, 'w1'), attempt(second.db, 'w2')]);
    const ok = outcomes.filter((o) => o.status === 'fulfilled');
    const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(ok).toHaveLength(1);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reason).toBeInstanceOf(SequenceConflict);
    expect((failed[0]!.reason as SequenceConflict).code).toBe('SequenceConflict');
    const view = await getInvocation(t.db, id);
    expect(view!.events.map((e) => e.type)).toEqual(['accepted', 'started']);
    await recordOutcomes(t.db, [{ state: view!, policy: fn, outcome: { ok: true, result: 1, durationMs: 1 } }]);
  });

  it('turns two concurrent first appends into one commit and one SequenceConflict', async () => {
    const id = crypto.randomUUID();
    const second = t.open({ max: 2 });
    const accept = (db: typeof t.db) =>
      appendEvents(db, {
        invocationId: id,
        expectedSeq: 0,
        events: [{ type: 'accepted', data: { functionName: fn.name, functionVersion: fn.version, invocationType: 'async', payload: null, idempotencyKey: null } }],
      });
    const outcomes = await Promise.allSettled([accept(t.db), accept(second.db)]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const rejected = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(rejected!.reason).toBeInstanceOf(SequenceConflict);
    await cancel(t.db, [id], 'test cleanup');
  });

  it('rejects a stale expected seq and an event the lifecycle forbids, writing nothing', async () => {
    const [a] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: {} }]);
    const before = await eventCount();
    await expect(
      appendEvents(t.db, { invocationId: a!.invocationId, expectedSeq: 5, events: [{ type: 'cancelled', data: { reason: 'x' } }] }),
    ).rejects.toBeInstanceOf(SequenceConflict);
    await expect(
      appendEvents(t.db, { invocationId: a!.invocationId, expectedSeq: 1, events: [{ type: 'succeeded', data: { attempt: 1, result: null, durationMs: 0 } }] }),
    ).rejects.toBeInstanceOf(LifecycleViolation);
    expect(await eventCount()).toBe(before);
  });

  it('refuses an invocation id that is not a plain uuid before sending anything', async () => {
    const before = await eventCount();
    const accepted = { type: 'accepted' as const, data: { functionName: fn.name, functionVersion: fn.version, invocationType: 'async' as const, payload: null, idempotencyKey: null } };
    // two valid uuids joined by a comma would split into two array elements if sent as is
    const joined = `${crypto.randomUUID()},${crypto.randomUUID()}`;
    for (const invocationId of [joined, '{x}', 'NULL', '']) {
      await expect(appendEvents(t.db, { invocationId, expectedSeq: 0, events: [accepted] })).rejects.toThrow(/not a plain array element/);
    }
    expect(await eventCount()).toBe(before);
  });

  it('writes a batch for many invocations in one statement and keeps projections in step', async () => {
    const accepted = await acceptInvocations(
      t.db,
      Array.from({ length: 50 }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i } })),
    );
    expect(new Set(accepted.map((a) => a.invocationId)).size).toBe(50);
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from ledger.queue where invocation_id = any(${accepted.map((a) => a.invocationId)}::uuid[])`.execute(t.db);
    expect(rows[0]!.n).toBe(50);
    expect(await verifyLedger(t.db)).toEqual([]);
  });

  it('returns the first invocation for a repeated idempotency key and writes nothing new', async () => {
    const before = await eventCount();
    const [a, b] = await acceptInvocations(t.db, [
      { fn, invocationType: 'async', payload: { x: 1 }, idempotencyKey: 'k-1' },
      { fn, invocationType: 'async', payload: { x: 2 }, idempotencyKey: 'k-1' },
    ]);
    const [c] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: { x: 3 }, idempotencyKey: 'k-1' }]);
    expect(a!.duplicate).toBe(false);
    expect(b).toEqual({ invocationId: a!.invocationId, duplicate: true });
    expect(c).toEqual({ invocationId: a!.invocationId, duplicate: true });
    expect(await eventCount()).toBe(before + 1);
  });

  it('runs a failing async invocation to a dead letter, and a redrive to success', async () => {
    const [a] = await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: {} }]);
    const id = a!.invocationId;
    let state = a!.state!;
    const boom = { ok: false as const, error: { errorType: 'Error', errorMessage: 'boom', trace: [] }, durationMs: 1 };
    for (let attempt = 1; attempt <= 2; attempt++) {
      state = (await appendEvents(t.db, { invocationId: id, expectedSeq: state.lastSeq, prior: state, events: [{ type: 'started', data: { attempt, workerId: 'w' } }] })).state;
      state = (await recordOutcomes(t.db, [{ state, policy: fn, outcome: boom }])).results[0]!.state;
    }
    expect(state.status).toBe('dead_lettered');
    const [redriven] = await redrive(t.db, [id], 'test');
    const started = await appendEvents(t.db, { invocationId: id, expectedSeq: redriven!.lastSeq, prior: redriven!, events: [{ type: 'started', data: { attempt: 3, workerId: 'w' } }] });
    await recordOutcomes(t.db, [{ state: started.state, policy: fn, outcome: { ok: true, result: 'fixed', durationMs: 1, log: 'hello' } }]);
    const view = await getInvocation(t.db, id);
    expect(view!.events.map((e) => e.type)).toEqual([
      'accepted', 'started', 'failed', 'retried', 'started', 'failed', 'dead_lettered', 'redriven', 'started', 'succeeded',
    ]);
    expect(view!.status).toBe('succeeded');
    expect(view!.result).toBe('fixed');
    expect(view!.attempts).toBe(3);
  });
});

describe('rebuild-projections', () => {
  it('recomputes every projection from the events with the same result, row by row', async () => {
    const snapshot = async () => ({
      invocations: (await t.pool.query('select * from ledger.invocations order by id')).rows,
      queue: (await t.pool.query('select invocation_id, function_name, function_version, invocation_type, attempt, run_at, accepted_at, locked_by from ledger.queue order by invocation_id')).rows,
      keys: (await t.pool.query('select function_name, key, invocation_id from ledger.idempotency_keys order by 1, 2')).rows,
    });
    const before = await snapshot();
    expect(before.invocations.length).toBeGreaterThan(50);
    await rebuildProjections(t.db);
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(await verifyLedger(t.db)).toEqual([]);
  });
});

describe("one invocation's timeline", () => {
  it('reads only the partition that holds the invocation: a plan pruned by its id', async () => {
    // one connection, so the statement the app sends is the one explained below
    const one = t.open({ max: 1 });
    try {
      const [accepted] = await acceptInvocations(one.db, [{ fn, invocationType: 'async', payload: { timeline: 1 } }]);
      const id = accepted!.invocationId;
      expect((await getInvocation(one.db, id))!.events.map((e) => e.type)).toEqual(['accepted']);
      // the statement as prepared on that connection: a generic plan that must prune by the id
      const { rows } = await sql<{ name: string }>`
        select name from pg_prepared_statements where statement ilike '%from ledger.events%order by seq%'`.execute(one.db);
      expect(rows).toHaveLength(1);
      const plan = await sql<{ 'QUERY PLAN': string }>`explain (analyze, costs off, timing off, summary off) execute ${sql.raw(rows[0]!.name)}(${sql.lit(id)})`.execute(one.db);
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      const partitions = await sql<{ n: number }>`select count(*)::int as n from pg_inherits where inhparent = 'ledger.events'::regclass`.execute(one.db);
      expect(partitions.rows[0]!.n).toBeGreaterThan(1);
      expect(text).toMatch(/Subplans Removed: \d+/);
      // one partition read: one scan of a table (a bitmap scan's index half is not a second one)
      expect(text.match(/^\s*(->\s+)?(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan) /gm)).toHaveLength(1);
    } finally {
      await one.close();
    }
  });
});
