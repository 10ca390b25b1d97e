// What the application role writes once, it cannot rewrite: the database itself refuses
// it, whatever the code does. Each case runs the statement a compromised or buggy process
// would send as `ledger_app` (the role the app acts as), and, where a trigger enforces the
// rule, as the owner too. docs/security.md says what is enforced for whom; the last
// describe checks the limits it states.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../apps/api/auth/index.ts';
import type { DatabaseHandle } from '../../db/connection.ts';
import { createApiKey, revokeApiKey } from '../../db/keys.ts';
import { sendMessages } from '../../db/queues/messages.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { appendEvents } from '../../db/writer.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { moduleFn } from '../api/helpers.ts';

let t: TestDatabase;
/** the login role, which owns the tables (no SET ROLE) */
let owner: DatabaseHandle;

beforeAll(async () => {
  t = await createTestDatabase();
  owner = t.open({ role: '' });
  await moduleFn(t.db, 'echo', 'echo.ts');
});

afterAll(async () => {
  await owner?.close();
});

const whoAmI = async (h: { db: TestDatabase['db'] }) =>
  (await sql<{ r: string }>`select current_user as r`.execute(h.db)).rows[0]?.r;

describe('the roles under test', () => {
  it('the app handle acts as ledger_app; the owner handle does not', async () => {
    expect(await whoAmI(t)).toBe('ledger_app');
    expect(await whoAmI(owner)).not.toBe('ledger_app');
  });
});

describe('API keys: revocation is permanent', () => {
  it('ledger_app cannot un-revoke a key, and the token stays refused', async () => {
    const key = await createApiKey(t.db, { scopes: ['admin'] });
    const auth = new Authenticator(t.db, { enabled: true, cacheTtlMs: 0 });
    expect((await auth.bearer(`Bearer ${key.token}`)).keyId).toBe(key.id);
    await revokeApiKey(t.db, key.id);
    await expect(sql`update ledger.api_keys set revoked_at = null where id = ${key.id}`.execute(t.db)).rejects.toThrow(/revoked.*permanent/i);
    await expect(auth.bearer(`Bearer ${key.token}`)).rejects.toThrow(/invalid/);
  });

  it('nor can the owner, nor can either move the revocation time', async () => {
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    await revokeApiKey(t.db, key.id);
    for (const h of [t, owner]) {
      await expect(sql`update ledger.api_keys set revoked_at = null where id = ${key.id}`.execute(h.db)).rejects.toThrow(/permanent/);
      await expect(sql`update ledger.api_keys set revoked_at = revoked_at + interval '1 day' where id = ${key.id}`.execute(h.db)).rejects.toThrow(/permanent/);
    }
    // a blanket statement with no matching change is not an attack: revoking twice still works
    expect((await revokeApiKey(t.db, key.id)).revokedAt).toBeInstanceOf(Date);
  });

  it('a revocation is stamped with the time it happens, not a time the caller picks', async () => {
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    await expect(sql`update ledger.api_keys set revoked_at = now() - interval '1 year' where id = ${key.id}`.execute(t.db)).rejects.toThrow(
      /revoked_at/,
    );
    await expect(sql`update ledger.api_keys set revoked_at = now() + interval '1 year' where id = ${key.id}`.execute(t.db)).rejects.toThrow(
      /revoked_at/,
    );
  });

  it("the owner cannot rewrite a key's scopes or hash, delete or truncate keys", async () => {
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    await expect(sql`update ledger.api_keys set scopes = array['admin'] where id = ${key.id}`.execute(owner.db)).rejects.toThrow(/never changed/);
    await expect(sql`update ledger.api_keys set secret_sha256 = secret_sha256 where id = ${key.id}`.execute(owner.db)).resolves.toBeDefined();
    await expect(sql`update ledger.api_keys set name = 'renamed' where id = ${key.id}`.execute(owner.db)).rejects.toThrow(/never changed/);
    await expect(sql`delete from ledger.api_keys where id = ${key.id}`.execute(owner.db)).rejects.toThrow(/never deleted/);
    await expect(sql`truncate ledger.api_keys`.execute(owner.db)).rejects.toThrow(/never deleted/);
  });
});

describe('attempt logs: what an attempt printed stays as printed', () => {
  let invocationId: string;
  beforeAll(async () => {
    invocationId = crypto.randomUUID();
    const data = { functionName: 'echo', functionVersion: 1, invocationType: 'sync', payload: {}, idempotencyKey: null };
    await appendEvents(t.db, {
      invocationId,
      expectedSeq: 0,
      events: [
        { type: 'accepted', data },
        { type: 'started', data: { attempt: 1, workerId: 'w' } },
        { type: 'succeeded', data: { attempt: 1, result: 1, durationMs: 1 } },
      ] as never,
      log: { attempt: 1, text: 'printed once\n' },
    });
    const { rows } = await sql<{ log: string }>`select log from ledger.attempt_logs where invocation_id = ${invocationId}::uuid`.execute(t.db);
    expect(rows[0]?.log).toBe('printed once\n');
  });

  it.each(['ledger_app', 'owner'])('%s cannot change or delete it', async (who) => {
    const h = who === 'owner' ? owner : t;
    await expect(sql`update ledger.attempt_logs set log = 'rewritten' where invocation_id = ${invocationId}::uuid`.execute(h.db)).rejects.toThrow(/append-only|never changed/);
    await expect(sql`delete from ledger.attempt_logs where invocation_id = ${invocationId}::uuid`.execute(h.db)).rejects.toThrow(
      /append-only|permission denied/,
    );
  });
});

describe('destination deliveries: the record and where it goes are fixed at write', () => {
  let id: string;
  beforeAll(async () => {
    const { rows } = await sql<{ id: string }>`
      insert into ledger.destination_deliveries (invocation_id, invoke_count, condition, destination, record)
      values (${crypto.randomUUID()}::uuid, 1, 'Success', 'http://127.0.0.1:9/hook', '{"a":1}'::jsonb) returning id`.execute(owner.db);
    id = rows[0]!.id;
  });

  it.each([
    ['record', sql`record = '{"a":2}'::jsonb`],
    ['destination', sql`destination = 'http://attacker.example/'`],
    ['condition', sql`condition = 'RetriesExhausted'`],
    ['invocation_id', sql`invocation_id = gen_random_uuid()`],
  ])('ledger_app cannot change %s', async (_col, set) => {
    await expect(sql`update ledger.destination_deliveries set ${set} where id = ${id}`.execute(t.db)).rejects.toThrow(/permission denied/);
  });

  it('ledger_app can still move a delivery along (attempts, status, errors) but cannot delete it', async () => {
    await sql`update ledger.destination_deliveries set attempts = attempts + 1, status = 'failed', last_error = 'x',
      last_status_code = 500, next_attempt_at = now(), delivered_at = null where id = ${id}`.execute(t.db);
    await expect(sql`delete from ledger.destination_deliveries where id = ${id}`.execute(t.db)).rejects.toThrow(/permission denied/);
  });
});

describe('queue messages: a body is what was sent', () => {
  it('ledger_app cannot change a message body, queue or send time; it can receive, settle and delete', async () => {
    await createQueue(t.db, { name: 'wo' });
    const [mid] = await sendMessages(t.db, 'wo', [{ body: { order: 1 } }]);
    await expect(sql`update ledger.messages set body = '{"order":2}'::jsonb where id = ${mid}::uuid`.execute(t.db)).rejects.toThrow(/permission denied/);
    await expect(sql`update ledger.messages set queue_name = 'other' where id = ${mid}::uuid`.execute(t.db)).rejects.toThrow(/permission denied/);
    await expect(sql`update ledger.messages set sent_at = now() where id = ${mid}::uuid`.execute(t.db)).rejects.toThrow(/permission denied/);
    await sql`update ledger.messages set receive_count = receive_count + 1, visible_at = now() where id = ${mid}::uuid`.execute(t.db);
    await sql`delete from ledger.messages where id = ${mid}::uuid`.execute(t.db);
  });
});

describe('events and function versions (migration 0001), for completeness', () => {
  it.each(['ledger_app', 'owner'])('%s cannot update, delete or truncate events or versions', async (who) => {
    const h = who === 'owner' ? owner : t;
    for (const [table, column] of [
      [sql`ledger.events`, sql`data`],
      [sql`ledger.function_versions`, sql`config`],
    ]) {
      await expect(sql`update ${table} set ${column} = ${column}`.execute(h.db)).rejects.toThrow(/append-only|permission denied/);
      await expect(sql`delete from ${table}`.execute(h.db)).rejects.toThrow(/append-only|permission denied/);
      await expect(sql`truncate ${table}`.execute(h.db)).rejects.toThrow(/append-only|permission denied/);
    }
  });
});

describe('what the database does not enforce (docs/security.md says so)', () => {
  it('ledger_app cannot switch triggers off: session_replication_role needs a superuser', async () => {
    await expect(
      t.db.connection().execute(async (c) => {
        await sql`set session_replication_role = replica`.execute(c);
      }),
    ).rejects.toThrow(/permission denied/);
  });

  it('a superuser can: with session_replication_role = replica the triggers do not fire', async () => {
    const { rows } = await sql<{ su: boolean }>`select rolsuper as su from pg_roles where rolname = current_user`.execute(owner.db);
    if (!rows[0]?.su) return; // only meaningful where the login role is a superuser (as in this suite)
    const key = await createApiKey(t.db, { scopes: ['audit'] });
    await revokeApiKey(t.db, key.id);
    await owner.db.transaction().execute(async (tx) => {
      await sql`set local session_replication_role = replica`.execute(tx);
      await sql`update ledger.api_keys set revoked_at = null where id = ${key.id}`.execute(tx);
      const { rows: after } = await sql<{ r: Date | null }>`select revoked_at as r from ledger.api_keys where id = ${key.id}`.execute(tx);
      expect(after[0]?.r).toBeNull();
      // leave nothing behind: this test documents a limit, it does not keep the damage
      throw new Error('rolled back');
    }).catch((e: Error) => expect(e.message).toBe('rolled back'));
    const { rows: kept } = await sql<{ r: Date | null }>`select revoked_at as r from ledger.api_keys where id = ${key.id}`.execute(t.db);
    expect(kept[0]?.r).toBeInstanceOf(Date);
  });
});
