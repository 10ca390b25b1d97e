// A schedule's target may name an alias, as an EventBridge Scheduler target may name a
// Lambda alias ARN: each tick is routed through the alias when it fires, by its weights,
// and the tick's `accepted` event names the alias and the version that ran
// (docs/schedules.md#managing-schedules). Real PostgreSQL and an in-process worker.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlias, publishVersion } from '../../db/control-plane.ts';
import type { LedgerError } from '../../db/errors.ts';
import { updateFunction } from '../../db/functions.ts';
import { createSchedule, listTicks } from '../../db/schedule-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { fn, startWorker, waitFor, type RunningWorker } from '../worker/helpers.ts';

let t: TestDatabase;
let worker: RunningWorker;
const by = { actor: 'test' };

beforeAll(async () => {
  t = await createTestDatabase();
  worker = await startWorker(t.db, t.url);
  await fn(t.db, 'greet', 'echo.ts');
  await publishVersion(t.db, by, 'greet');
  await updateFunction(t.db, 'greet', { handler: 'noop.ts' });
  await publishVersion(t.db, by, 'greet');
});

afterAll(async () => {
  await worker?.stop();
});

/** The accepted event of each fired tick of a schedule: the version and alias it names. */
async function firedVersions(name: string, n: number): Promise<{ version: number; alias: string | null }[]> {
  const ticks = await waitFor(`${n} ticks of ${name}`, async () => {
    const list = (await listTicks(t.db, null, name)).filter((k) => k.outcome === 'fired');
    return list.length >= n ? list : null;
  }, 30_000);
  const { rows } = await sql<{ version: number; alias: string | null }>`
    select (data ->> 'functionVersion')::int as version, data ->> 'alias' as alias from ledger.events
    where seq = 1 and invocation_id = any(${ticks.map((k) => k.invocationId)}::uuid[])`.execute(t.db);
  return rows;
}

describe('a schedule targeting an alias', () => {
  it("fires through the alias: the tick runs the alias's version and its accepted event names the alias", async () => {
    await createAlias(t.db, by, 'greet', 'live', { functionVersion: 2 });
    const s = await createSchedule(t.db, { name: 'via-alias', expression: 'rate(1 hour)', target: { functionName: 'greet', qualifier: 'live' } }, by);
    expect(s.target.qualifier).toBe('live');
    expect(await firedVersions('via-alias', 1)).toEqual([{ version: 2, alias: 'live' }]);
  });

  it('with additional weights each tick draws its version, as an invoke through the alias does', async () => {
    await createAlias(t.db, by, 'greet', 'canary', { functionVersion: 1, additionalWeights: { '2': 1 } });
    await createSchedule(t.db, { name: 'via-canary', expression: 'rate(1 hour)', target: { functionName: 'greet', qualifier: 'canary' } }, by);
    // weight 1.0 on version 2: every draw lands there
    expect(await firedVersions('via-canary', 1)).toEqual([{ version: 2, alias: 'canary' }]);
  });

  it('a tick whose alias does not exist is skipped as target_missing, as one whose function does not exist is', async () => {
    // EventBridge Scheduler does not check the target when a schedule is created either
    await createSchedule(t.db, { name: 'no-alias', expression: 'rate(1 hour)', target: { functionName: 'greet', qualifier: 'nosuch' } }, by);
    const [tick] = await waitFor('the tick decided', async () => {
      const list = await listTicks(t.db, null, 'no-alias');
      return list.length > 0 ? list : null;
    }, 30_000);
    expect(tick).toMatchObject({ outcome: 'skipped', skipReason: 'target_missing', invocationId: null });
  });

  it('a malformed qualifier is refused as before', async () => {
    const err = await createSchedule(t.db, { name: 'bad-q', expression: 'rate(1 hour)', target: { functionName: 'greet', qualifier: 'a b' } }, by).catch((e: unknown) => e);
    expect((err as LedgerError).code).toBe('InvalidParameter');
  });
});
