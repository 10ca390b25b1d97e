// `export const schedule` in a FUNCTIONS_DIR file: registered at start as the schedule
// functions-dir/<function>, left alone while the file is unchanged, replaced when the
// declaration changes, deleted when the file stops declaring it; each change in ledger.changes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFunctionsDir } from '../../apps/cli/register-functions.ts';
import { listChanges } from '../../db/changes.ts';
import { FUNCTIONS_DIR_GROUP, getSchedule } from '../../db/schedule-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let dir: string;
const silent = pino({ level: 'silent' });

beforeAll(async () => {
  t = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'schedule-export-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const file = (schedule: string | null) =>
  writeFile(
    path.join(dir, 'nightly.ts'),
    `${schedule === null ? '' : `export const schedule = ${schedule};\n`}export async function handler(event: unknown) { return event; }\n`,
  );

describe('a schedule export in a function file', () => {
  it('is created, kept, replaced and deleted with the file', { timeout: 60_000 }, async () => {
    const register = () => registerFunctionsDir(t.db, dir, {}, silent);
    await file(`{ expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Berlin', input: { job: 'cleanup', at: '<aws.scheduler.scheduled-time>' }, misfirePolicy: 'skip' }`);
    await register();
    const made = await getSchedule(t.db, FUNCTIONS_DIR_GROUP, 'nightly');
    expect(made).toMatchObject({ expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Berlin', misfirePolicy: { mode: 'skip' }, target: { functionName: 'nightly', input: '{"job":"cleanup","at":"<aws.scheduler.scheduled-time>"}' } });

    await register(); // unchanged: no change recorded, the same schedule
    expect((await getSchedule(t.db, FUNCTIONS_DIR_GROUP, 'nightly'))?.updatedAt).toEqual(made?.updatedAt);

    await file(`'rate(30 minutes)'`);
    await register();
    expect(await getSchedule(t.db, FUNCTIONS_DIR_GROUP, 'nightly')).toMatchObject({ id: made?.id, expression: 'rate(30 minutes)', timezone: 'UTC', misfirePolicy: { mode: 'once' } });

    await file(null);
    await register();
    expect(await getSchedule(t.db, FUNCTIONS_DIR_GROUP, 'nightly')).toBeNull();
    const changes = await listChanges(t.db, { resourceType: 'schedule', resourceName: `${FUNCTIONS_DIR_GROUP}/nightly` });
    expect(changes.map((c) => [c.action, c.actor])).toEqual([
      ['deleted', 'startup'],
      ['updated', 'startup'],
      ['created', 'startup'],
    ]);
  });
});
