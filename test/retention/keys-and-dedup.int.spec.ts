// Retention of idempotency keys and broker deduplication rows (migrations/0038,
// docs/retention.md#retention-of-the-side-tables): only keys that no accept honours any more
// and that verify no longer expects are removed, and dedup rows only past their period;
// every batch is recorded for auditors, an accept behaves as before, the ledger verifies.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRetentionUpkeep } from '../../apps/worker/retention-upkeep.ts';
import { doneMessageKeys, markMessagesDone } from '../../db/brokers.ts';
import { createFunction } from '../../db/functions.ts';
import { acceptInvocations, IDEMPOTENCY_TTL_SECONDS } from '../../db/invocations.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let t: TestDatabase;
let owner: pg.Client;
let fn: Awaited<ReturnType<typeof createFunction>>;
const HOUR = 3_600_000;
/** invocation id per key, accepted that many hours ago */
const past: Record<string, { id: string; hoursAgo: number }> = {};
let live: string;
let forged: string;
const mapping = randomUUID();
/** the SHA-256 of each key row's text, taken before any purge: a batch of one row has it as its digest */
const rowDigest = new Map<string, string>();

/** An invocation accepted (and finished) `hoursAgo` hours ago with an idempotency key, as the accept path writes it then. */
async function acceptedHoursAgo(key: string, hoursAgo: number): Promise<string> {
  const at = new Date(Date.now() - hoursAgo * HOUR);
  const id = uuidv7({ msecs: at.getTime() });
  await owner.query(
    `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at)
     select $1::uuid, s.seq, s.type, s.attempt, s.data, $2::timestamptz + s.seq * interval '1 millisecond'
     from (values
       (1, 'accepted', null::int, jsonb_build_object('functionName', $3::text, 'functionVersion', 1, 'invocationType', 'async', 'payload', '{}'::jsonb, 'idempotencyKey', $4::text)),
       (2, 'started', 1, '{"attempt": 1, "workerId": "history"}'::jsonb),
       (3, 'succeeded', 1, '{"attempt": 1, "result": {}, "durationMs": 1}'::jsonb)) as s(seq, type, attempt, data)`,
    [id, at, fn.name, key],
  );
  past[key] = { id, hoursAgo };
  return id;
}

const keys = async () =>
  (await owner.query<{ key: string }>('select key from ledger.idempotency_keys order by key')).rows.map((r) => r.key);

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  fn = await createFunction(t.db, 'history', { runtime: 'MODULE', handler: 'echo.ts' });
  await owner.query('select ledger.premake_event_partitions(0, $1)', [new Date(Date.now() - 40 * 24 * HOUR)]);
  await acceptedHoursAgo('k-72h', 72); // its key expired 48 hours ago
  await acceptedHoursAgo('k-60h', 60); // expired 36 hours ago
  await acceptedHoursAgo('k-30h', 30); // expired 6 hours ago
  forged = await acceptedHoursAgo('k-forged', 1); // accepted an hour ago, its row says expired 3 days ago
  await rebuildProjections(t.db);
  // the key rows as the accept path wrote them: expiring 24 hours after the accept
  await owner.query(
    `insert into ledger.idempotency_keys (function_name, key, invocation_id, expires_at)
     select $1, e.data ->> 'idempotencyKey', e.invocation_id,
            case when e.data ->> 'idempotencyKey' = 'k-forged' then now() - interval '3 days'
                 else e.occurred_at + make_interval(secs => $2) end
     from ledger.events e where e.seq = 1 and e.data ->> 'idempotencyKey' is not null
     on conflict (function_name, key) do update set invocation_id = excluded.invocation_id, expires_at = excluded.expires_at`,
    [fn.name, IDEMPOTENCY_TTL_SECONDS],
  );
  // a key accepted now, through the accept path: live for 24 hours
  live = (await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: {}, idempotencyKey: 'k-live' }]))[0]!.invocationId;
  // a row no accepted event explains (verify names it): expired long ago
  await owner.query(
    `insert into ledger.idempotency_keys (function_name, key, invocation_id, expires_at) values ($1, 'k-orphan', $2, now() - interval '10 days')`,
    [fn.name, uuidv7({ msecs: Date.now() - 11 * 24 * HOUR })],
  );
  for (const r of (await owner.query<{ key: string; d: string }>(
    `select key, encode(sha256(convert_to(k::text, 'UTF8')), 'hex') as d from ledger.idempotency_keys k`)).rows) rowDigest.set(r.key, r.d);

  // a broker mapping whose batches processed messages 10 days, 8 days and an hour ago
  await owner.query(
    `insert into ledger.broker_mappings (id, broker, function_name, connection_format, connection_sealed, endpoint, stream,
                                         batch_size, max_batching_window_ms, report_batch_item_failures, enabled)
     values ($1, 'nats', $2, 'plain', '\\x00', 'nats://127.0.0.1:4222', 'orders', 10, 0, false, true)`,
    [mapping, fn.name],
  );
  await markMessagesDone(t.db, mapping, live, ['1', '2', '3']);
  await owner.query(
    `update ledger.broker_messages_done set done_at = now() - case message_key when '1' then interval '10 days' when '2' then interval '8 days' else interval '1 hour' end`,
  );
});

afterAll(async () => {
  await owner?.end();
});

describe('retention of idempotency keys and broker deduplication rows', () => {
  it('keeps every key and dedup row until a rule is set', async () => {
    const upkeep = createRetentionUpkeep({ db: t.db, logger: pino({ level: 'silent' }), intervalMs: HOUR, batchSize: 1 });
    const removed = await upkeep.tick();
    expect([removed.idempotency_keys, removed.broker_messages_done]).toEqual([0, 0]);
    expect(await keys()).toEqual(['k-30h', 'k-60h', 'k-72h', 'k-forged', 'k-live', 'k-orphan']);
  });

  it('removes, as the application role, only keys expired before the cutoff whose accept is over 24 hours before it, and dedup rows older than the period', async () => {
    for (const [kind, keep] of [['idempotency-keys', '1 day'], ['broker-messages-done', '7 days']]) {
      const r = await cli(['retention', 'set', kind!, keep!, '--by', 'ops (ticket 13)'], { DATABASE_URL: t.ownerUrl });
      expect(r.code, r.err).toBe(0);
    }
    const registry = new Registry();
    const upkeep = createRetentionUpkeep({ db: t.db, logger: pino({ level: 'silent' }), registry, intervalMs: HOUR, batchSize: 1 });
    const removed = await upkeep.tick();
    expect([removed.idempotency_keys, removed.broker_messages_done]).toEqual([2, 2]);
    expect(await registry.metrics()).toMatch(/^ledger_retention_rows_removed_total\{kind="idempotency_keys"\} 2$/m);
    expect(await registry.metrics()).toMatch(/^ledger_retention_rows_removed_total\{kind="broker_messages_done"\} 2$/m);
    // k-30h expired 6 hours ago, within the day kept; k-forged's accept is an hour old (verify
    // still expects its row); k-live is live; k-orphan has no accepted event (verify names it)
    expect(await keys()).toEqual(['k-30h', 'k-forged', 'k-live', 'k-orphan']);
    expect([...(await doneMessageKeys(t.db, mapping, ['1', '2', '3']))]).toEqual(['3']);

    // with keep 0, an expired key goes once its accept is 24 hours old, and not before
    expect((await cli(['retention', 'set', 'idempotency-keys', '0'], { DATABASE_URL: t.ownerUrl })).code).toBe(0);
    const r = await cli(['retention', 'purge', '--kind', 'idempotency-keys'], { DATABASE_URL: t.ownerUrl });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/idempotency_keys: removed 1 expired rows/);
    expect(await keys()).toEqual(['k-forged', 'k-live', 'k-orphan']);
  });

  it('an accept behaves as it did with the expired rows: a removed key starts a new invocation, a live one returns its first', async () => {
    const [again, dup] = await acceptInvocations(t.db, [
      { fn, invocationType: 'async', payload: {}, idempotencyKey: 'k-72h' },
      { fn, invocationType: 'async', payload: {}, idempotencyKey: 'k-live' },
    ]);
    expect(again!.duplicate).toBe(false);
    expect(again!.invocationId).not.toBe(past['k-72h']!.id);
    expect(dup).toMatchObject({ duplicate: true, invocationId: live });
  });

  it('records every batch for auditors with its keys and a digest of the rows removed', async () => {
    const auditor = new pg.Client({ connectionString: t.ownerUrl });
    await auditor.connect();
    try {
      await auditor.query('set role ledger_auditor');
      const { rows } = await auditor.query<{ kind: string; keep: string; removed: number; first_key: string; last_key: string; detail: unknown; content_sha256: string }>(
        `select kind, keep::text, removed, first_key, last_key, detail, content_sha256 from audit.retention_purges
         where kind in ('idempotency_keys', 'broker_messages_done') order by id`);
      const keyBatches = rows.filter((b) => b.kind === 'idempotency_keys');
      expect(keyBatches.map((b) => [b.keep, b.first_key, b.detail])).toEqual([
        ['1 day', '["history", "k-72h"]', { functions: { history: 1 } }],
        ['1 day', '["history", "k-60h"]', { functions: { history: 1 } }],
        ['00:00:00', '["history", "k-30h"]', { functions: { history: 1 } }],
      ]);
      // the digest is of the very row removed: the copy taken before reproduces it
      expect(keyBatches.map((b) => b.content_sha256)).toEqual(['k-72h', 'k-60h', 'k-30h'].map((k) => rowDigest.get(k)));
      const dedup = rows.filter((b) => b.kind === 'broker_messages_done');
      expect(dedup.map((b) => [b.keep, b.removed, b.detail])).toEqual([
        ['7 days', 1, { mappings: { [mapping]: 1 } }],
        ['7 days', 1, { mappings: { [mapping]: 1 } }],
      ]);
      expect(dedup.map((b) => b.first_key)).toEqual([`["${mapping}", "1"]`, `["${mapping}", "2"]`]);
    } finally {
      await auditor.end();
    }
  });

  it('leaves a ledger that verifies once the orphan verify names is rebuilt away', async () => {
    const problems = await verifyLedger(t.db);
    expect(problems.map((p) => p.problem).join('\n')).toMatch(/k-orphan|no accepted event|explain/i);
    await rebuildProjections(t.db);
    expect(await verifyLedger(t.db)).toEqual([]);
    expect(await keys()).toEqual(['k-72h', 'k-forged', 'k-live']);
    // the key verify still expects is still there, naming its invocation
    expect((await owner.query<{ id: string }>(`select invocation_id::text as id from ledger.idempotency_keys where key = 'k-forged'`)).rows).toEqual([{ id: forged }]);
  });
});
