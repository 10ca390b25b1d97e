// The projection's updates stay on their page (HOT: no new index entries) on the way a
// drained invocation goes, and the read paths that used the old indexes still find the
// same rows (migrations/0034, docs/benchmarks.md). Counters, not timings.
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from './connection.ts';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { listInvocations, countInvocations } from './read-models.ts';
import { deadLetterGroups } from './monitoring.ts';
import { appendBatch, type AppendRequest } from './writer.ts';
import type { InvocationState } from './lifecycle.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

const accepted = (id: string, fn: string): AppendRequest => ({
  invocationId: id,
  expectedSeq: 0,
  events: [{ type: 'accepted', data: { functionName: fn, functionVersion: 1, invocationType: 'async', payload: {}, idempotencyKey: null } }],
});
const next = (s: InvocationState, events: AppendRequest['events']): AppendRequest => ({ invocationId: s.id, expectedSeq: s.lastSeq, prior: s, events });
const started = (s: InvocationState) => next(s, [{ type: 'started', data: { attempt: s.attempts + 1, workerId: 'w' } }]);
const err = { errorType: 'Boom', errorMessage: 'x', trace: [] };

describe('ledger.invocations updates are HOT', () => {
  it('started and succeeded of claim-sized batches leave most updates on their page', async () => {
    // one connection, so its pending table statistics can be flushed before they are read
    const one = t.open({ max: 1 });
    try {
      const counters = async () => {
        await sql`select pg_stat_force_next_flush()`.execute(one.db);
        const { rows } = await sql<{ upd: string; hot: string }>`
          select n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables
          where schemaname = 'ledger' and relname = 'invocations'`.execute(one.db);
        return { upd: Number(rows[0]?.upd), hot: Number(rows[0]?.hot) };
      };
      const before = await counters();
      for (let batch = 0; batch < 3; batch++) {
        const ids = Array.from({ length: 300 }, () => uuidv7());
        const { results: acc } = await appendBatch(one.db, ids.map((id) => accepted(id, 'hot')));
        const { results: run } = await appendBatch(one.db, acc.map((r) => started(r.state)));
        const { rejected } = await appendBatch(one.db, run.map((r) => next(r.state, [{ type: 'succeeded', data: { attempt: 1, result: null, durationMs: 1 } }])));
        expect(rejected).toEqual([]);
      }
      const after = await counters();
      const updates = after.upd - before.upd;
      expect(updates).toBe(2 * 3 * 300);
      // before migrations/0034 none were: status was in three partial-index predicates.
      // `started` finds room on the page (fillfactor 50 in 0034, 30 since 0035); before 0035 `succeeded` depended
      // on pruning the versions `started` left, which any older snapshot in this database
      // (autovacuum's, say) holds back: so about half at least, most when nothing interferes
      expect((after.hot - before.hot) / updates).toBeGreaterThan(0.4);
    } finally {
      await one.close();
    }
  });
});

describe('ledger.invocations pages hold both updates of a drained invocation', () => {
  it('started and succeeded are both HOT while an older snapshot holds back pruning', async () => {
    // the old versions cannot be pruned while this snapshot lives, so `succeeded` stays on
    // its page only if the page kept room for two new versions (migrations/0035)
    const holder = t.open({ max: 1 });
    const one = t.open({ max: 1 });
    try {
      await holder.db.transaction().setIsolationLevel('repeatable read').execute(async (snap) => {
        await sql`select count(*) from ledger.invocations`.execute(snap);
        const counters = async () => {
          await sql`select pg_stat_force_next_flush()`.execute(one.db);
          const { rows } = await sql<{ upd: string; hot: string }>`
            select n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables
            where schemaname = 'ledger' and relname = 'invocations'`.execute(one.db);
          return { upd: Number(rows[0]?.upd), hot: Number(rows[0]?.hot) };
        };
        const before = await counters();
        const ids = Array.from({ length: 300 }, () => uuidv7());
        const { results: acc } = await appendBatch(one.db, ids.map((id) => accepted(id, 'hot')));
        const { results: run } = await appendBatch(one.db, acc.map((r) => started(r.state)));
        const { rejected } = await appendBatch(one.db, run.map((r) => next(r.state, [{ type: 'succeeded', data: { attempt: 1, result: null, durationMs: 1 } }])));
        expect(rejected).toEqual([]);
        const after = await counters();
        expect({ updates: after.upd - before.upd, hot: after.hot - before.hot }).toEqual({ updates: 600, hot: 600 });
      });
    } finally {
      await one.close();
      await holder.close();
    }
  });
});

describe('status filters read through the new indexes and the queue', () => {
  it('running, queued and dead-lettered invocations are listed and counted as before', async () => {
    const fn = 'filters';
    const ids = Array.from({ length: 9 }, () => uuidv7());
    const { results } = await appendBatch(t.db, ids.map((id) => accepted(id, fn)));
    const [q1, q2, q3, r1, r2, s1, d1, d2, d3] = results.map((r) => r.state) as InvocationState[];
    const { results: run } = await appendBatch(t.db, [r1, r2, s1, d1, d2, d3].map((s) => started(s as InvocationState)));
    const byId = new Map(run.map((r) => [r.invocationId, r.state]));
    const st = (s: InvocationState | undefined) => byId.get((s as InvocationState).id) as InvocationState;
    await appendBatch(t.db, [
      next(st(s1), [{ type: 'succeeded', data: { attempt: 1, result: null, durationMs: 1 } }]),
      ...[d1, d2, d3].map((d) =>
        next(st(d), [
          { type: 'failed', data: { attempt: 1, error: err, willRetry: false, durationMs: 1 } },
          { type: 'dead_lettered', data: { reason: 'RetriesExhausted' } },
        ]),
      ),
    ]);
    const list = async (status: InvocationState['status'], extra: { errorType?: string } = {}) =>
      (await listInvocations(t.db, { functionName: fn, status, ...extra }, { first: 50 })).items.map((i) => i.node.id).sort();
    const sorted = (xs: (InvocationState | undefined)[]) => xs.map((x) => (x as InvocationState).id).sort();
    expect(await list('queued')).toEqual(sorted([q1, q2, q3]));
    expect(await list('running')).toEqual(sorted([r1, r2]));
    expect(await list('succeeded')).toEqual(sorted([s1]));
    expect(await list('dead_lettered')).toEqual(sorted([d1, d2, d3]));
    expect(await list('dead_lettered', { errorType: 'Boom' })).toEqual(sorted([d1, d2, d3]));
    expect(await countInvocations(t.db, { functionName: fn, status: 'running' })).toBe(2);
    expect(await countInvocations(t.db, { functionName: fn, status: 'dead_lettered' })).toBe(3);
    const groups = (await deadLetterGroups(t.db)).filter((g) => g.functionName === fn);
    expect(groups.map((g) => [g.errorType, g.count])).toEqual([['Boom', 3]]);
  });

  it('refuses a projection row whose dead-letter reason disagrees with its status', async () => {
    const id = uuidv7();
    await appendBatch(t.db, [accepted(id, 'constraint')]);
    // as the owner, so no grant stands in for the constraint
    const owner = await connectClient(t.ownerUrl);
    try {
      await expect(owner.query(`update ledger.invocations set dead_letter_reason = 'RetriesExhausted' where id = $1`, [id])).rejects.toThrow(
        /invocations_dead_letter_reason_check/,
      );
    } finally {
      await owner.end();
    }
  });
});
