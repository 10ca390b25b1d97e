// DATABASE_READ_URL against a real streaming replica made for this file (test/helpers/
// replica.ts): GraphQL queries and audit reads go to the replica once it has replayed what
// the primary had committed when the request arrived; a replica that lags (here: replay
// paused) is waited for, then passed over for the primary. No read returns state older
// than the caller's own write; mutations never touch the replica.
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeApi } from '../../apps/cli/compose.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { upsertFunction } from '../../db/functions.ts';
import { migrate } from '../../db/migrate.ts';
import { ReplicaReads } from '../../db/replica.ts';
import { verifyLedger } from '../../db/replay.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { postgresBinDir, startReplicaPair, type ReplicaPair } from '../helpers/replica.ts';
import { silent, waitFor } from '../worker/helpers.ts';

const FUNCTIONS_DIR = fileURLToPath(new URL('../../functions/', import.meta.url));

let pair: ReplicaPair;
let primary: DatabaseHandle;
let replica: DatabaseHandle;
let reads: ReplicaReads;
let runtimes: Runtimes;
let app: Hono;

async function accept(payload: unknown): Promise<string> {
  const res = await app.request('/invoke/echo?async=true', { method: 'POST', body: JSON.stringify(payload) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { invocationId: string }).invocationId;
}

async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const res = await app.request('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  const body = (await res.json()) as { data?: T; errors?: unknown[] };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data as T;
}

const statusOf = async (id: string) =>
  (await gql<{ invocation: { status: string } | null }>('query($id: ID!) { invocation(id: $id) { status } }', { id })).invocation?.status ?? null;

const onReplica = async (id: string) => (await adminQuery(pair.replica.url('ledger'), 'select count(*)::int as n from ledger.invocations where id = $1', [id])).rows[0]?.n as number;

describe.skipIf(!postgresBinDir() && !process.env.CI)('reads from a streaming replica', () => {
  beforeAll(async () => {
    pair = await startReplicaPair();
    await adminQuery(pair.primary.url('postgres'), 'create database ledger');
    await migrate(pair.primary.url('ledger'));
    await waitFor('the replica has the schema', async () => {
      try {
        return (await adminQuery(pair.replica.url('ledger'), 'select count(*)::int as n from ledger.schema_migrations')).rows[0]?.n > 0;
      } catch {
        return false;
      }
    }, 60_000);
    primary = openDatabase(pair.primary.url('ledger'), { max: 4 });
    replica = openDatabase(pair.replica.url('ledger'), { max: 4 });
    reads = new ReplicaReads(primary.db, replica.db, { maxWaitMs: 2_000 });
    runtimes = createRuntimes({ functionsDir: FUNCTIONS_DIR, poolSize: 1, logger: silent });
    await upsertFunction(primary.db, 'echo', { runtime: 'MODULE', handler: 'echo.ts', isolation: 'inline' });
    app = composeApi({
      db: primary.db,
      instanceId: 'replica-test',
      runtimes,
      logger: silent,
      functionsDir: FUNCTIONS_DIR,
      reads,
    }).app;
  }, 180_000);

  afterAll(async () => {
    try {
      if (primary) expect(await verifyLedger(primary.db)).toEqual([]);
    } finally {
      await runtimes?.close();
      await replica?.close();
      await primary?.close();
      await pair?.stop();
    }
  });

  it('is a real hot standby streaming from the primary', async () => {
    expect((await adminQuery(pair.replica.url('ledger'), 'select pg_is_in_recovery() as r')).rows[0]).toEqual({ r: true });
    expect((await adminQuery(pair.primary.url('ledger'), `select count(*)::int as n from pg_stat_replication where state = 'streaming'`)).rows[0]).toEqual({ n: 1 });
  });

  it('a query right after an accept finds it, served by the replica', async () => {
    const before = { ...reads.served };
    for (let i = 0; i < 20; i++) {
      const id = await accept({ i });
      expect(await statusOf(id)).toBe('QUEUED');
    }
    const res = await app.request('/audit/seal');
    expect(res.status).toBe(200);
    expect(reads.served.replica + reads.served.primary - before.replica - before.primary).toBe(21);
    expect(reads.served.replica).toBeGreaterThan(before.replica);
  });

  it('a paused replica is waited for, then passed over: the read comes from the primary and is not stale', async () => {
    await adminQuery(pair.replica.url('postgres'), 'select pg_wal_replay_pause()');
    try {
      const before = { ...reads.served };
      const id = await accept({ paused: true });
      expect(await statusOf(id)).toBe('QUEUED');
      expect(reads.served.primary).toBe(before.primary + 1);
      expect(reads.served.replica).toBe(before.replica);
      // the replica really is behind: it has not got the invocation the read found
      expect(await onReplica(id)).toBe(0);
      // writes never go near the replica
      const m = await gql<{ invokeAsync: { status: string } }>('mutation { invokeAsync(functionName: "echo", payload: {m: 1}) { status } }');
      expect(m.invokeAsync.status).toBe('QUEUED');
    } finally {
      await adminQuery(pair.replica.url('postgres'), 'select pg_wal_replay_resume()');
    }
    const id = await accept({ resumed: true });
    await waitFor('the replica serves again', async () => {
      const before = reads.served.replica;
      return (await statusOf(id)) === 'QUEUED' && reads.served.replica > before;
    }, 30_000);
    expect(await onReplica(id)).toBe(1);
  });
});
