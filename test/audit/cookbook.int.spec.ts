// The SQL audit surface (docs/graphql.md, docs/audit.md) as ledger_auditor sees it: the four views answer,
// everything else is refused, and every query of docs/audit.md runs and returns rows on
// a database filled through the real writer.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRoleCommand } from '../../apps/cli/audit-role.ts';
import { loadConfig } from '../../apps/cli/config.ts';
import { auditorConnectionString, createAuditorLogin } from '../../db/audit.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { adminQuery } from '../helpers/pg-admin.ts';
import { readCookbook } from './cookbook.ts';
import { runAuditWorkload, WORKERS, type WorkloadSummary } from './workload.ts';

const VIEWS = ['audit.invocations', 'audit.invocation_events', 'audit.dead_letters', 'audit.function_stats_hourly'];
/** tamper evidence (docs/tamper-evidence.md): readable by the auditor, empty until a sealer runs */
const TAMPER_VIEWS = ['audit.tree_heads', 'audit.merkle_leaves'];
/** retention (docs/retention.md): what the database holds and what was archived */
const RETENTION_VIEWS = ['audit.event_partitions', 'audit.archives', 'audit.retention_rules', 'audit.retention_purges', 'audit.retention_runs'];
/** control-plane changes (docs/changes.md) */
const CHANGES_VIEWS = ['audit.changes'];
/** the ticks of schedules (docs/schedules.md) */
const SCHEDULE_VIEWS = ['audit.schedule_ticks'];
/** replays (docs/replay.md) */
const REPLAY_VIEWS = ['audit.replays', 'audit.replay_pairs'];
/** which invocation processed each stream record (docs/streams.md) */
const STREAM_VIEWS = ['audit.stream_deliveries'];
/** throttles counted by every process (docs/observability.md#throttles) */
const THROTTLE_VIEWS = ['audit.throttles'];

let t: TestDatabase;
let summary: WorkloadSummary;
let auditor: pg.Client;
// login roles are cluster-wide: unique names, dropped at the end
const logins: string[] = [];
const loginName = () => {
  const name = `auditor_${randomBytes(5).toString('hex')}`;
  logins.push(name);
  return name;
};

/** Runs `text` as ledger_auditor; a failure rolls back to a clean session. */
async function asAuditor(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  await auditor.query('begin');
  try {
    return await auditor.query(text, values);
  } finally {
    await auditor.query('rollback');
  }
}

beforeAll(async () => {
  t = await createTestDatabase();
  summary = await runAuditWorkload(t.db);
  // the owner login, acting as the auditor for the whole session
  auditor = new pg.Client({ connectionString: t.ownerUrl });
  auditor.on('error', () => {}); // the database is dropped with (force) at teardown
  await auditor.connect();
  await auditor.query('set role ledger_auditor');
});

afterAll(async () => {
  await auditor?.end();
  for (const name of logins) await adminQuery(t.adminUrl, `drop role if exists "${name}"`);
});

describe('the workload', () => {
  it('covers what the cookbook asks about', () => {
    expect(summary).toMatchObject({ duplicatesRefused: 6, redriven: 5, workerLost: 6, cancelled: 1, queued: 2 });
    expect(summary.deadLetters).toBeGreaterThan(summary.redriven);
  });
});

describe('ledger_auditor reads the audit views', () => {
  it('acts as ledger_auditor', async () => {
    const { rows } = await asAuditor('select current_user');
    expect(rows[0].current_user).toBe('ledger_auditor');
  });

  for (const view of VIEWS) {
    it(`answers from ${view}`, async () => {
      const { rows } = await asAuditor(`select * from ${view} limit 5`);
      expect(rows.length).toBeGreaterThan(0);
    });
  }

  it('sees one row per invocation, with the projection and the last attempt', async () => {
    const { rows } = await asAuditor(`select count(*)::int as n, count(duration_ms)::int as with_duration from audit.invocations`);
    expect(rows[0].n).toBe(summary.invocations);
    // all but the queued and the cancelled ones finished an attempt
    expect(rows[0].with_duration).toBe(summary.invocations - summary.queued - summary.cancelled);
  });

  it('lists every dead-lettering, with the redrive that followed', async () => {
    const { rows } = await asAuditor(`
      select count(*)::int as n, count(*) filter (where redriven)::int as redriven,
             count(*) filter (where not redriven and current_status <> 'dead_lettered')::int as inconsistent,
             count(*) filter (where error_type is null)::int as without_error
      from audit.dead_letters`);
    expect(rows[0]).toEqual({ n: summary.deadLetters, redriven: summary.redriven, inconsistent: 0, without_error: 0 });
  });

  it('counts hourly stats that add up to the events', async () => {
    const { rows } = await asAuditor(`
      select sum(invocations)::int as invocations, sum(dead_lettered)::int as dead_lettered, sum(redriven)::int as redriven,
             bool_and(p50_duration_ms <= p95_duration_ms and p95_duration_ms <= max_duration_ms) as ordered
      from audit.function_stats_hourly`);
    expect(rows[0]).toEqual({ invocations: summary.invocations, dead_lettered: summary.deadLetters, redriven: summary.redriven, ordered: true });
  });

  it('names the worker of every lost attempt', async () => {
    const { rows } = await asAuditor(`
      select s.worker_id, f.data -> 'error' ->> 'errorMessage' as message
      from audit.invocation_events f
      join audit.invocation_events s on s.invocation_id = f.invocation_id and s.type = 'started' and s.attempt = f.attempt
      where f.type = 'failed' and f.error_type = 'WorkerLost'`);
    expect(rows).toHaveLength(summary.workerLost);
    for (const r of rows) {
      expect(WORKERS).toContain(r.worker_id);
      expect(r.message).toContain(`Worker ${r.worker_id} lost attempt`);
    }
  });
});

describe('ledger_auditor may do nothing else', () => {
  const refused: Record<string, string> = {
    'select from ledger.events': 'select * from ledger.events limit 1',
    'select from ledger.invocations': 'select * from ledger.invocations limit 1',
    'insert into an audit view': `insert into audit.invocation_events (invocation_id, seq, type, data)
      values (gen_random_uuid(), 1, 'accepted', '{}')`,
    'update through an audit view': `update audit.invocation_events set data = '{}'`,
    'delete through an audit view': 'delete from audit.invocation_events',
    'insert into ledger.events': `insert into ledger.events (invocation_id, seq, type, data) values (gen_random_uuid(), 1, 'accepted', '{}')`,
    'insert into ledger.invocations': `insert into ledger.invocations (id, function_name, function_version, invocation_type, status, last_seq,
      last_event_type, accepted_at, updated_at) values (gen_random_uuid(), 'x', 1, 'async', 'queued', 1, 'accepted', now(), now())`,
    'create a table in audit': 'create table audit.notes (note text)',
    'create a view in audit': 'create view audit.mine as select 1 as one',
    'create a table in public': 'create table public.notes (note text)',
    'create a schema': 'create schema auditor_scratch',
  };
  for (const [what, statement] of Object.entries(refused)) {
    it(`refuses to ${what}`, async () => {
      const err = await asAuditor(statement).catch((e: Error & { code?: string }) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as { code?: string }).code).toBe('42501'); // insufficient_privilege
    });
  }

  it('holds USAGE on audit, SELECT on its views, and nothing on ledger or public', async () => {
    const { rows } = await asAuditor(`
      select has_schema_privilege('ledger_auditor', 'audit', 'USAGE') as audit_usage,
             has_schema_privilege('ledger_auditor', 'audit', 'CREATE') as audit_create,
             has_schema_privilege('ledger_auditor', 'ledger', 'USAGE') as ledger_usage,
             has_schema_privilege('ledger_auditor', 'public', 'CREATE') as public_create,
             has_database_privilege('ledger_auditor', current_database(), 'CREATE') as database_create,
             (select rolcanlogin from pg_roles where rolname = 'ledger_auditor') as can_login`);
    expect(rows[0]).toEqual({
      audit_usage: true, audit_create: false, ledger_usage: false, public_create: false, database_create: false, can_login: false,
    });
    const { rows: grants } = await asAuditor(`
      select table_schema, table_name, privilege_type from information_schema.role_table_grants
      where grantee = 'ledger_auditor' order by table_name`);
    expect(grants).toEqual([...VIEWS, ...TAMPER_VIEWS, ...RETENTION_VIEWS, ...CHANGES_VIEWS, ...SCHEDULE_VIEWS, ...REPLAY_VIEWS, ...STREAM_VIEWS, ...THROTTLE_VIEWS].sort().map((v) => ({ table_schema: 'audit', table_name: v.split('.')[1], privilege_type: 'SELECT' })));
  });
});

describe('docs/audit.md', () => {
  const queries = readCookbook();

  it('has at least 12 queries, each followed by a sample of its output', () => {
    expect(queries.length).toBeGreaterThanOrEqual(12);
    for (const q of queries) expect(q.sample, q.title).not.toBeNull();
  });

  for (const q of queries) {
    it(`answers as ledger_auditor: ${q.title}`, async () => {
      const { rows } = await asAuditor(q.sql);
      if (q.mayBeEmpty) expect(rows).toEqual([]);
      else expect(rows.length).toBeGreaterThan(0);
    });
  }
});

describe('invoke-ledger audit-role', () => {
  it('creates a login that inherits ledger_auditor and prints a psql command that works', async () => {
    const name = loginName();
    const out: string[] = [];
    const config = loadConfig({ DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'silent' });
    const code = await auditRoleCommand(config, pino({ level: 'silent' }), { login: name, password: 'read-only please' }, (s) => out.push(s));
    expect(code).toBe(0);
    const text = out.join('');
    expect(text).toContain(`created login role ${name}`);
    const url = /psql '([^']+)'/.exec(text)?.[1] as string;
    expect(url).toBe(auditorConnectionString(t.ownerUrl, name, 'read-only please'));

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query('select current_user, (select count(*)::int from audit.invocations) as n');
      expect(rows[0]).toEqual({ current_user: name, n: summary.invocations });
      const { rows: settings } = await client.query(`select current_setting('default_transaction_read_only') as read_only,
        current_setting('statement_timeout') as timeout`);
      expect(settings[0]).toEqual({ read_only: 'on', timeout: '5min' });
      const err = await client.query('select 1 from ledger.events limit 1').catch((e: Error & { code?: string }) => e);
      expect((err as { code?: string }).code).toBe('42501');
      // read-only by default; and in a read-write transaction, still no privilege
      const readOnly = await client.query('create table audit.x (y int)').catch((e: Error & { code?: string }) => e);
      expect((readOnly as { code?: string }).code).toBe('25006');
      await client.query('begin read write');
      const create = await client.query('create table audit.x (y int)').catch((e: Error & { code?: string }) => e);
      await client.query('rollback');
      expect((create as { code?: string }).code).toBe('42501');
    } finally {
      await client.end();
    }
  });

  it('sets a new password for an existing auditor login', async () => {
    const name = loginName();
    const owner = t.open({ role: '', max: 1 });
    expect(await createAuditorLogin(owner.db, name, 'first password')).toEqual({ name, created: true });
    expect(await createAuditorLogin(owner.db, name, 'second password')).toEqual({ name, created: false });
    const client = new pg.Client({ connectionString: auditorConnectionString(t.ownerUrl, name, 'second password') });
    await client.connect();
    await client.end();
  });

  it('refuses names of roles that are not auditor logins, and names that would need quoting', async () => {
    const owner = t.open({ role: '', max: 1 });
    for (const name of ['ledger_app', 'ledger_auditor', 'Robert"); drop table x;--', 'UPPER']) {
      await expect(createAuditorLogin(owner.db, name, 'some password')).rejects.toMatchObject({ code: 'InvalidParameter' });
    }
    const { rows } = await owner.pool.query(`select rolcanlogin from pg_roles where rolname = 'ledger_app'`);
    expect(rows[0].rolcanlogin).toBe(false);
  });
});
