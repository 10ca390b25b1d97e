// The console shows a replay as one (docs/replay.md): REPLAY in the type filter, and on the
// replay's page its original, linked, and its run.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayProgress, startReplay } from '../../db/replay-runs.ts';
import { moduleFn } from '../api/helpers.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { bearer, createKeys, startSecureApi, type Keys, type SecureApi } from '../security/helpers.ts';
import { startWorker, waitFor, type RunningWorker } from '../worker/helpers.ts';

let t: TestDatabase;
let api: SecureApi;
let keys: Keys;
let worker: RunningWorker;

beforeAll(async () => {
  t = await createTestDatabase();
  await moduleFn(t.db, 'echo', 'echo.ts');
  keys = await createKeys(t.db);
  api = await startSecureApi(t.db);
  worker = await startWorker(t.db, t.url);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
});

async function signIn(token: string): Promise<string> {
  const res = await fetch(`${api.url}/console/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: api.url },
    body: new URLSearchParams({ key: token, next: '/console/invocations' }),
  });
  expect(res.status).toBe(303);
  return (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
}

describe('console', () => {
  it('filters replays and links a replay to its original', async () => {
    const res = await fetch(`${api.url}/invoke/echo`, { method: 'POST', headers: bearer(keys.invoke), body: '{"n":1}' });
    expect(res.status).toBe(200);
    const run = await startReplay(t.db, { selection: { functionName: 'echo' } });
    await waitFor('the replay', async () => (await replayProgress(t.db, [run.id])).get(run.id)?.done);
    const { rows } = await sql<{ original_id: string; invocation_id: string }>`
      select original_id, invocation_id from ledger.replay_items where replay_id = ${run.id}::uuid`.execute(t.db);
    const item = rows[0] as { original_id: string; invocation_id: string };

    const cookie = await signIn(keys.audit.token);
    const list = await (await fetch(`${api.url}/console/invocations?type=REPLAY`, { headers: { cookie } })).text();
    expect(list).toContain(item.invocation_id);
    expect(list).not.toContain(`aria-label="Invocation ${item.original_id}"`);
    const detail = await (await fetch(`${api.url}/console/invocations/${item.invocation_id}`, { headers: { cookie } })).text();
    expect(detail).toContain(`href="/console/invocations/${item.original_id}"`);
    expect(detail).toContain(`replay run ${run.id}`);
  });
});
