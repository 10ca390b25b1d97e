// Change streams from PostgreSQL tables (docs/streams.md): a PostgreSQL of the test's own
// with wal_level=logical (the machine's runs with replica and is not touched) holds the
// ledger and the source table. Changes from concurrent sessions reach the function in
// commit order per key with the right images; a restart of that server mid-stream loses
// and skips nothing; deleting the mapping drops its slot and publication.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChangeStreamReader, type ChangeStreamReader } from '../../apps/worker/event-sources/change-streams.ts';
import type { StreamPoller } from '../../apps/worker/event-sources/streams.ts';
import type { Runtimes } from '../../apps/runtimes/index.ts';
import { createChangeStreamMapping, deleteChangeStreamMapping, findOrphanedChangeSlots, listChangeSlots } from '../../db/change-streams.ts';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../db/embedded.ts';
import { createFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { once } from '../helpers/once.ts';
import { bearer, createKeys, gql, startSecureApi } from '../security/helpers.ts';
import { silent, startStreamPoller, streamRuntimes, waitFor } from './helpers.ts';

type Attr = Record<string, string | boolean>;
interface Change {
  eventName: 'INSERT' | 'MODIFY' | 'REMOVE';
  eventSource: string;
  dynamodb: { Keys: { id: Attr }; NewImage?: Record<string, Attr>; OldImage?: Record<string, Attr>; SequenceNumber: string; StreamViewType: string; ApproximateCreationDateTime: number };
}

let dir: string;
let port: number;
let server: EmbeddedServer;
let handle: DatabaseHandle;
let runtimes: Runtimes;
let poller: StreamPoller;
let reader: ChangeStreamReader;
const registry = new Registry();

const startPg = () => startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port, persistent: true });

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-change-streams-'));
  await chmod(dir, 0o755); // as root, the server runs as the `postgres` OS user
  port = await freePort();
  server = await startPg();
  await migrate(server.url);
  // the test's login role creates the table, as a user's own application would
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query('create table public.items (id int primary key, v int not null, note text); alter table public.items replica identity full');
  await admin.query('create table public.keyed (id int primary key, v int)');
  await admin.query('create table public.poisoned (id int primary key, v int not null); alter table public.poisoned replica identity full');
  await admin.end();
  handle = openDatabase(server.url);
  runtimes = streamRuntimes();
  await createFunction(handle.db, 'on-items', { runtime: 'MODULE', handler: 'change-consumer.ts', isolation: 'inline', timeoutMs: 10_000 });
  poller = await startStreamPoller(handle.db, runtimes);
  reader = createChangeStreamReader({ db: handle.db, connectionString: server.url, logger: silent, registry, pollIntervalMs: 50 });
  await reader.start();
}, 120_000);

afterAll(async () => {
  await reader?.stop();
  await poller?.stop();
  await runtimes?.close();
  await handle?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

/** The records of the mapping's succeeded poll invocations, in the order they were accepted, with each batch's source. */
async function delivered(mappingId: string): Promise<{ records: Change[]; sources: { table: string; firstLsn: string; lastLsn: string }[] }> {
  const { rows } = await sql<{ payload: { Records: Change[] }; stream: { source: { table: string; firstLsn: string; lastLsn: string } } }>`
    select a.data -> 'payload' as payload, a.data -> 'stream' as stream
    from ledger.stream_batches b
    join ledger.invocations i on i.id = b.invocation_id and i.status = 'succeeded'
    join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
    where b.mapping_id = ${mappingId}::uuid order by a.position`.execute(handle.db);
  return { records: rows.flatMap((r) => r.payload.Records), sources: rows.map((r) => r.stream.source) };
}

/** `ops` single-row statements on keys 1..keys from `sessions` concurrent connections; returns how many rows they changed. */
async function churn(sessions: number, ops: number, keys: number, seed: number): Promise<number> {
  let rand = seed;
  const next = () => ((rand = (rand * 1103515245 + 12345) % 2147483648) / 2147483648);
  let changed = 0;
  await Promise.all(
    Array.from({ length: sessions }, async (_, s) => {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      try {
        for (let i = 0; i < ops / sessions; i++) {
          const id = 1 + Math.floor(next() * keys);
          const r = next();
          const res =
            r < 0.5
              ? await c.query('insert into public.items (id, v, note) values ($1, 0, $2) on conflict (id) do update set v = items.v + 1, note = $2', [id, `s${s}`])
              : r < 0.8
                ? await c.query('update public.items set v = v + 1 where id = $1', [id])
                : await c.query('delete from public.items where id = $1', [id]);
          changed += res.rowCount ?? 0;
        }
      } finally {
        await c.end();
      }
    }),
  );
  return changed;
}

/** Per key, each change follows the one before: INSERT after nothing or a REMOVE, MODIFY/REMOVE's old image is the last new image. */
function checkPerKeyOrder(records: Change[]): Map<string, Record<string, Attr> | null> {
  const state = new Map<string, Record<string, Attr> | null>();
  const lastSeq = new Map<string, string>();
  for (const r of records) {
    const key = JSON.stringify(r.dynamodb.Keys);
    const seq = r.dynamodb.SequenceNumber;
    expect(seq > (lastSeq.get(key) ?? ''), `sequence numbers grow per key (${key})`).toBe(true);
    lastSeq.set(key, seq);
    const before = state.get(key) ?? null;
    if (r.eventName === 'INSERT') {
      expect(before, `INSERT of ${key} after nothing or a REMOVE`).toBeNull();
      expect(r.dynamodb.OldImage).toBeUndefined();
      state.set(key, r.dynamodb.NewImage ?? null);
    } else {
      expect(r.dynamodb.OldImage, `${r.eventName} of ${key} (${seq}) follows the last image`).toEqual(before);
      state.set(key, r.eventName === 'MODIFY' ? (r.dynamodb.NewImage ?? null) : null);
    }
  }
  return state;
}

describe('change streams from a PostgreSQL table', () => {
  it('refuses images the table\'s replica identity cannot give', async () => {
    await expect(createChangeStreamMapping(handle.db, { table: 'keyed', functionName: 'on-items', streamViewType: 'NEW_AND_OLD_IMAGES' })).rejects.toThrow(/REPLICA IDENTITY FULL/);
    await expect(createChangeStreamMapping(handle.db, { table: 'nope', functionName: 'on-items' })).rejects.toThrow(/does not exist/);
    expect(await listChangeSlots(handle.db)).toEqual([]);
  });

  it(once('1,000 changes from concurrent sessions arrive in commit order per key, across a restart of the server, and deleting the mapping drops the slot'), async () => {
    const m = await createChangeStreamMapping(handle.db, { table: 'public.items', functionName: 'on-items', streamViewType: 'NEW_AND_OLD_IMAGES', batchSize: 50, shardCount: 4 });
    expect(m.sourceTable).toBe('public.items');
    const slots = await listChangeSlots(handle.db);
    expect(slots.map((s) => s.mappingId)).toEqual([m.id]);

    let changed = await churn(4, 500, 20, 7);
    // the server goes away mid-stream (stopped by its pid), comes back on the same data
    await server.stop();
    server = await startPg();
    changed += await churn(4, 500, 20, 11);

    await waitFor('every change delivered', async () => new Set((await delivered(m.id)).records.map((r) => r.dynamodb.SequenceNumber)).size >= changed, 120_000);
    const { records, sources } = await delivered(m.id);
    // each change once in the stream: a transaction the slot sent again was not appended twice
    const { rows: stored } = await sql<{ n: string }>`select count(*)::text as n from ledger.stream_records where stream_name = ${m.streamName}`.execute(handle.db);
    expect(Number(stored[0]?.n)).toBe(changed);
    const unique = new Map(records.map((r) => [r.dynamodb.SequenceNumber, r]));
    expect(unique.size).toBe(changed);
    // ordered by key: a batch run again after the restart delivers the same records again, in order
    const firstDeliveries = [...unique.values()];
    const final = checkPerKeyOrder(firstDeliveries);
    const reader2 = new pg.Client({ connectionString: server.url });
    await reader2.connect();
    const { rows: table } = await reader2.query<{ id: number; v: number; note: string }>('select id, v, note from public.items');
    await reader2.end();
    for (const row of table) expect(final.get(JSON.stringify({ id: { N: String(row.id) } }))).toEqual({ id: { N: String(row.id) }, v: { N: String(row.v) }, note: { S: row.note } });
    expect([...final.values()].filter((v) => v !== null).length).toBe(table.length);
    expect(records[0]?.eventSource).toBe('aws:dynamodb');
    expect(sources.every((s) => s.table === 'public.items' && s.firstLsn <= s.lastLsn)).toBe(true);

    // the slot is confirmed past everything processed
    await waitFor('the slot confirmed', async () => {
      const { rows } = await sql<{ ok: boolean }>`
        select s.confirmed_flush_lsn >= c.ingested_lsn as ok from pg_replication_slots s join ledger.change_sources c on c.slot_name = s.slot_name`.execute(handle.db);
      return rows[0]?.ok === true;
    }, 30_000);

    await deleteChangeStreamMapping(handle.db, m.id);
    expect(await listChangeSlots(handle.db)).toEqual([]);
    const { rows: pubs } = await sql<{ n: string }>`select count(*)::text as n from pg_publication where pubname like 'ledger_cs_%'`.execute(handle.db);
    expect(pubs[0]?.n).toBe('0');
  }, 300_000);

  it('a poison change is bisected out to the on-failure destination (DDBStreamBatchInfo); every other change is processed, in order', async () => {
    await createFunction(handle.db, 'poison-sink', { runtime: 'MODULE', handler: 'change-consumer.sink', isolation: 'inline', timeoutMs: 10_000 });
    const m = await createChangeStreamMapping(handle.db, {
      table: 'poisoned', functionName: 'on-items', streamViewType: 'NEW_IMAGE', shardCount: 1, batchSize: 20,
      maximumBatchingWindowInSeconds: 1, bisectBatchOnFunctionError: true, maximumRetryAttempts: 1, onFailure: 'function:poison-sink',
    });
    try {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      await c.query('begin');
      for (let i = 1; i <= 16; i++) await c.query('insert into public.poisoned (id, v) values ($1, $2)', [i, i === 11 ? -1 : i]);
      await c.query('commit');
      await c.end();
      const sinkPayload = await waitFor('the poison change at the on-failure destination', async () => {
        const { rows } = await sql<{ payload: { DDBStreamBatchInfo: { batchSize: number; startSequenceNumber: string; streamArn: string } } }>`
          select e.data -> 'payload' as payload from ledger.invocations i join ledger.events e on e.invocation_id = i.id and e.seq = 1
          where i.function_name = 'poison-sink'`.execute(handle.db);
        return rows[0]?.payload;
      }, 60_000);
      expect(sinkPayload.DDBStreamBatchInfo.batchSize).toBe(1);
      expect(sinkPayload.DDBStreamBatchInfo.streamArn).toContain('table/public.poisoned/stream/');
      await waitFor('the other changes processed', async () => new Set((await delivered(m.id)).records.map((r) => r.dynamodb.SequenceNumber)).size === 15, 60_000);
      const ids = [...new Map((await delivered(m.id)).records.map((r) => [r.dynamodb.SequenceNumber, r])).values()].map((r) => Number(r.dynamodb.Keys.id.N));
      expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16]);
      const poisonSeq = sinkPayload.DDBStreamBatchInfo.startSequenceNumber;
      expect(poisonSeq.length).toBe(26);
    } finally {
      await deleteChangeStreamMapping(handle.db, m.id);
    }
  });

  it('GraphQL creates, lists and deletes a change stream mapping (admin), and lists need audit', async () => {
    const keys = await createKeys(handle.db);
    const api = await startSecureApi(handle.db);
    try {
      const refused = await gql(api.url, 'mutation { createChangeStreamEventSourceMapping(input: { table: "keyed", functionName: "on-items" }) { id } }', bearer(keys.audit));
      expect(refused.body.errors?.[0]?.extensions?.code).toBe('Forbidden');
      const bad = await gql(api.url, 'mutation { createChangeStreamEventSourceMapping(input: { table: "keyed", functionName: "on-items", streamViewType: OLD_IMAGE }) { id } }', bearer(keys.admin));
      expect(bad.body.errors?.[0]?.message).toMatch(/REPLICA IDENTITY FULL/);
      const made = await gql(api.url, 'mutation { createChangeStreamEventSourceMapping(input: { table: "keyed", functionName: "on-items", streamViewType: KEYS_ONLY, batchSize: 10 }) { id table streamViewType slotName batchSize } }', bearer(keys.admin));
      const m = made.body.data?.createChangeStreamEventSourceMapping as { id: string; table: string; streamViewType: string; slotName: string; batchSize: number };
      expect(m).toMatchObject({ table: 'public.keyed', streamViewType: 'KEYS_ONLY', batchSize: 10 });
      const listed = await gql(api.url, '{ changeStreamEventSourceMappings(table: "public.keyed") { id slotName slotLagBytes retainedWalBytes checkpoints { shardId } } }', bearer(keys.audit));
      const rows = listed.body.data?.changeStreamEventSourceMappings as { id: string; slotName: string; slotLagBytes: number | null; checkpoints: unknown[] }[];
      expect(rows.map((r) => r.id)).toEqual([m.id]);
      expect(rows[0]?.slotLagBytes).not.toBeNull();
      expect(rows[0]?.checkpoints).toHaveLength(4);
      const refusedDelete = await gql(api.url, `mutation { deleteStreamEventSourceMapping(id: "${m.id}") }`, bearer(keys.admin));
      expect(refusedDelete.body.errors?.[0]?.message).toMatch(/deleteChangeStreamEventSourceMapping/);
      const gone = await gql(api.url, `mutation { deleteChangeStreamEventSourceMapping(id: "${m.id}") }`, bearer(keys.admin));
      expect(gone.body.data?.deleteChangeStreamEventSourceMapping).toBe(true);
      expect((await listChangeSlots(handle.db)).map((s) => s.slotName)).not.toContain(m.slotName);
    } finally {
      await api.close();
    }
  });

  it('reports a slot with our prefix that no mapping owns as orphaned', async () => {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      await admin.query(`select pg_create_logical_replication_slot('ledger_cs_00000000000000000000000000000000', 'pgoutput')`);
      expect((await findOrphanedChangeSlots(handle.db)).slots).toEqual(['ledger_cs_00000000000000000000000000000000']);
      // the slot metrics label it, beside the mappings' slots
      const metrics = await registry.metrics();
      expect(metrics).toMatch(/ledger_change_stream_retained_wal_bytes\{mapping_id="orphaned",slot="ledger_cs_0{32}"\} \d+/);
      expect(metrics).toMatch(/ledger_change_stream_slot_lag_bytes\{mapping_id="orphaned",slot="ledger_cs_0{32}"\} \d+/);
    } finally {
      await admin.query(`select pg_drop_replication_slot('ledger_cs_00000000000000000000000000000000')`);
      await admin.end();
    }
  });
});

describe('tumbling windows of a change stream', () => {
  it('windows the changes by their commit time, passing state within a window and ending each with one final invocation', { timeout: 60_000 }, async () => {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('create table public.windowed (id int primary key, v int not null)');
    await createFunction(handle.db, 'on-windowed', { runtime: 'MODULE', handler: 'change-window.ts', isolation: 'inline', timeoutMs: 10_000 });
    const m = await createChangeStreamMapping(handle.db, { table: 'windowed', functionName: 'on-windowed', streamViewType: 'NEW_IMAGE', shardCount: 1, batchSize: 2, tumblingWindowInSeconds: 1 });
    expect(m.tumblingWindowInSeconds).toBe(1);
    // two transactions a second apart: one window each (commit time)
    const first = await admin.query<{ at: string }>("begin; insert into public.windowed values (1, 10), (2, 20), (3, 30); commit; select floor(extract(epoch from clock_timestamp()))::text as at");
    const firstAt = Number((first as unknown as { rows: { at: string }[] }[])[3]?.rows[0]?.at);
    await waitFor('the next second', async () => Date.now() / 1000 >= firstAt + 1.05);
    await admin.query('insert into public.windowed values (4, 400), (5, 500)');
    await admin.end();

    const rows = await waitFor('the final invocations of both windows', async () => {
      const { rows: r } = await sql<{ final: boolean; status: string; window_start: Date; payload: { Records: Change[]; state: unknown; eventSourceARN: string }; result: { state: unknown } | null }>`
        select b.final_invoke_for_window as final, i.status, b.window_start, a.data -> 'payload' as payload,
          (select s.data -> 'result' from ledger.events s where s.invocation_id = b.invocation_id and s.type = 'succeeded') as result
        from ledger.stream_batches b join ledger.invocations i on i.id = b.invocation_id
        join ledger.events a on a.invocation_id = b.invocation_id and a.seq = 1
        where b.mapping_id = ${m.id}::uuid order by a.position`.execute(handle.db);
      return r.filter((x) => x.final && x.status === 'succeeded').length === 2 ? r : null;
    });
    const finals = rows.filter((x) => x.final);
    expect(finals.map((x) => x.payload.state)).toEqual([
      { sum: 60, count: 3 },
      { sum: 900, count: 2 },
    ]);
    expect(finals.every((x) => x.payload.Records.length === 0 && x.payload.eventSourceARN.startsWith('arn:aws:dynamodb:local:000000000000:table/public.windowed/stream/'))).toBe(true);
    // every change falls in the window of its commit time; the first window took two invocations (batchSize 2)
    for (const x of rows.filter((r) => !r.final)) {
      for (const c of x.payload.Records) expect(Math.floor(c.dynamodb.ApproximateCreationDateTime)).toBe(x.window_start.getTime() / 1000);
    }
    expect(rows.map((x) => [x.final, x.payload.Records.length])).toEqual([
      [false, 2],
      [false, 1],
      [true, 0],
      [false, 2],
      [true, 0],
    ]);
    expect(rows[1]?.payload.state).toEqual(rows[0]?.result?.state);
    await deleteChangeStreamMapping(handle.db, m.id);
  });
});
