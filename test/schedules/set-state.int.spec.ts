// Enabling or disabling a schedule changes its state and nothing else, even when another
// update of the schedule commits while it runs: the definition is read under the same lock
// that writes it (db/schedule-store.ts setScheduleState), so that update is not overwritten.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { listChanges } from '../../db/changes.ts';
import { createSchedule, getSchedule, setScheduleState } from '../../db/schedule-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { waitFor } from '../worker/helpers.ts';
import pg from 'pg';

let t: TestDatabase;
const by = { actor: 'test' };

beforeAll(async () => {
  t = await createTestDatabase();
});

describe('setScheduleState', () => {
  it('does not overwrite an update that commits while it waits for the schedule', async () => {
    await createSchedule(t.db, { name: 'raced', description: 'before', expression: 'rate(1 hour)', target: { functionName: 'echo' } }, by);
    // another writer holds the schedule with a new description, not yet committed
    const other = new pg.Client({ connectionString: t.ownerUrl });
    await other.connect();
    try {
      await other.query('begin');
      await other.query(`update ledger.schedules set description = 'changed meanwhile' where name = 'raced'`);
      const disabling = setScheduleState(t.db, null, 'raced', 'DISABLED', by);
      // the state change is waiting for the schedule's lock
      await waitFor('setScheduleState to wait for the lock', async () => {
        const { rows } = await adminQuery(t.ownerUrl, `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
        return (rows[0] as { n: number }).n > 0;
      }, 10_000);
      await other.query('commit');
      const after = await disabling;
      expect(after).toMatchObject({ state: 'DISABLED', description: 'changed meanwhile' });
    } finally {
      await other.end();
    }
    expect(await getSchedule(t.db, null, 'raced')).toMatchObject({ state: 'DISABLED', description: 'changed meanwhile' });
    const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/raced' });
    expect(changes[0]).toMatchObject({ action: 'updated', actor: 'test' });
  });

  it('the state it already has records nothing', async () => {
    await createSchedule(t.db, { name: 'steady', expression: 'rate(1 hour)', target: { functionName: 'echo' } }, by);
    await setScheduleState(t.db, null, 'steady', 'ENABLED', by);
    const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: 'default/steady' });
    expect(changes.map((c) => c.action)).toEqual(['created']);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.schedules where name = 'steady' and state = 'ENABLED'`.execute(t.db);
    expect(rows[0]?.n).toBe(1);
  });
});
