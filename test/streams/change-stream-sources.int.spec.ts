// A change stream sends every row of its table to a function. The ledger's own tables
// (keys, sealed broker URLs, code, the events), the auditor's views and PostgreSQL's
// catalogs are never a source: an admin key may map application tables, not read the
// service's secrets through a function. The refusal comes before any publication or slot,
// so it needs no wal_level=logical and writes nothing.
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { createChangeStreamMapping, richestStreamViewType } from '../../db/change-streams.ts';
import { createFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await createFunction(t.db, 'on-rows', { runtime: 'MODULE', handler: 'echo.ts' });
  // an application table with a primary key, in a schema of the owner's
  await adminQuery(t.ownerUrl, `create schema if not exists shop; create table shop.orders (id int primary key, total int)`);
});

const counts = async () => {
  const { rows } = await sql<{ mappings: number; streams: number; pubs: number }>`
    select (select count(*)::int from ledger.stream_mappings) as mappings,
           (select count(*)::int from ledger.streams) as streams,
           (select count(*)::int from pg_publication) as pubs`.execute(t.db);
  return rows[0];
};

describe('the tables a change stream may read', () => {
  for (const table of ['ledger.api_keys', 'ledger.functions', 'ledger.invocations', 'audit.invocations', 'pg_catalog.pg_authid', 'information_schema.tables', 'ledger_archive.events_y2020m01', 'pg_toast.anything']) {
    it(`refuses ${table}, writing nothing`, async () => {
      const before = await counts();
      await expect(createChangeStreamMapping(t.db, { table, functionName: 'on-rows' })).rejects.toMatchObject({
        code: 'InvalidParameter',
        message: expect.stringMatching(/not a source: change streams read application tables/),
      });
      await expect(richestStreamViewType(t.db, table)).rejects.toMatchObject({ code: 'InvalidParameter' });
      expect(await counts()).toEqual(before);
    });
  }

  it('takes an application table as far as the server allows (here: no wal_level=logical)', async () => {
    await expect(createChangeStreamMapping(t.db, { table: 'shop.orders', functionName: 'on-rows' })).rejects.toThrow(/wal_level=logical|no primary key|REPLICA IDENTITY/);
    expect(await richestStreamViewType(t.db, 'shop.orders')).toBe('NEW_IMAGE');
  });
});
