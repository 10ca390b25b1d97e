// Archive, then drop, then restore a month of events (docs/retention.md), on a ledger
// that also holds live work: every event and its leaf hash survives the round trip, the
// ledger records each step, verify stays clean after the drop, and an archive with one
// byte changed fails `archive verify` and cannot be used to drop anything.
import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createPartitionUpkeep } from '../../apps/worker/partition-upkeep.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFunction } from '../../db/functions.ts';
import { acceptInvocations } from '../../db/invocations.ts';
import { rebuildProjections, verifyLedger } from '../../db/replay.ts';
import { ArchiveRefused, dropArchivedPartition, exportPartition } from '../../db/retention/archive.ts';
import { leafOf, sha256Hex, verifyArchiveFile, type ArchivedEvent, type ArchiveManifest } from '../../db/retention/archive-file.ts';
import { partitionProblems, premakeEventPartitions } from '../../db/retention/partitions.ts';
import { cli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { signLatestTreeHead } from '../../db/tamper/sealer.ts';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { sealAll, testKey } from '../tamper/helpers.ts';
import { eventsDigest, monthStart, partitionOf, writePastInvocations } from './history.ts';

let t: TestDatabase;
let owner: pg.Client;
let ownerDb: TestDatabase['db'];
let dir: string;
const OLD = monthStart(-2);
const OLD_PARTITION = partitionOf(OLD);
const RECENT = monthStart(-1);
let oldIds: string[];
let before: { n: number; md5: string };
let exported: Awaited<ReturnType<typeof exportPartition>>;
const key = testKey();
let head: TreeHead;

beforeAll(async () => {
  t = await createTestDatabase();
  owner = new pg.Client({ connectionString: t.ownerUrl });
  await owner.connect();
  ownerDb = t.open({ role: '', max: 2 }).db;
  dir = await mkdtemp(path.join(tmpdir(), 'ledger-archive-'));
  const fn = await createFunction(t.db, 'history', { runtime: 'MODULE', handler: 'echo.ts' });
  // partitions for the past months the history needs (the template made this month's on)
  await owner.query('select ledger.premake_event_partitions(0, $1)', [OLD]);
  oldIds = await writePastInvocations(owner, { fn: fn.name, from: OLD, count: 300 });
  await writePastInvocations(owner, { fn: fn.name, from: RECENT, count: 5 });
  // what the old month's attempts printed: it stays after the drop, until its retention rule says
  await owner.query(`insert into ledger.attempt_logs (invocation_id, attempt, log) select id, 1, 'old' from unnest($1::uuid[]) id`, [oldIds]);
  await rebuildProjections(t.db);
  // live work of this month, unfinished: it stays where it is
  await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: { live: true } }]);
  await sealAll(t.db);
  head = (await signLatestTreeHead(t.db, key.key, { wait: true }))!.head;
  await writeFile(path.join(dir, 'head.json'), JSON.stringify(head));
  await writeFile(path.join(dir, 'key.pub.pem'), key.publicKeyPem);
  before = await eventsDigest(owner, `ledger.${OLD_PARTITION}`);
});

afterAll(async () => {
  await owner?.end();
});

describe('export', () => {
  it('writes every event of the month, in ledger order, each sealed leaf checked against the record', async () => {
    expect(before.n).toBe(900);
    exported = await exportPartition(ownerDb, { partition: OLD_PARTITION, dir, by: 'test-auditor' });
    const m = exported.manifest;
    expect(m).toMatchObject({ partition: OLD_PARTITION, eventCount: 900, invocationCount: 300 });
    expect(m.leaves.sealed).toBe(900);
    expect(m.rangeFrom <= (oldIds[0] as string) && (oldIds.at(-1) as string) < m.rangeTo).toBe(true);
    const lines = gunzipSync(await readFile(exported.dataPath)).toString('utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(900);
    // the leaves in the file are the sealer's leaves
    const { rows: leaves } = await owner.query<{ position: string; hash: string }>(
      `select position::text, encode(leaf_hash, 'hex') as hash from audit.merkle_leaves`);
    const recorded = new Map(leaves.map((l) => [l.position, l.hash]));
    for (const line of lines) {
      const e = JSON.parse(line) as ArchivedEvent;
      expect(leafOf(e).toString('hex')).toBe(recorded.get(e.position));
    }
  });

  it('refuses the current month, whose invocations are still being accepted', async () => {
    await expect(exportPartition(ownerDb, { partition: partitionOf(monthStart(0)), dir, by: 'x' })).rejects.toThrow(ArchiveRefused);
  });

  it('records who exported what, visible to the auditor', async () => {
    await owner.query('set role ledger_auditor');
    const { rows } = await owner.query(`select action, partition_name, event_count::int, manifest_sha256, actor from audit.archives`).finally(() => owner.query('reset role'));
    expect(rows).toEqual([{ action: 'exported', partition_name: OLD_PARTITION, event_count: 900, manifest_sha256: exported.manifestSha256, actor: 'test-auditor' }]);
  });
});

describe('archive verify (offline)', () => {
  it('passes on the archive as written, through the CLI, with no database', async () => {
    const r = await cli(['archive', 'verify', exported.manifestPath], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(r.err).toBe('');
    expect(r.out).toContain(`ok, 900 events, manifest sha256 ${exported.manifestSha256}`);
    expect(r.code).toBe(0);
  });

  it('fails when one byte of the file changed', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'ledger-archive-bad-'));
    const manifestPath = path.join(bad, path.basename(exported.manifestPath));
    await copyFile(exported.manifestPath, manifestPath);
    const bytes = await readFile(exported.dataPath);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] as number) ^ 0x01;
    await writeFile(path.join(bad, path.basename(exported.dataPath)), bytes);
    const r = await cli(['archive', 'verify', manifestPath]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAILED[\s\S]*SHA-256/);
    await expect(dropArchivedPartition(ownerDb, { manifestPath, by: 'x' })).rejects.toThrow(/does not verify/);
  });

  it('fails when an event was edited and the file and its hashes rewritten to match', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'ledger-archive-edit-'));
    const lines = gunzipSync(await readFile(exported.dataPath)).toString('utf8').split('\n');
    lines[10] = (lines[10] as string).replace('"history"', '"hacked"');
    const gz = gzipSync(lines.join('\n'));
    await writeFile(path.join(bad, path.basename(exported.dataPath)), gz);
    const m = JSON.parse(await readFile(exported.manifestPath, 'utf8')) as ArchiveManifest;
    m.file = { ...m.file, bytes: gz.length, sha256: sha256Hex(gz) };
    const manifestPath = path.join(bad, path.basename(exported.manifestPath));
    await writeFile(manifestPath, JSON.stringify(m));
    const r = await verifyArchiveFile(manifestPath);
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(/contentSha256[\s\S]*archiveRoot/);
  });
});

describe('drop', () => {
  it('detaches and drops the month; the projections go, the record stays, verify is clean', async () => {
    const r = await dropArchivedPartition(ownerDb, { manifestPath: exported.manifestPath, by: 'test-auditor' });
    expect(r).toEqual({ partition: OLD_PARTITION, events: 900, invocations: 300 });
    const { rows: gone } = await owner.query(`select to_regclass($1) as t`, [`ledger.${OLD_PARTITION}`]);
    expect(gone[0].t).toBeNull();
    const { rows: left } = await owner.query(`select count(*)::int as n from ledger.invocations where id = any($1::uuid[])`, [oldIds]);
    expect(left[0].n).toBe(0);
    expect(await verifyLedger(t.db)).toEqual([]);
    const v = await cli(['verify'], { DATABASE_URL: t.ownerUrl });
    expect(v.out).toContain(`verify: ledger is consistent\nverify: archived and dropped, not in the database: ${OLD_PARTITION}`);
    expect(v.code).toBe(0);
    // premake never makes a dropped month again
    await premakeEventPartitions(t.db, 3);
    await owner.query('select ledger.premake_event_partitions(0, $1)', [OLD]);
    expect((await owner.query(`select to_regclass($1) as t`, [`ledger.${OLD_PARTITION}`])).rows[0].t).toBeNull();
    const { rows: log } = await owner.query(`select action from audit.archives order by id`);
    expect(log.map((l) => l.action)).toEqual(['exported', 'dropped']);
    const { rows: where } = await owner.query(`select partition_name, action from audit.archive_of($1)`, [oldIds[7]]);
    expect(where).toEqual([
      { partition_name: OLD_PARTITION, action: 'exported' },
      { partition_name: OLD_PARTITION, action: 'dropped' },
    ]);
  });

  it('is refused without an archive this ledger exported', async () => {
    const recent = partitionOf(RECENT);
    const other = await mkdtemp(path.join(tmpdir(), 'ledger-archive-other-'));
    const e = await exportPartition(ownerDb, { partition: recent, dir: other, by: 'x' });
    // the same files, but the manifest edited (a different manifest hash): not what was exported
    const m = JSON.parse(await readFile(e.manifestPath, 'utf8')) as ArchiveManifest;
    await writeFile(e.manifestPath, JSON.stringify({ ...m, exportedBy: 'someone else' }));
    await expect(dropArchivedPartition(ownerDb, { manifestPath: e.manifestPath, by: 'x' })).rejects.toThrow(/no export of/);
    expect((await owner.query(`select to_regclass($1) as t`, [`ledger.${recent}`])).rows[0].t).not.toBeNull();
  });
});

describe('verify --tree-head after the drop', () => {
  it('misses the dropped events without the archive, and reproduces the signed head with it', async () => {
    const args = ['verify', '--tree-head', path.join(dir, 'head.json'), '--public-key', path.join(dir, 'key.pub.pem')];
    const without = await cli(args, { DATABASE_URL: t.ownerUrl });
    expect(without.code).toBe(1);
    expect(without.out).toMatch(/NOT REPRODUCED/);
    const withArchive = await cli([...args, '--archive', exported.manifestPath], { DATABASE_URL: t.ownerUrl });
    expect(withArchive.out).toMatch(/the ledger matches every tree head/);
    expect(withArchive.code).toBe(0);
  });
});

describe('restore', () => {
  it('loads the archive into ledger_archive, every event and its leaf hash as it was', async () => {
    const r = await cli(['archive', 'restore', exported.manifestPath, '--by', 'investigator'], { DATABASE_URL: t.ownerUrl });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const table = `ledger_archive.${OLD_PARTITION}`;
    expect(await eventsDigest(owner, table)).toEqual(before);
    const { rows } = await owner.query<{ position: string; hash: string }>(
      `select r.position::text, encode(l.leaf_hash, 'hex') as hash from ${table} r join audit.merkle_leaves l on l.position = r.position`);
    expect(rows).toHaveLength(900);
    const { rows: events } = await owner.query(
      `select invocation_id::text as "invocationId", seq, type, attempt, data::text as data,
              to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as "occurredAt", position::text
       from ${table}`);
    const recorded = new Map(rows.map((x) => [x.position, x.hash]));
    for (const e of events) expect(leafOf({ ...e, data: JSON.parse(e.data as string) } as ArchivedEvent).toString('hex')).toBe(recorded.get(e.position));
    const { rows: log } = await owner.query(`select action, restored_into, actor from audit.archives where action = 'restored'`);
    expect(log).toEqual([{ action: 'restored', restored_into: table, actor: 'investigator' }]);
    // the ledger itself is unchanged by a restore
    expect(await verifyLedger(t.db)).toEqual([]);
  });

  it('is a detached partition of ledger.events: read-only, and attachable without a scan or a new index', async () => {
    const table = `ledger_archive.${OLD_PARTITION}`;
    const { rows: rel } = await owner.query(`select relispartition, relkind::text from pg_class where oid = $1::regclass`, [table]);
    expect(rel).toEqual([{ relispartition: false, relkind: 'r' }]);
    // read-only for investigation, as every partition, whoever asks (the owner too)
    await expect(owner.query(`update ${table} set seq = seq`)).rejects.toThrow(/append-only/);
    await expect(owner.query(`delete from ${table}`)).rejects.toThrow(/append-only/);
    await expect(owner.query(`truncate ${table}`)).rejects.toThrow(/append-only/);
    // outside the bound: refused by its CHECK constraint
    await expect(owner.query(`insert into ${table} (position, invocation_id, seq, type) values (-1, $1, 1, 'accepted')`, [exported.manifest.rangeTo]))
      .rejects.toThrow(/partition_bound/);

    const indexes = async () =>
      (await owner.query<{ n: number }>(`select count(*)::int as n from pg_index where indrelid = $1::regclass`, [table])).rows[0]!.n;
    const indexesBefore = await indexes();
    const { rows: parentIndexes } = await owner.query<{ n: number }>(`select count(*)::int as n from pg_index where indrelid = 'ledger.events'::regclass`);
    expect(indexesBefore).toBe(parentIndexes[0]!.n);
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
    owner.on('notice', onNotice);
    await owner.query('begin');
    try {
      await owner.query('set local client_min_messages = debug1');
      const { rangeFrom, rangeTo } = exported.manifest;
      await owner.query(`alter table ledger.events attach partition ${table} for values from ('${rangeFrom}') to ('${rangeTo}')`);
      await owner.query('set local client_min_messages = notice');
      // PostgreSQL proved the bound from the CHECK constraint instead of reading the table
      expect(notices).toContain(`partition constraint for table "${OLD_PARTITION}" is implied by existing constraints`);
      // every index of the parent found its match: none built, each attached to the parent's
      expect(await indexes()).toBe(indexesBefore);
      const { rows: adopted } = await owner.query<{ n: number }>(
        `select count(*)::int as n from pg_index x join pg_inherits i on i.inhrelid = x.indexrelid
         where x.indrelid = $1::regclass and i.inhparent in (select indexrelid from pg_index where indrelid = 'ledger.events'::regclass)`, [table]);
      expect(adopted[0]!.n).toBe(indexesBefore);
      // and the ledger, read through the parent, has the month back, event for event
      expect(await eventsDigest(owner, 'ledger.events', `invocation_id >= '${rangeFrom}' and invocation_id < '${rangeTo}'`)).toEqual(before);
    } finally {
      await owner.query('rollback');
      owner.off('notice', onNotice);
    }
    // rolled back: still outside the ledger, as restored
    expect((await owner.query(`select relispartition from pg_class where oid = $1::regclass`, [table])).rows[0].relispartition).toBe(false);
    expect(await eventsDigest(owner, table)).toEqual(before);
    expect(await verifyLedger(t.db)).toEqual([]);
  });
});

describe('verify', () => {
  it('names a month that is gone without an archive as lost', async () => {
    const lost = await createTestDatabase({ verify: false });
    const c = new pg.Client({ connectionString: lost.ownerUrl });
    await c.connect();
    try {
      await c.query('select ledger.premake_event_partitions(0, $1)', [OLD]);
      await c.query(`alter table ledger.events detach partition ledger.${OLD_PARTITION}`);
      await c.query(`drop table ledger.${OLD_PARTITION}`);
      expect(await partitionProblems(lost.db)).toEqual([`partition ${OLD_PARTITION} is gone and ledger.archive_log records no archive of it: its events are lost`]);
    } finally {
      await c.end();
    }
  });

  it('/metrics says how far ahead partitions exist', async () => {
    const registry = new Registry();
    const upkeep = createPartitionUpkeep({ db: t.db, logger: pino({ level: 'silent' }), registry });
    await upkeep.tick();
    expect(await registry.metrics()).toMatch(/^ledger_event_partitions_months_ahead 3$/m);
  });

  it('the events table is still append-only, partition by partition', async () => {
    const part = partitionOf(RECENT);
    await expect(owner.query(`delete from ledger.${part}`)).rejects.toThrow(/append-only/);
    await expect(owner.query(`update ledger.events set seq = seq`)).rejects.toThrow(/append-only/);
    await expect(owner.query(`truncate ledger.${part}`)).rejects.toThrow(/append-only/);
    await expect(sql`delete from ledger.events`.execute(t.db)).rejects.toThrow();
  });
});

describe('side tables of a dropped month', () => {
  it('keeps its attempt logs after the drop, and removes them once their retention rule says they expired', async () => {
    const logsOf = async () =>
      (await owner.query<{ n: number }>('select count(*)::int as n from ledger.attempt_logs where invocation_id = any($1::uuid[])', [oldIds])).rows[0]!.n;
    expect(await logsOf()).toBe(300);
    const set = await cli(['retention', 'set', 'attempt-logs', '7 days'], { DATABASE_URL: t.ownerUrl });
    expect(set.code, set.err).toBe(0);
    const r = await cli(['retention', 'purge', '--kind', 'attempt-logs', '--batch-size', '100'], { DATABASE_URL: t.ownerUrl });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/attempt_logs: removed 300 expired rows/);
    expect(await logsOf()).toBe(0);
    const { rows } = await owner.query('select removed, oldest_at >= $1 as after_month_start from audit.retention_purges order by id', [OLD]);
    expect(rows).toEqual([100, 100, 100].map((removed) => ({ removed, after_month_start: true })));
    expect(await verifyLedger(t.db)).toEqual([]);
  });
});
