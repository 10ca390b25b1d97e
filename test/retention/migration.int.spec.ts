// Migration 0020 on a populated ledger: a database migrated up to the migration before it,
// filled through the real writer (the audit workload), with history of past months and
// ids that are not time-ordered, sealed and signed; then 0020. Every event keeps its
// position, tx_id and content, verify and the tamper-evidence verifier stay clean, and the
// engine goes on writing, also into an invocation accepted in an earlier month.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { createFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { migrate } from '../../db/migrate.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { signLatestTreeHead } from '../../db/tamper/sealer.ts';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { appendEvents, loadStates } from '../../db/writer.ts';
import { verifyLedger as verifyTreeHeads } from '../../tools/verify-ledger.mjs';
import { runAuditWorkload } from '../audit/workload.ts';
import { adminQuery, databaseUrl } from '../helpers/pg-admin.ts';
import { sealAll, testKey } from '../tamper/helpers.ts';
import { eventsDigest, monthStart, partitionOf, writePastInvocations } from './history.ts';

const PARTITIONING = 20;
const adminUrl = inject('adminUrl');
const name = `t_mig_${randomBytes(5).toString('hex')}`;
const url = databaseUrl(adminUrl, name);
let handle: DatabaseHandle;
let owner: pg.Client;
const key = testKey();
let head: TreeHead;
let before: { n: number; md5: string };
let lastMonthIds: string[];
let pendingId: string;
let randomIds: string[];

async function treeHeadsVerify(heads: TreeHead[]) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await verifyTreeHeads({ client, treeHeads: heads.map((h, i) => ({ ...h, source: `witness-${i}` })), publicKey: key.publicKeyPem });
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await adminQuery(adminUrl, `create database "${name}"`);
  await migrate(url, () => {}, { before: PARTITIONING });
  handle = openDatabase(url, { max: 4 });
  owner = new pg.Client({ connectionString: url });
  await owner.connect();
  expect((await owner.query(`select relkind from pg_class where oid = 'ledger.events'::regclass`)).rows[0].relkind).toBe('r');

  await runAuditWorkload(handle.db);
  const fn = await createFunction(handle.db, 'history', { runtime: 'MODULE', handler: 'echo.ts' });
  lastMonthIds = await writePastInvocations(owner, { fn: fn.name, from: monthStart(-1), count: 200 });
  await writePastInvocations(owner, { fn: fn.name, from: monthStart(-3), count: 50 });
  randomIds = await writePastInvocations(owner, { fn: fn.name, from: monthStart(-1), count: 20, randomIds: true });
  pendingId = (await writePastInvocations(owner, { fn: fn.name, from: new Date(monthStart(0).getTime() - 60_000), count: 1, acceptedOnly: true }))[0] as string;
  await rebuildProjections(handle.db);
  expect(await verifyLedger(handle.db)).toEqual([]);
  await sealAll(handle.db);
  head = (await signLatestTreeHead(handle.db, key.key, { wait: true }))!.head;
  before = await eventsDigest(owner, 'ledger.events');
  expect(before.n).toBeGreaterThan(1_300);

  await migrate(url);
}, 120_000);

afterAll(async () => {
  await owner?.end();
  await handle?.close();
  await adminQuery(adminUrl, `drop database if exists "${name}" with (force)`);
});

describe('migration 0020 on a populated ledger', () => {
  it('makes ledger.events partitioned, with every event, position, tx_id and content kept', async () => {
    expect((await owner.query(`select relkind from pg_class where oid = 'ledger.events'::regclass`)).rows[0].relkind).toBe('p');
    expect(await eventsDigest(owner, 'ledger.events')).toEqual(before);
  });

  it('puts each month in its partition and ids that are not time-ordered in events_default', async () => {
    const last = partitionOf(monthStart(-1));
    const { rows } = await owner.query(`select count(*)::int as n from ledger.${last} where invocation_id = any($1::uuid[])`, [lastMonthIds]);
    expect(rows[0].n).toBe(600);
    const { rows: d } = await owner.query(`select count(distinct invocation_id)::int as n from ledger.events_default`);
    expect(d[0].n).toBe(randomIds.length);
    const { rows: parts } = await owner.query(`select partition_name from ledger.event_partitions where month is not null order by month`);
    expect(parts.map((p) => p.partition_name)).toEqual([-3, -2, -1, 0, 1, 2, 3].map((k) => partitionOf(monthStart(k))));
  });

  it('verify is clean, and so is the tamper-evidence verifier against the head signed before', async () => {
    expect(await verifyLedger(handle.db)).toEqual([]);
    const report = await treeHeadsVerify([head]);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('the engine goes on: new positions follow the old ones, an old month takes its late events, the sealer goes on', async () => {
    const { rows: max } = await owner.query(`select max(position)::bigint as p from ledger.events`);
    const fn = await createFunction(handle.db, 'after', { runtime: 'MODULE', handler: 'echo.ts' });
    const [a] = await acceptInvocations(handle.db, [{ fn, invocationType: 'async', payload: {} }]);
    const { rows: now } = await owner.query(`select position::bigint as p, tableoid::regclass::text as part from ledger.events where invocation_id = $1`, [a!.invocationId]);
    expect(BigInt(now[0].p)).toBeGreaterThan(BigInt(max[0].p));
    expect(now[0].part).toBe(`ledger.${partitionOf(monthStart(0))}`);

    // accepted last month, run now: its events stay with it, across the partition boundary
    const prior = (await loadStates(handle.db, [pendingId])).get(pendingId)!;
    const started = await appendEvents(handle.db, { invocationId: pendingId, expectedSeq: 1, prior, leaseMs: 60_000, events: [{ type: 'started', data: { attempt: 1, workerId: 'w' } }] });
    await appendEvents(handle.db, {
      invocationId: pendingId, expectedSeq: 2, prior: started.state,
      events: [{ type: 'succeeded', data: { attempt: 1, result: { late: true }, durationMs: 1 } }],
    });
    const { rows: late } = await owner.query(`select distinct tableoid::regclass::text as part from ledger.events where invocation_id = $1`, [pendingId]);
    expect(late).toEqual([{ part: `ledger.${partitionOf(monthStart(-1))}` }]);

    // a stale writer is still told it lost the race, whatever partition's index says so
    await expect(appendEvents(handle.db, { invocationId: pendingId, expectedSeq: 1, prior, events: [{ type: 'started', data: { attempt: 1, workerId: 'x' } }] }))
      .rejects.toMatchObject({ code: 'SequenceConflict' });

    await sealAll(handle.db);
    const newer = (await signLatestTreeHead(handle.db, key.key, { wait: true }))!.head;
    expect((await treeHeadsVerify([head, newer])).problems).toEqual([]);
    expect(await verifyLedger(handle.db)).toEqual([]);
    const { rows: n } = await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(handle.db);
    expect(n[0]!.n).toBe(before.n + 3);
  });
});
