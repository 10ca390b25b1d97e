// API keys created and revoked are changes in ledger.changes, without their secrets.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/helpers/database.ts';
import { createApiKey, revokeApiKey } from './keys.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

describe('API key changes', () => {
  it('records created and revoked once each, with the actor and never a secret', async () => {
    const key = await createApiKey(t.db, { name: 'ops', scopes: ['admin'] }, { actor: 'cli:alice' });
    await revokeApiKey(t.db, key.id, { actor: 'cli:bob' });
    await revokeApiKey(t.db, key.id, { actor: 'cli:bob' }); // already revoked: nothing happens, nothing recorded
    const { rows } = await sql<{ seq: number; action: string; actor: string; data: unknown }>`
      select seq, action, actor, data from audit.changes where resource_type = 'api_key' and resource_name = ${key.id} order by seq`.execute(t.db);
    expect(rows).toEqual([
      { seq: 1, action: 'created', actor: 'cli:alice', data: { after: { name: 'ops', scopes: ['admin'] } } },
      { seq: 2, action: 'revoked', actor: 'cli:bob', data: {} },
    ]);
    const text = JSON.stringify(rows);
    expect(text).not.toContain(key.secretAccessKey);
    expect(text).not.toContain(key.token.split('_').at(-1));
  });
});
