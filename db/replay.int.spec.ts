// verify and rebuild against corrupted projections: each corruption is made as the owner
// role (what a bad migration, a manual fix or a bug could do), verify must name it, and
// rebuild-projections must repair it from the events alone, at full precision.
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { recordOutcomes } from './attempts.ts';
import { createFunction, type FunctionVersion } from './functions.ts';
import { acceptInvocations, redrive } from './invocations.ts';
import type { InvocationState } from './lifecycle.ts';
import { rebuildProjections, verifyLedger } from './replay.ts';
import { appendEvents } from './writer.ts';

let t: TestDatabase;
let owner: pg.Client;
let fn: FunctionVersion;
let other: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  fn = await createFunction(t.db, 'replay-a', { runtime: 'MODULE', handler: 'echo.ts', maxRetries: 1, retryBaseDelayMs: 60_000 });
  other = await createFunction(t.db, 'replay-b', { runtime: 'MODULE', handler: 'echo.ts' });
});

afterAll(async () => {
  await owner?.end();
});

const corrupt = (text: string, values: unknown[] = []) => owner.query(text, values);

async function queued(f = fn, key: string | null = null): Promise<InvocationState> {
  const [a] = await acceptInvocations(t.db, [{ fn: f, invocationType: 'async', payload: {}, idempotencyKey: key }]);
  return a!.state!;
}

async function running(workerId = 'worker-1'): Promise<InvocationState> {
  const s = await queued();
  return (await appendEvents(t.db, { invocationId: s.id, expectedSeq: 1, prior: s, leaseMs: 60_000, events: [{ type: 'started', data: { attempt: 1, workerId } }] })).state;
}

async function problemsOf(id: string): Promise<string[]> {
  return (await verifyLedger(t.db)).filter((p) => p.invocationId === id).map((p) => p.problem);
}

/** After each corruption: rebuild repairs it, and verify is clean again. */
async function rebuildIsClean(): Promise<void> {
  const r = await rebuildProjections(t.db);
  expect(r.problems).toEqual([]);
  expect(await verifyLedger(t.db)).toEqual([]);
}

describe('verify finds invocations that would never run', () => {
  it('a queue row due at infinity', async () => {
    const s = await queued();
    await corrupt(`update ledger.queue set run_at = 'infinity' where invocation_id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual([expect.stringMatching(/^queue run_at = infinity: the invocation is never due/)]);
    await rebuildIsClean();
    const { rows } = await owner.query('select run_at = accepted_at as due_again from ledger.queue where invocation_id = $1', [s.id]);
    expect(rows).toEqual([{ due_again: true }]);
  });

  it('a queue row due years after anything the events or a throttled claim allow', async () => {
    const s = await queued();
    await corrupt(`update ledger.queue set run_at = now() + interval '10 years' where invocation_id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual([expect.stringMatching(/^queue run_at = .*, replay = .*a throttled claim may move it up to/)]);
    await rebuildIsClean();
  });

  it('a running attempt locked by a worker that does not exist, without a lease', async () => {
    const s = await running('worker-1');
    await corrupt('update ledger.queue set locked_by = $2, lease_expires_at = null where invocation_id = $1', [s.id, 'ghost']);
    expect(await problemsOf(s.id)).toEqual([
      'queue locked_by = ghost, replay = worker-1',
      expect.stringMatching(/^running attempt 1 has no finite lease \(lease_expires_at = null\)/),
    ]);
    await rebuildIsClean();
    const { rows } = await owner.query('select locked_by, lease_expires_at > now() as leased from ledger.queue where invocation_id = $1', [s.id]);
    expect(rows).toEqual([{ locked_by: 'worker-1', leased: true }]);
  });

  it('a lease that never expires', async () => {
    const s = await running();
    await corrupt(`update ledger.queue set lease_expires_at = 'infinity' where invocation_id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual([expect.stringMatching(/no finite lease \(lease_expires_at = infinity\)/)]);
    await rebuildIsClean();
  });

  it('a queued invocation holding a lock', async () => {
    const s = await queued();
    await corrupt(`update ledger.queue set locked_by = 'ghost', lease_expires_at = now() + interval '1 hour' where invocation_id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual([
      'queue locked_by = ghost, replay = null',
      expect.stringMatching(/^queue row of a queued invocation holds a lease until/),
    ]);
    await rebuildIsClean();
  });

  it('an invocation_type that no longer matches the accepted event, in the projection or the queue row', async () => {
    const s = await queued();
    await corrupt(`update ledger.queue set invocation_type = 'sync' where invocation_id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual(['queue invocation_type = sync, replay = async']);
    await corrupt(`update ledger.invocations set invocation_type = 'poll' where id = $1`, [s.id]);
    expect(await problemsOf(s.id)).toEqual(['projection invocation_type = poll, replay = async', 'queue invocation_type = sync, replay = async']);
    await rebuildIsClean();
  });

  it('a queued invocation without its queue row, and a finished one with one', async () => {
    const s = await queued();
    const done = await running();
    const finished = (await recordOutcomes(t.db, [{ state: done, policy: fn, outcome: { ok: true, result: 1, durationMs: 1 } }])).results[0]!.state;
    await corrupt('delete from ledger.queue where invocation_id = $1', [s.id]);
    await corrupt(
      `insert into ledger.queue (invocation_id, function_name, function_version, invocation_type, attempt, run_at, accepted_at)
       values ($1, $2, 1, 'async', 1, now(), now())`,
      [finished.id, fn.name],
    );
    expect(await problemsOf(s.id)).toEqual(['queue row missing for status queued']);
    expect(await problemsOf(finished.id)).toEqual(['queue row present for status succeeded']);
    await rebuildIsClean();
  });
});

describe('verify checks idempotency keys against the accepted events', () => {
  it('a key that names an invocation of another function', async () => {
    const a = await queued(fn, 'key-a');
    const b = await queued(other, 'key-b');
    await corrupt('update ledger.idempotency_keys set invocation_id = $2 where function_name = $1 and key = $3', [fn.name, b.id, 'key-a']);
    expect(await problemsOf(a.id)).toEqual([`idempotency key (replay-a, key-a) names invocation ${b.id}, whose accepted event carries (replay-b, key-b)`]);
    expect(await problemsOf(b.id)).toEqual(['idempotency key (replay-a, key-a) names this invocation, whose accepted event carries (replay-b, key-b)']);
    await rebuildIsClean();
    const { rows } = await owner.query('select function_name, key, invocation_id from ledger.idempotency_keys where invocation_id = any($1) order by 1', [[a.id, b.id]]);
    expect(rows).toEqual([
      { function_name: 'replay-a', key: 'key-a', invocation_id: a.id },
      { function_name: 'replay-b', key: 'key-b', invocation_id: b.id },
    ]);
  });

  it('a key that names another invocation of the same function with a different key', async () => {
    const a = await queued(fn, 'key-c');
    const c = await queued(fn, 'key-d');
    await corrupt('update ledger.idempotency_keys set invocation_id = $2 where function_name = $1 and key = $3', [fn.name, c.id, 'key-c']);
    expect(await problemsOf(a.id)).toEqual([`idempotency key (replay-a, key-c) names invocation ${c.id}, whose accepted event carries (replay-a, key-d)`]);
    await rebuildIsClean();
  });

  it('a key row missing within its 24 hours', async () => {
    const a = await queued(fn, 'key-e');
    await corrupt('delete from ledger.idempotency_keys where invocation_id = $1', [a.id]);
    expect(await problemsOf(a.id)).toEqual(['idempotency key (replay-a, key-e) has no row: a retry with it would run again']);
    await rebuildIsClean();
  });
});

describe('full precision', () => {
  it('verify notices a projection timestamp one microsecond off', async () => {
    const s = await running();
    await corrupt(`update ledger.invocations set updated_at = updated_at + interval '1 microsecond' where id = $1`, [s.id]);
    await corrupt(`update ledger.queue set accepted_at = accepted_at - interval '1 microsecond' where invocation_id = $1`, [s.id]);
    const problems = await problemsOf(s.id);
    expect(problems).toEqual([
      expect.stringMatching(/^projection updated_at = \d{4}-\d\d-\d\dT[\d:]+\.\d{6}Z, replay = \d{4}-\d\d-\d\dT[\d:]+\.\d{6}Z$/),
      expect.stringMatching(/^queue accepted_at = .*\.\d{6}Z, replay = .*\.\d{6}Z$/),
    ]);
    await rebuildIsClean();
  });

  it('rebuild restores every projection row to the microsecond after all of them are gone', async () => {
    // every status and every path through the writer: retried, dead-lettered, redriven, keyed
    await queued(fn, 'snap-1');
    await running();
    const r = await running();
    await recordOutcomes(t.db, [{ state: r, policy: fn, outcome: { ok: false, error: { errorType: 'E', errorMessage: 'x', trace: [] }, durationMs: 1 } }]);
    let d = await running();
    d = (await recordOutcomes(t.db, [{ state: d, policy: { ...fn, maxRetries: 0 }, outcome: { ok: false, error: { errorType: 'E', errorMessage: 'x', trace: [] }, durationMs: 1 } }])).results[0]!.state;
    expect(d.status).toBe('dead_lettered');
    await redrive(t.db, [d.id], 'test');
    const ok = await running();
    await recordOutcomes(t.db, [{ state: ok, policy: fn, outcome: { ok: true, result: 1, durationMs: 1 } }]);

    const micros = (c: string) => `to_char(${c} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')`;
    const snapshot = async () => ({
      invocations: (await owner.query(`select *, ${micros('accepted_at')} a, ${micros('started_at')} s, ${micros('finished_at')} f, ${micros('updated_at')} u from ledger.invocations order by id`)).rows,
      queue: (await owner.query(`select invocation_id, function_name, function_version, invocation_type, attempt, locked_by, ${micros('run_at')} r, ${micros('accepted_at')} a from ledger.queue order by invocation_id`)).rows,
      keys: (await owner.query('select function_name, key, invocation_id from ledger.idempotency_keys order by 1, 2')).rows,
    });
    const before = await snapshot();
    expect(before.invocations.length).toBeGreaterThan(10);
    await corrupt('delete from ledger.queue');
    await corrupt('delete from ledger.idempotency_keys');
    await corrupt('delete from ledger.invocations');
    const problems = await verifyLedger(t.db);
    expect(problems.filter((p) => p.problem === 'has events but no projection row')).toHaveLength(before.invocations.length);

    const result = await rebuildProjections(t.db);
    expect(result).toMatchObject({ invocations: before.invocations.length, repaired: before.invocations.length, removed: 0, problems: [] });
    expect(await snapshot()).toEqual(before);
    expect(await verifyLedger(t.db)).toEqual([]);
    // nothing differs any more: a second rebuild writes nothing
    expect(await rebuildProjections(t.db)).toMatchObject({ repaired: 0, removed: 0 });
  });
});

describe('rows that no event explains', () => {
  it('are named by verify and removed by rebuild', async () => {
    const ghost = crypto.randomUUID();
    const stray = crypto.randomUUID();
    await corrupt(
      `insert into ledger.invocations (id, function_name, function_version, invocation_type, status, last_seq, last_event_type, accepted_at, updated_at)
       values ($1, 'replay-a', 1, 'async', 'queued', 1, 'accepted', now(), now())`,
      [ghost],
    );
    await corrupt(
      `insert into ledger.queue (invocation_id, function_name, function_version, invocation_type, run_at, accepted_at)
       values ($1, 'replay-a', 1, 'async', now(), now()), ($2, 'replay-a', 1, 'async', now(), now())`,
      [ghost, stray],
    );
    await corrupt(`insert into ledger.idempotency_keys values ('replay-a', 'nobody', $1, now() + interval '1 day')`, [stray]);
    const problems = await verifyLedger(t.db);
    expect(problems).toEqual(
      expect.arrayContaining([
        { invocationId: ghost, problem: 'projection row without events' },
        { invocationId: stray, problem: 'queue row without a projection row' },
        { invocationId: stray, problem: 'idempotency key (replay-a, nobody) names an invocation that has no events' },
      ]),
    );
    expect(problems).toHaveLength(3);
    expect(await rebuildProjections(t.db)).toMatchObject({ removed: 4, problems: [] });
    expect(await verifyLedger(t.db)).toEqual([]);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.queue where invocation_id = any(${[ghost, stray]}::uuid[])`.execute(t.db);
    expect(rows[0]!.n).toBe(0);
  });
});
