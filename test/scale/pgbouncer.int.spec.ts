// The service through a real PgBouncer in transaction mode (docs/scale.md): an API process
// and a worker process whose DATABASE_URL is the pooler. The API LISTENs over a direct
// DATABASE_LISTEN_URL (the GraphQL subscription); the worker has none and polls. Between
// them: a sync invoke, an async invoke that fails once and is retried, a queue drained by
// an event source mapping, a GraphQL query and a subscription. The login acts as
// ledger_app by its role default in the test's database, as docs/scale.md sets it up.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { createEventSourceMapping } from '../../db/queues/mappings.ts';
import { createQueue } from '../../db/queues/queues.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery, freePort } from '../helpers/pg-admin.ts';
import { pgbouncerWanted, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { openSse } from '../graphql/sse-client.ts';
import { eventTypes, statusOf, waitFor } from '../worker/helpers.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

let t: TestDatabase;
let bouncer: PgBouncer;
let api: ServiceProcess;
let worker: ServiceProcess;
const services = new Set<ServiceProcess>();

const base = () => `http://127.0.0.1:${api.port}`;

describe.skipIf(!pgbouncerWanted)('the service through PgBouncer in transaction mode', () => {
  beforeAll(async () => {
    t = await createTestDatabase();
    const login = decodeURIComponent(new URL(t.adminUrl).username || 'postgres');
    // the role comes from the login, per database: PgBouncer forwards no startup options
    await adminQuery(t.adminUrl, `alter role "${login}" in database "${t.name}" set role = ledger_app`);
    bouncer = await startPgBouncer(t.adminUrl);
    const pooled = { DATABASE_URL: bouncer.url(t.name), DATABASE_POOL_MODE: 'transaction', FUNCTIONS_DIR: FIXTURES, POLL_INTERVAL_MS: '200' };
    api = await spawnService('api', await freePort(), { ...pooled, DATABASE_LISTEN_URL: t.ownerUrl });
    services.add(api);
    worker = await spawnService('worker', await freePort(), { ...pooled, WORKER_LEASE_GRACE_MS: '2000' });
    services.add(worker);
  });

  afterAll(async () => {
    await Promise.all([...services].map((p) => endProcess(p)));
    await bouncer?.stop();
  });

  it('migrates through the pooler as the login, and the worker without a LISTEN URL says it polls', async () => {
    // every migration is applied: a run through the pooler finds nothing to do, and takes no lock that outlives it
    expect(await migrate(bouncer.url(t.name))).toEqual([]);
    const { rows } = await adminQuery(t.adminUrl, `select count(*)::int as n from pg_locks l join pg_database d on d.oid = l.database where l.locktype = 'advisory' and d.datname = $1`, [t.name]);
    expect(rows[0]).toEqual({ n: 0 });
    expect(worker.output()).toContain('without DATABASE_LISTEN_URL: no LISTEN, polling only');
    expect(api.output()).not.toContain('polling only');
  });

  it('refuses a pool whose login does not act as the role it asks for', async () => {
    const wrong = openDatabase(bouncer.url(t.name), { poolMode: 'transaction', role: 'ledger_auditor', max: 1 });
    try {
      await expect(wrong.db.selectFrom('ledger.functions').select('name').execute()).rejects.toThrow(/acts as ledger_app, not ledger_auditor/);
    } finally {
      await wrong.close();
    }
  });

  it('runs a sync invoke', async () => {
    const res = await fetch(`${base()}/invoke/echo`, { method: 'POST', body: JSON.stringify({ hello: 'pooler' }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ hello: 'pooler' });
    const id = res.headers.get('x-invocation-id') as string;
    expect(await eventTypes(t.db, id)).toEqual(['accepted', 'started', 'succeeded']);
  });

  it('retries an async invoke on the polling worker, and the subscription sees every event', async () => {
    const sub = await openSse(base(), 'subscription { invocationEvents(functionName: "flaky") { invocationId seq type } }');
    try {
      const res = await fetch(`${base()}/invoke/flaky?async=true`, { method: 'POST', body: JSON.stringify({ n: 1 }) });
      expect(res.status).toBe(202);
      const { invocationId } = (await res.json()) as { invocationId: string };
      await waitFor('the retry succeeded', async () => (await statusOf(t.db, invocationId)) === 'succeeded', 30_000);
      expect(await eventTypes(t.db, invocationId)).toEqual(['accepted', 'started', 'failed', 'retried', 'started', 'succeeded']);
      await sub.until('six events on the subscription', () => sub.events().length >= 6, 20_000);
      expect(sub.events().map((e) => [e.invocationId, e.seq, e.type])).toEqual(
        ['ACCEPTED', 'STARTED', 'FAILED', 'RETRIED', 'STARTED', 'SUCCEEDED'].map((type, i) => [invocationId, i + 1, type]),
      );

      const q = await fetch(`${base()}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'query($id: ID!) { invocation(id: $id) { status attempts } }', variables: { id: invocationId } }),
      });
      expect(await q.json()).toEqual({ data: { invocation: { status: 'SUCCEEDED', attempts: 2 } } });
    } finally {
      sub.close();
    }
  });

  it('drains a queue through an event source mapping', async () => {
    await createQueue(t.db, { name: 'pooled', visibilityTimeoutSeconds: 30 });
    await createEventSourceMapping(t.db, { queueName: 'pooled', functionName: 'batch', batchSize: 10 });
    for (let n = 0; n < 5; n++) {
      const res = await fetch(`${base()}/queues/pooled/messages`, { method: 'POST', body: JSON.stringify({ n }) });
      expect(res.status).toBe(201);
    }
    await waitFor('the queue drained', async () => {
      const { rows } = await adminQuery(t.ownerUrl, 'select count(*)::int as n from ledger.messages where queue_name = $1', ['pooled']);
      return rows[0]?.n === 0;
    }, 30_000);
    const { rows } = await adminQuery(
      t.ownerUrl,
      `select status, count(*)::int as n from ledger.invocations where function_name = 'batch' group by status`,
    );
    expect(rows).toEqual([{ status: 'succeeded', n: expect.any(Number) }]);
  });
});
