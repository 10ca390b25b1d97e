// Change streams from a table in another database (docs/streams.md, "Source tables in
// another database"): a PostgreSQL of the test's own with wal_level=logical (the machine's
// is not touched) holds the ledger and a second database, `shop`, owned by a login with a
// password. The mapping is made over GraphQL with the shop's connection string; its
// changes reach the function in commit order with the right images across a restart of
// the reader; the slot and publication live in `shop` and go with the mapping; the
// connection string is nowhere: not in ledger.changes, events, the answer, or a refusal.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createChangeStreamReader, type ChangeStreamReader } from '../../apps/worker/event-sources/change-streams.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import { createChangeStreamMapping, findOrphanedChangeSlots, listChangeSlots } from '../../db/change-streams.ts';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { ensureDatabase, startEmbeddedPostgres, type EmbeddedServer } from '../../db/embedded.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { bearer, createKeys, gql, startSecureApi, type Keys } from '../security/helpers.ts';
import { silent, startStreamPoller, streamRuntimes, waitFor } from './helpers.ts';

const SECRET = 'change-stream-source-test-secret-key-0123456789';
const PASSWORD = 'Sh0pPassw0rdNeverShown';

type Attr = Record<string, string>;
interface Change {
  eventName: 'INSERT' | 'MODIFY' | 'REMOVE';
  dynamodb: { Keys: { id: Attr }; NewImage?: Record<string, Attr>; OldImage?: Record<string, Attr>; SequenceNumber: string };
}

let dir: string;
let server: EmbeddedServer;
let handle: DatabaseHandle;
let runtimes: Runtimes;
let poller: StreamPoller;
let reader: ChangeStreamReader;
let api: Awaited<ReturnType<typeof startSecureApi>>;
let keys: Keys;
let shopUrl: string;
const registry = new Registry();

const startReader = async () => {
  const r = createChangeStreamReader({ db: handle.db, connectionString: server.url, secretKey: SECRET, logger: silent, registry, pollIntervalMs: 50 });
  await r.start();
  return r;
};

async function onShop<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: shopUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-change-sources-db-'));
  await chmod(dir, 0o755); // as root, the server runs as the `postgres` OS user
  server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: await freePort(), persistent: false });
  await migrate(server.url);
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  // the shop's own login: it owns its table and may replicate, nothing in the ledger's database
  await admin.query(`create role shop_owner login replication password '${PASSWORD}'`);
  await admin.end();
  await ensureDatabase(server.adminUrl, 'shop');
  const shopAdmin = new pg.Client({ connectionString: server.adminUrl.replace(/\/postgres$/, '/shop') });
  await shopAdmin.connect();
  await shopAdmin.query('alter database shop owner to shop_owner; alter schema public owner to shop_owner');
  await shopAdmin.end();
  const u = new URL(server.adminUrl);
  shopUrl = `postgres://shop_owner:${PASSWORD}@${u.host}/shop`;
  await onShop(async (c) => {
    await c.query('create table public.orders (id int primary key, v int not null, note text); alter table public.orders replica identity full');
    // in another database the ledger's schema names are the user's own
    await c.query('create schema ledger; create table ledger.entries (id int primary key, v int)');
  });
  handle = openDatabase(server.url);
  runtimes = streamRuntimes();
  await createFunction(handle.db, 'on-orders', { runtime: 'MODULE', handler: 'change-consumer.ts', isolation: 'inline', timeoutMs: 10_000 });
  poller = await startStreamPoller(handle.db, runtimes);
  reader = await startReader();
  api = await startSecureApi(handle.db, { auth: { enabled: true, cacheTtlMs: 0, secretKey: SECRET } });
  keys = await createKeys(handle.db, SECRET);
}, 120_000);

afterAll(async () => {
  await reader?.stop();
  await poller?.stop();
  await api?.close();
  await runtimes?.close();
  await handle?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

async function delivered(mappingId: string): Promise<Change[]> {
  const { rows } = await sql<{ payload: { Records: Change[] } }>`
    select a.data -> 'payload' as payload from ledger.stream_batches b
    join ledger.invocations i on i.id = b.invocation_id and i.status = 'succeeded'
    join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
    where b.mapping_id = ${mappingId}::uuid order by a.position`.execute(handle.db);
  return rows.flatMap((r) => r.payload.Records);
}

/** Every text the ledger keeps that a reader could see: none may hold the password. */
async function ledgerText(): Promise<string> {
  const { rows } = await sql<{ t: string }>`
    select coalesce((select string_agg(c::text, ' ') from ledger.changes c), '') || coalesce((select string_agg(e::text, ' ') from ledger.events e), '')
      || coalesce((select string_agg(s::text, ' ') from ledger.change_sources s), '') || coalesce((select string_agg(m::text, ' ') from ledger.stream_mappings m), '') as t`.execute(handle.db);
  return rows[0]?.t ?? '';
}

const CREATE = (url: string, table = 'public.orders') => `mutation { createChangeStreamEventSourceMapping(input: {
  table: "${table}", functionName: "on-orders", sourceDatabaseUrl: "${url}", shardCount: 1, batchSize: 7 }) { id table sourceDatabase slotName publicationName } }`;

describe('change streams from a table in another database', () => {
  it('refuses a wrong password, a catalog and a missing key without naming the credentials', async () => {
    const wrong = shopUrl.replace(PASSWORD, 'WrongPassw0rdXyz');
    const refused = await gql(api.url, CREATE(wrong), bearer(keys.admin));
    const message = refused.body.errors?.[0]?.message ?? '';
    expect(message).toMatch(/source database 127\.0\.0\.1:\d+\/shop: password authentication failed/);
    expect(JSON.stringify(refused.body)).not.toContain('WrongPassw0rdXyz');
    expect(JSON.stringify(refused.body)).not.toContain('shop_owner:');

    const catalog = await gql(api.url, CREATE(shopUrl, 'pg_catalog.pg_authid'), bearer(keys.admin));
    expect(catalog.body.errors?.[0]?.message).toMatch(/is not a source/);
    expect(JSON.stringify(catalog.body)).not.toContain(PASSWORD);

    await createFunction(handle.db, 'on-entries', { runtime: 'MODULE', handler: 'change-consumer.ts', isolation: 'inline' });
    await expect(createChangeStreamMapping(handle.db, { table: 'ledger.entries', functionName: 'on-entries', sourceDatabaseUrl: shopUrl })).rejects.toThrow(/LEDGER_SECRET_KEY/);
    // ledger.* is the ledger's own only in the ledger's database, however it is reached
    await expect(createChangeStreamMapping(handle.db, { table: 'ledger.entries', functionName: 'on-entries' })).rejects.toThrow(/is not a source/);
    await expect(createChangeStreamMapping(handle.db, { table: 'ledger.api_keys', functionName: 'on-entries', sourceDatabaseUrl: server.url, streamViewType: 'NEW_IMAGE' }, undefined, { secretKey: SECRET })).rejects.toThrow(
      /ledger\.api_keys is not a source/,
    );
    const entries = await createChangeStreamMapping(handle.db, { table: 'ledger.entries', functionName: 'on-entries', sourceDatabaseUrl: shopUrl, streamViewType: 'NEW_IMAGE', enabled: false }, undefined, { secretKey: SECRET });
    expect(entries.source.endpoint).toMatch(/^127\.0\.0\.1:\d+\/shop$/);
    const { deleteChangeStreamMapping } = await import('../../db/change-streams.ts');
    await expect(deleteChangeStreamMapping(handle.db, entries.id)).rejects.toThrow(/LEDGER_SECRET_KEY is not set/);
    await deleteChangeStreamMapping(handle.db, entries.id, undefined, { secretKey: SECRET });
    expect(await onShop(async (c) => (await c.query('select slot_name from pg_replication_slots')).rows)).toEqual([]);
    expect(await ledgerText()).not.toContain(PASSWORD);
  }, 60_000);

  it('delivers the shop\'s changes in commit order with their images, across a restart of the reader, and the slot lives and dies in the shop', async () => {
    const created = await gql(api.url, CREATE(shopUrl), bearer(keys.admin));
    expect(created.body.errors).toBeUndefined();
    expect(JSON.stringify(created.body)).not.toContain(PASSWORD);
    const m = created.body.data?.['createChangeStreamEventSourceMapping'] as { id: string; table: string; sourceDatabase: string; slotName: string };
    expect(m.table).toBe('public.orders');
    expect(m.sourceDatabase).toMatch(/^127\.0\.0\.1:\d+\/shop$/);
    // the slot and publication are in the shop, none in the ledger's database
    expect(await onShop(async (c) => (await c.query('select slot_name from pg_replication_slots where database = current_database()')).rows)).toEqual([{ slot_name: m.slotName }]);
    expect(await onShop(async (c) => (await c.query(`select pubname from pg_publication`)).rows)).toEqual([{ pubname: m.slotName }]);
    expect((await sql<{ n: number }>`select count(*)::int as n from pg_replication_slots where database = current_database()`.execute(handle.db)).rows[0]?.n).toBe(0);

    // what the shop commits, in order: each statement its own transaction
    const expected: { name: Change['eventName']; id: number; oldV: number | null; newV: number | null }[] = [];
    const values = new Map<number, number>();
    const commit = async (n: number) =>
      onShop(async (c) => {
        for (let i = 0; i < n; i++) {
          const id = 1 + (i % 5);
          const before = values.get(id) ?? null;
          if (before === null) {
            await c.query('insert into public.orders (id, v, note) values ($1, $2, $3)', [id, i, `n${i}`]);
            expected.push({ name: 'INSERT', id, oldV: null, newV: i });
            values.set(id, i);
          } else if (i % 3 === 0) {
            await c.query('delete from public.orders where id = $1', [id]);
            expected.push({ name: 'REMOVE', id, oldV: before, newV: null });
            values.delete(id);
          } else {
            await c.query('update public.orders set v = $2 where id = $1', [id, i]);
            expected.push({ name: 'MODIFY', id, oldV: before, newV: i });
            values.set(id, i);
          }
        }
      });
    await commit(30);
    await waitFor('some changes delivered', async () => (await delivered(m.id)).length >= 7, 60_000);
    // the reader goes away mid-stream; the shop goes on committing; another reader takes over
    await reader.stop();
    await commit(30);
    reader = await startReader();
    await commit(15);

    await waitFor('every change delivered', async () => new Set((await delivered(m.id)).map((r) => r.dynamodb.SequenceNumber)).size >= expected.length, 90_000);
    const unique = [...new Map((await delivered(m.id)).map((r) => [r.dynamodb.SequenceNumber, r])).values()];
    expect(unique.map((r) => ({ name: r.eventName, id: Number(r.dynamodb.Keys.id['N']), oldV: r.dynamodb.OldImage ? Number(r.dynamodb.OldImage['v']?.['N']) : null, newV: r.dynamodb.NewImage ? Number(r.dynamodb.NewImage['v']?.['N']) : null }))).toEqual(
      expected.map((e) => ({ name: e.name, id: e.id, oldV: e.oldV, newV: e.newV })),
    );
    const { rows: stored } = await sql<{ n: number }>`select count(*)::int as n from ledger.stream_records r join ledger.change_sources s on s.stream_name = r.stream_name where s.mapping_id = ${m.id}::uuid`.execute(handle.db);
    expect(stored[0]?.n).toBe(expected.length);

    // the slot in the shop is confirmed past what the ledger ingested; its lag is a metric and a field
    await waitFor('the shop\'s slot confirmed', async () => {
      const { rows } = await sql<{ ingested: string }>`select ingested_lsn::text as ingested from ledger.change_sources where mapping_id = ${m.id}::uuid`.execute(handle.db);
      return onShop(async (c) => (await c.query<{ ok: boolean }>('select confirmed_flush_lsn >= $1::pg_lsn as ok from pg_replication_slots where slot_name = $2', [rows[0]?.ingested, m.slotName])).rows[0]?.ok === true);
    }, 30_000);
    const slots = await listChangeSlots(handle.db, { secretKey: SECRET });
    expect(slots).toEqual([expect.objectContaining({ slotName: m.slotName, mappingId: m.id, source: m.sourceDatabase })]);
    expect(await registry.metrics()).toMatch(new RegExp(`ledger_change_stream_slot_lag_bytes\\{mapping_id="${m.id}",slot="${m.slotName}",source="127\\.0\\.0\\.1:\\d+/shop"\\} \\d+`));
    const got = await gql(api.url, `{ changeStreamEventSourceMapping(id: "${m.id}") { sourceDatabase slotLagBytes retainedWalBytes } }`, bearer(keys.all));
    expect(got.body.errors).toBeUndefined();
    expect(got.body.data?.['changeStreamEventSourceMapping']).toMatchObject({ sourceDatabase: m.sourceDatabase, slotLagBytes: expect.any(Number) });
    expect(JSON.stringify(got.body)).not.toContain(PASSWORD);

    // an orphaned slot in the shop is found there
    await onShop((c) => c.query("select pg_create_logical_replication_slot('ledger_cs_00000000000000000000000000000000', 'pgoutput')"));
    try {
      expect((await findOrphanedChangeSlots(handle.db, { secretKey: SECRET })).slots).toEqual([`ledger_cs_00000000000000000000000000000000 on ${m.sourceDatabase}`]);
    } finally {
      await onShop((c) => c.query("select pg_drop_replication_slot('ledger_cs_00000000000000000000000000000000')"));
    }

    const deleted = await gql(api.url, `mutation { deleteChangeStreamEventSourceMapping(id: "${m.id}") }`, bearer(keys.admin));
    expect(deleted.body.data?.['deleteChangeStreamEventSourceMapping']).toBe(true);
    expect(await onShop(async (c) => (await c.query('select slot_name from pg_replication_slots')).rows)).toEqual([]);
    expect(await onShop(async (c) => (await c.query('select pubname from pg_publication')).rows)).toEqual([]);
    // the connection string is in no change, event or source row (it was sealed, and is gone)
    const text = await ledgerText();
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain('shop_owner');
  }, 240_000);
});
