// Retention of the side tables (docs/retention.md#retention-of-the-side-tables): with a
// rule set per kind, the worker's upkeep removes expired attempt logs, settled destination
// deliveries and dead letters in bounded batches, leaves live work alone (logs of an
// invocation still retrying, pending deliveries, messages not dead-lettered) and recent
// rows, records every batch so an auditor sees what went, and the ledger still verifies.
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRetentionUpkeep } from '../../apps/worker/retention-upkeep.ts';
import { createFunction } from '../../db/functions.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { listRetentionRules } from '../../db/retention/side-tables.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { monthStart, writePastInvocations } from './history.ts';

let t: TestDatabase;
let owner: pg.Client;
const OLD = monthStart(-2);
let oldDone: string[];
let retrying: string;
let running: string;
let recentDone: string[];
const expected = { logs: [] as string[], deliveries: [] as string[], messages: [] as string[] };
let firstLogBatchDigest: string;

const remaining = async (table: string, key: string) =>
  (await owner.query<{ k: string }>(`select ${key} as k from ${table} order by 1`)).rows.map((r) => r.k);

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  const fn = await createFunction(t.db, 'history', { runtime: 'MODULE', handler: 'echo.ts' });
  await owner.query('select ledger.premake_event_partitions(0, $1)', [OLD]);
  oldDone = await writePastInvocations(owner, { fn: fn.name, from: OLD, count: 5 });
  recentDone = await writePastInvocations(owner, { fn: fn.name, from: new Date(Date.now() - 3_600_000), count: 2 });
  // accepted two months ago and still retrying (and one of them running its second attempt):
  // their first attempts' logs are live work
  retrying = uuidv7({ msecs: OLD.getTime() + 60_000 });
  running = uuidv7({ msecs: OLD.getTime() + 120_000 });
  for (const [id, events] of [[retrying, 4], [running, 5]] as const) await owner.query(
    `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
     select $1::uuid, s.seq, s.type, s.attempt, s.data, $2::timestamptz + s.seq * interval '1 millisecond'
     from (values
       (1, 'accepted', null::int, jsonb_build_object('functionName', $3::text, 'functionVersion', 1, 'invocationType', 'async', 'payload', '{}'::jsonb, 'idempotencyKey', null)),
       (2, 'started', 1, '{"attempt": 1, "workerId": "history"}'::jsonb),
       (3, 'failed', 1, '{"attempt": 1, "error": {"errorType": "Error", "errorMessage": "boom", "trace": []}, "willRetry": true, "durationMs": 2}'::jsonb),
       (4, 'retried', 2, jsonb_build_object('attempt', 2, 'runAt', now() + interval '1 hour', 'delayMs', 1000)),
       (5, 'started', 2, '{"attempt": 2, "workerId": "history"}'::jsonb)) as s(seq, type, attempt, data)
     where s.seq <= $4`,
    [id, new Date(OLD.getTime() + 60_000), fn.name, events],
  );
  await rebuildProjections(t.db);
  const { rows: live } = await owner.query<{ status: string }>(
    'select status from ledger.invocations where id = any($1::uuid[]) order by status', [[retrying, running]]);
  expect(live.map((r) => r.status)).toEqual(['retry_scheduled', 'running']);

  // attempt logs: every finished attempt printed something
  await owner.query(
    `insert into ledger.attempt_logs (invocation_id, attempt, log) select id, 1, 'printed by ' || id from unnest($1::uuid[]) id`,
    [[...oldDone, retrying, running, ...recentDone]],
  );
  expected.logs = oldDone.map((id) => `${id}/1`).sort();
  const firstTwo = [...oldDone].sort().slice(0, 2);
  firstLogBatchDigest = (
    await owner.query<{ d: string }>(
      `select encode(sha256(convert_to(string_agg(l::text, E'\\n' order by invocation_id, attempt), 'UTF8')), 'hex') as d
       from ledger.attempt_logs l where invocation_id = any($1::uuid[])`,
      [firstTwo],
    )
  ).rows[0]!.d;

  // destination deliveries: settled long ago (go), pending long ago (stays), settled recently (stays)
  const { rows: deliveries } = await owner.query<{ id: string; status: string; old: boolean }>(
    `insert into ledger.destination_deliveries (invocation_id, invoke_count, condition, destination, record, status, created_at, delivered_at)
     select inv, 1, 'Success', 'https://example.test/' || n, '{}'::jsonb, st, at, case when st = 'delivered' then at end
     from (values ($1::uuid, 1, 'delivered', now() - interval '40 days'), ($2::uuid, 2, 'failed', now() - interval '40 days'),
                  ($3::uuid, 3, 'pending', now() - interval '40 days'), ($4::uuid, 4, 'delivered', now() - interval '1 hour')) v(inv, n, st, at)
     returning id::text, status, created_at < now() - interval '7 days' as old`,
    [oldDone[0], oldDone[1], oldDone[2], recentDone[0]],
  );
  expected.deliveries = deliveries.filter((d) => d.old && d.status !== 'pending').map((d) => d.id);

  // messages: dead-lettered long ago (go), waiting or in flight long ago (stay), dead-lettered recently (stays)
  await owner.query(`insert into ledger.message_queues (name, visibility_timeout_seconds, max_receive_count) values ('orders', 30, 3)`);
  const { rows: messages } = await owner.query<{ id: string; gone: boolean }>(
    `insert into ledger.messages (id, queue_name, body, body_bytes, sent_at, visible_at, receive_count, receipt, dead_lettered_at, dead_letter_reason)
     select gen_random_uuid(), 'orders', jsonb_build_object('n', n), 8, now() - interval '41 days', v, rc, rcpt, dl,
            case when dl is not null then 'MaxReceiveCountExceeded' end
     from (values (1, now() - interval '40 days', 3, null::uuid, now() - interval '40 days'),
                  (2, now() - interval '39 days', 3, null, now() - interval '39 days'),
                  (3, now() - interval '38 days', 3, null, now() - interval '38 days'),
                  (4, now() - interval '40 days', 0, null, null),
                  (5, now() + interval '30 seconds', 1, gen_random_uuid(), null),
                  (6, now() - interval '1 hour', 3, null, now() - interval '1 hour')) m(n, v, rc, rcpt, dl)
     returning id::text, dead_lettered_at < now() - interval '7 days' as gone`,
  );
  expected.messages = messages.filter((m) => m.gone).map((m) => m.id).sort();
});

afterAll(async () => {
  await owner?.end();
});

describe('retention of attempt logs, destination deliveries and dead letters', () => {
  it('keeps everything until a rule is set, and an attempt log cannot be deleted by hand', async () => {
    const upkeep = createRetentionUpkeep({ db: t.db, logger: pino({ level: 'silent' }), intervalMs: 3_600_000, batchSize: 2 });
    expect(await upkeep.tick()).toEqual({ attempt_logs: 0, destination_deliveries: 0, queue_messages: 0, idempotency_keys: 0, broker_messages_done: 0 });
    await expect(owner.query('delete from ledger.attempt_logs where invocation_id = $1', [oldDone[0]])).rejects.toThrow(/append-only/);
    await expect(owner.query('delete from ledger.retention_rules')).rejects.toThrow();
  });

  it('sets a rule per kind from the CLI, and refuses a period that is not one', async () => {
    for (const kind of ['attempt-logs', 'destination-deliveries', 'queue-messages']) {
      const r = await cli(['retention', 'set', kind, '7 days', '--by', 'ops (ticket 12)'], { DATABASE_URL: t.ownerUrl });
      expect(r.code, r.err).toBe(0);
    }
    const bad = await cli(['retention', 'set', 'attempt-logs', 'a fortnight'], { DATABASE_URL: t.ownerUrl });
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/not a retention period/);
    const rules = await listRetentionRules(t.db);
    expect(rules.map((r) => [r.kind, r.keep, r.actor])).toEqual([
      ['attempt_logs', '7 days', 'ops (ticket 12)'],
      ['destination_deliveries', '7 days', 'ops (ticket 12)'],
      ['queue_messages', '7 days', 'ops (ticket 12)'],
      ['idempotency_keys', null, null], // kinds never set: kept for ever (test/retention/keys-and-dedup.int.spec.ts)
      ['broker_messages_done', null, null],
    ]);
  });

  it('removes expired rows in batches as the application role, and nothing live or recent', async () => {
    const registry = new Registry();
    const upkeep = createRetentionUpkeep({ db: t.db, logger: pino({ level: 'silent' }), registry, intervalMs: 3_600_000, batchSize: 2 });
    expect(await upkeep.tick()).toEqual({ attempt_logs: 5, destination_deliveries: 2, queue_messages: 3, idempotency_keys: 0, broker_messages_done: 0 });
    expect(await registry.metrics()).toMatch(/^ledger_retention_rows_removed_total\{kind="attempt_logs"\} 5$/m);

    expect(await remaining('ledger.attempt_logs', `invocation_id::text || '/' || attempt`)).toEqual(
      [retrying, running, ...recentDone].map((id) => `${id}/1`).sort(),
    );
    const { rows: deliveries } = await owner.query<{ id: string }>('select id::text from ledger.destination_deliveries');
    expect(deliveries).toHaveLength(2);
    expect(deliveries.some((d) => expected.deliveries.includes(d.id))).toBe(false);
    const left = await owner.query<{ n: number; dead: number }>(
      `select count(*)::int as n, count(dead_lettered_at)::int as dead from ledger.messages`);
    expect(left.rows[0]).toEqual({ n: 3, dead: 1 });
    const ids = await remaining('ledger.messages', 'id::text');
    expect(ids.some((id) => expected.messages.includes(id))).toBe(false);

    // a second round finds nothing and records nothing
    const before = (await owner.query<{ n: number }>('select count(*)::int as n from ledger.retention_purges')).rows[0]!.n;
    expect(await upkeep.tick()).toEqual({ attempt_logs: 0, destination_deliveries: 0, queue_messages: 0, idempotency_keys: 0, broker_messages_done: 0 });
    expect((await owner.query<{ n: number }>('select count(*)::int as n from ledger.retention_purges')).rows[0]!.n).toBe(before);
  });

  it('records every batch for auditors: which rule, how many, which keys, a digest of what was removed', async () => {
    const auditor = new pg.Client({ connectionString: t.ownerUrl });
    await auditor.connect();
    try {
      await auditor.query('set role ledger_auditor');
      const { rows: batches } = await auditor.query<{ kind: string; removed: number; first_key: string; last_key: string; content_sha256: string; detail: Record<string, unknown>; keep: string; rule_current: boolean }>(
        `select p.kind, p.removed, p.first_key, p.last_key, p.content_sha256, p.detail, p.keep::text as keep, r.current as rule_current
         from audit.retention_purges p join audit.retention_rules r on r.id = p.rule_id order by p.id`);
      expect(batches.every((b) => b.removed <= 2 && b.keep === '7 days' && b.rule_current)).toBe(true);
      const logBatches = batches.filter((b) => b.kind === 'attempt_logs');
      expect(logBatches.map((b) => b.removed)).toEqual([2, 2, 1]);
      expect(logBatches.map((b) => [b.first_key, b.last_key]).flat()).toEqual(
        [expected.logs[0], expected.logs[1], expected.logs[2], expected.logs[3], expected.logs[4], expected.logs[4]],
      );
      // the digest is of the very rows removed: a copy taken before the purge reproduces it
      expect(logBatches[0]!.content_sha256).toBe(firstLogBatchDigest);
      expect(batches.filter((b) => b.kind === 'destination_deliveries').map((b) => b.detail)).toEqual([{ delivered: 1, failed: 1 }]);
      expect(batches.filter((b) => b.kind === 'queue_messages').map((b) => b.detail)).toEqual([{ queues: { orders: 2 } }, { queues: { orders: 1 } }]);

      const { rows: runs } = await auditor.query<{ kind: string; removed: string; batches: string }>(
        'select kind, removed::text, batches::text from audit.retention_runs order by kind');
      expect(runs).toEqual([
        { kind: 'attempt_logs', removed: '5', batches: '3' },
        { kind: 'destination_deliveries', removed: '2', batches: '1' },
        { kind: 'queue_messages', removed: '3', batches: '2' },
      ]);
    } finally {
      await auditor.end();
    }
  });

  it('leaves a ledger that verifies, and `retention show` lists rules and purges', async () => {
    expect(await verifyLedger(t.db)).toEqual([]);
    const v = await cli(['verify'], { DATABASE_URL: t.ownerUrl });
    expect(v.code, v.out + v.err).toBe(0);
    const show = await cli(['retention', 'show'], { DATABASE_URL: t.ownerUrl });
    expect(show.code, show.err).toBe(0);
    expect(show.out).toMatch(/attempt_logs\s+7 days\s+ops \(ticket 12\)/);
    expect(show.out).toMatch(/attempt_logs\s+5 rows in 3 batch/);
  });

  it('"forever" stops removal again', async () => {
    expect((await cli(['retention', 'set', 'queue-messages', 'forever'], { DATABASE_URL: t.ownerUrl })).code).toBe(0);
    await owner.query(
      `insert into ledger.messages (id, queue_name, body, body_bytes, sent_at, visible_at, receive_count, dead_lettered_at, dead_letter_reason)
       values (gen_random_uuid(), 'orders', '{}', 2, now() - interval '50 days', now() - interval '50 days', 3, now() - interval '50 days', 'MaxReceiveCountExceeded')`);
    const r = await cli(['retention', 'purge', '--kind', 'queue-messages'], { DATABASE_URL: t.ownerUrl });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/queue_messages: removed 0 expired rows/);
    expect((await owner.query<{ n: number }>('select count(*)::int as n from ledger.messages where dead_lettered_at is not null')).rows[0]!.n).toBe(2);
  });
});
