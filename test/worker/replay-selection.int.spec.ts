// Replay's selection (docs/replay.md#choosing-what-to-replay): a time range and statuses pick
// exactly the recorded invocations they name, a sample is that many of the matches, and
// ids must lie inside the rest of the selection. Read from the run's items in the ledger.
import { sql } from 'kysely';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFunction } from '../../db/functions.ts';
import { rebuildProjections } from '../../db/replay.ts';
import { startReplay, type ReplayRun } from '../../db/replay-runs.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let owner: pg.Client;
const DAY = 24 * 3_600_000;
/** recorded invocations of `quote`, by day (days ago) and outcome */
const recorded: { id: string; daysAgo: number; status: 'succeeded' | 'failed' }[] = [];

const items = async (run: ReplayRun) =>
  (await sql<{ id: string }>`select original_id::text as id from ledger.replay_items where replay_id = ${run.id}::uuid order by ordinal`.execute(t.db)).rows.map((r) => r.id);
const idsOf = (pick: (r: (typeof recorded)[number]) => boolean) => recorded.filter(pick).map((r) => r.id);

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  await createFunction(t.db, 'quote', { runtime: 'MODULE', handler: 'echo.ts' });
  await owner.query('select ledger.premake_event_partitions(0, $1)', [new Date(Date.now() - 40 * DAY)]);
  // six days of sync invocations, two a day: the first of each day succeeded, the second failed
  for (let daysAgo = 6; daysAgo >= 1; daysAgo--) {
    for (const [i, status] of (['succeeded', 'failed'] as const).entries()) {
      const at = new Date(Date.now() - daysAgo * DAY + i * 60_000);
      const id = uuidv7({ msecs: at.getTime() });
      const outcome = status === 'succeeded'
        ? { attempt: 1, result: { day: daysAgo }, durationMs: 1 }
        : { attempt: 1, error: { errorType: 'Error', errorMessage: 'boom', trace: [] }, willRetry: false, durationMs: 1 };
      await owner.query(
        `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
         values ($1, 1, 'accepted', null, jsonb_build_object('functionName', 'quote', 'functionVersion', 1, 'invocationType', 'sync',
                                                            'payload', jsonb_build_object('day', $3::int), 'idempotencyKey', null), $2),
                ($1, 2, 'started', 1, '{"attempt": 1, "workerId": "history"}', $2::timestamptz + interval '1 ms'),
                ($1, 3, $4, 1, $5, $2::timestamptz + interval '2 ms')`,
        [id, at, daysAgo, status, JSON.stringify(outcome)],
      );
      recorded.push({ id, daysAgo, status });
    }
  }
  await rebuildProjections(t.db);
});

afterAll(async () => {
  await owner?.end();
});

describe('what a replay selects', () => {
  it('a time range: accepted at or after from and before to, oldest first', async () => {
    const run = await startReplay(t.db, {
      selection: { functionName: 'quote', from: new Date(Date.now() - 4.5 * DAY), to: new Date(Date.now() - 2.5 * DAY) },
    });
    expect(await items(run)).toEqual(idsOf((r) => r.daysAgo === 4 || r.daysAgo === 3));
    expect(run.total).toBe(4);
  });

  it('statuses: only the failed ones, and with the time range both at once', async () => {
    expect(await items(await startReplay(t.db, { selection: { functionName: 'quote', statuses: ['failed'] } }))).toEqual(
      idsOf((r) => r.status === 'failed'),
    );
    const both = await startReplay(t.db, { selection: { functionName: 'quote', statuses: ['succeeded'], from: new Date(Date.now() - 2.5 * DAY) } });
    expect(await items(both)).toEqual(idsOf((r) => r.status === 'succeeded' && r.daysAgo <= 2));
  });

  it('a sample is that many distinct matches of the selection', async () => {
    const run = await startReplay(t.db, { selection: { functionName: 'quote', statuses: ['failed'], sample: 3 } });
    const picked = await items(run);
    expect(picked).toHaveLength(3);
    expect(new Set(picked).size).toBe(3);
    const failed = new Set(idsOf((r) => r.status === 'failed'));
    expect(picked.every((id) => failed.has(id))).toBe(true);
  });

  it('ids outside the time range are refused and nothing is written', async () => {
    const before = (await sql<{ n: number }>`select count(*)::int as n from ledger.replays`.execute(t.db)).rows[0]!.n;
    const old = idsOf((r) => r.daysAgo === 6);
    await expect(
      startReplay(t.db, { selection: { functionName: 'quote', ids: old, from: new Date(Date.now() - 3 * DAY) } }),
    ).rejects.toMatchObject({ code: 'InvalidParameter' });
    expect((await sql<{ n: number }>`select count(*)::int as n from ledger.replays`.execute(t.db)).rows[0]!.n).toBe(before);
    expect(await items(await startReplay(t.db, { selection: { functionName: 'quote', ids: old } }))).toEqual(old);
  });
});
