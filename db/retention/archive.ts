// Archive, then drop (docs/retention.md): a month of events leaves the database only
// after a verified archive of it exists, and the ledger records what happened to it
// (ledger.archive_log, audit.archives).
//
// - export writes the partition's events, in ledger order (tx_id, position), to a gzip
//   JSON-lines file and a manifest, from one REPEATABLE READ snapshot, and checks every
//   sealed event's leaf hash against the sealer's record on the way;
// - drop checks the file offline, then, holding the partition locked, renders the
//   partition's events again and requires the very same content hash; only then removes
//   the projections of those invocations, detaches and drops the partition, and records it;
// - restore loads an archive into a detached partition of ledger.events (schema
//   ledger_archive), outside the ledger, and reads it back to the same content hash.
//
// These run as the owner role (DDL on ledger.events): the application role cannot drop history.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { sql, type RawBuilder } from 'kysely';
import { LEAF_VERSION, OCCURRED_AT_SQL } from '../tamper/leaf.ts';
import type { Db, Executor } from '../schema.ts';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_VERSION,
  archiveFileName,
  archiveLines,
  DigestBuilder,
  leafOf,
  manifestFileName,
  sha256Hex,
  verifyArchiveFile,
  type ArchivedEvent,
  type ArchiveDigest,
  type ArchiveManifest,
} from './archive-file.ts';

const PAGE = 10_000;
const RESTORE_BATCH = 5_000;
export const RESTORE_SCHEMA = 'ledger_archive';

export class ArchiveRefused extends Error {
  readonly code = 'ArchiveRefused';
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveRefused';
  }
}

interface PartitionRow {
  name: string;
  range_from: string;
  range_to: string;
  month: Date;
}

async function partitionNamed(db: Executor, name: string): Promise<PartitionRow> {
  const { rows } = await sql<PartitionRow>`
    select partition_name as name, range_from::text, range_to::text, month from ledger.event_partitions
    where partition_name = ${name}`.execute(db);
  const p = rows[0];
  if (!p) throw new ArchiveRefused(`ledger.events has no partition ${name}`);
  if (p.month === null) throw new ArchiveRefused(`${name} is not a month partition: events_default is never archived`);
  return p;
}

/** Month partitions whose whole month lies before `before` (and before the current month). */
export async function partitionsBefore(db: Executor, before: Date): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select partition_name as name from ledger.event_partitions
    where month is not null
      and month + interval '1 month' <= least(${before}::timestamptz, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC')
    order by month`.execute(db);
  return rows.map((r) => r.name);
}

// ---------------------------------------------------------------------------------
// the lines: the one rendering of an event that export, drop and restore all compare

const qualified = (table: string): RawBuilder<unknown> => sql.table(table) as unknown as RawBuilder<unknown>;

/** A page of a table's events in ledger order after (tx, position), each as its archive line. */
async function renderPage(db: Executor, table: string, after: { tx: string; pos: string }, range?: { from: string; to: string }) {
  const { rows } = await sql<{ line: string; tx: string; pos: string }>`
    select json_build_object('position', position::text, 'txId', tx_id::text, 'invocationId', invocation_id, 'seq', seq,
             'type', type, 'attempt', attempt, 'occurredAt', ${sql.raw(OCCURRED_AT_SQL)}, 'data', data)::text as line,
           tx_id::text as tx, position::text as pos
    from ${qualified(table)}
    where (tx_id, position) > (${after.tx}::xid8, ${after.pos}::bigint)
      ${range ? sql`and invocation_id >= ${range.from}::uuid and invocation_id < ${range.to}::uuid` : sql``}
    order by tx_id, position
    limit ${PAGE}`.execute(db);
  return rows;
}

async function* renderLines(db: Executor, table: string, range?: { from: string; to: string }): AsyncGenerator<{ text: string; event: ArchivedEvent }> {
  let after = { tx: '0', pos: '0' };
  for (;;) {
    const rows = await renderPage(db, table, after, range);
    for (const r of rows) yield { text: r.line, event: JSON.parse(r.line) as ArchivedEvent };
    if (rows.length < PAGE) return;
    const last = rows[rows.length - 1] as { tx: string; pos: string };
    after = { tx: last.tx, pos: last.pos };
  }
}

async function digestOf(db: Executor, table: string, range?: { from: string; to: string }): Promise<ArchiveDigest> {
  const b = new DigestBuilder(range);
  for await (const { text, event } of renderLines(db, table, range)) b.add(text, event);
  return b.digest();
}

// ---------------------------------------------------------------------------------
// export

interface SealCursor {
  tree_size: string;
  root: string;
  last_tx_id: string;
  last_position: string;
}

/** The sealer's leaf hashes for these (sealed) events, by position. */
async function recordedLeaves(db: Executor, events: readonly ArchivedEvent[]): Promise<Map<string, string>> {
  if (events.length === 0) return new Map();
  const first = events[0] as ArchivedEvent;
  const last = events[events.length - 1] as ArchivedEvent;
  const positions = events.map((e) => e.position);
  const { rows } = await sql<{ position: string; hash: string }>`
    select o.position::text, encode(substring(b.leaf_hashes from (o.i::int - 1) * 32 + 1 for 32), 'hex') as hash
    from ledger.merkle_leaf_blocks b, unnest(b.positions) with ordinality as o(position, i)
    where (b.last_tx_id, b.last_position) >= (${first.txId}::xid8, ${first.position}::bigint)
      and b.block_index <= coalesce((select block_index from ledger.merkle_leaf_blocks
                                     where (last_tx_id, last_position) >= (${last.txId}::xid8, ${last.position}::bigint)
                                     order by last_tx_id, last_position limit 1), 9223372036854775807)
      and o.position = any(${positions}::bigint[])
    union all
    select o.position::text, encode(substring(s.tail_hashes from (o.i::int - 1) * 32 + 1 for 32), 'hex')
    from ledger.seal_state s, unnest(s.tail_positions) with ordinality as o(position, i)
    where o.position = any(${positions}::bigint[])`.execute(db);
  return new Map(rows.map((r) => [r.position, r.hash]));
}

export interface ExportResult {
  partition: string;
  manifestPath: string;
  dataPath: string;
  manifestSha256: string;
  manifest: ArchiveManifest;
}

/** Writes an archive of one month partition into `dir` and records it (action 'exported'). */
export async function exportPartition(db: Db, o: { partition: string; dir: string; by: string }): Promise<ExportResult> {
  await mkdir(o.dir, { recursive: true });
  const dataPath = path.join(o.dir, archiveFileName(o.partition));
  const manifestPath = path.join(o.dir, manifestFileName(o.partition));
  const tmp = `${dataPath}.partial`;

  const written = await db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(async (tx) => {
    const p = await partitionNamed(tx, o.partition);
    if (p.month.getTime() >= Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)) {
      throw new ArchiveRefused(`${o.partition} is the current or a future month: only past months are archived`);
    }
    const range = { from: p.range_from, to: p.range_to };
    const { rows: unfinished } = await sql<{ n: string }>`
      select count(*)::text as n from ledger.queue where invocation_id >= ${range.from}::uuid and invocation_id < ${range.to}::uuid`.execute(tx);
    if (Number(unfinished[0]?.n) > 0) {
      throw new ArchiveRefused(`${o.partition} holds ${unfinished[0]?.n} unfinished invocation(s): archive a month once all its invocations are finished`);
    }
    const { rows: seal } = await sql<SealCursor>`
      select tree_size::text, encode(root_hash, 'hex') as root, last_tx_id::text, last_position::text from ledger.seal_state`.execute(tx);
    const cursor = seal[0] as SealCursor;
    const sealedUpTo = { tx: BigInt(cursor.last_tx_id), pos: BigInt(cursor.last_position) };
    const isSealed = (e: ArchivedEvent) => {
      const t = BigInt(e.txId);
      return t < sealedUpTo.tx || (t === sealedUpTo.tx && BigInt(e.position) <= sealedUpTo.pos);
    };

    const builder = new DigestBuilder(range);
    const fileHash = createHash('sha256');
    let sealed = 0;
    const mismatches: string[] = [];
    async function* lines(): AsyncGenerator<string> {
      let after = { tx: '0', pos: '0' };
      for (;;) {
        const rows = await renderPage(tx, 'ledger.events', after, range);
        const events = rows.map((r) => JSON.parse(r.line) as ArchivedEvent);
        const sealedEvents = events.filter(isSealed);
        const record = await recordedLeaves(tx, sealedEvents);
        for (const e of sealedEvents) {
          sealed++;
          const want = record.get(e.position);
          const got = leafOf(e).toString('hex');
          if (want !== got && mismatches.length < 10) {
            mismatches.push(`event at position ${e.position} (invocation ${e.invocationId}, seq ${e.seq}): leaf ${got}, the sealer recorded ${want ?? 'nothing'}`);
          }
        }
        let chunk = '';
        rows.forEach((r, i) => {
          builder.add(r.line, events[i] as ArchivedEvent);
          chunk += `${r.line}\n`;
        });
        if (chunk) yield chunk;
        if (rows.length < PAGE) return;
        const last = rows[rows.length - 1] as { tx: string; pos: string };
        after = { tx: last.tx, pos: last.pos };
      }
    }
    const gzip = createGzip({ level: 6 });
    gzip.on('data', (c: Buffer) => fileHash.update(c));
    await pipeline(Readable.from(lines()), gzip, createWriteStream(tmp));
    if (mismatches.length > 0) {
      throw new ArchiveRefused(`${o.partition}: events differ from what the sealer recorded (docs/tamper-evidence.md); not archived:\n  ${mismatches.join('\n  ')}`);
    }
    const { rows: heads } = await sql<{ head: unknown }>`
      select json_build_object('treeSize', tree_size, 'timestamp', timestamp_ms, 'rootHash', encode(root_hash, 'hex'),
                               'keyId', key_id, 'signature', encode(signature, 'base64')) as head
      from ledger.tree_heads where tree_size <= ${cursor.tree_size}::bigint order by tree_size desc, id desc limit 1`.execute(tx);
    return { p, digest: builder.digest(), fileSha256: fileHash.digest('hex'), sealed, cursor, treeHead: heads[0]?.head ?? null };
  });

  await rename(tmp, dataPath);
  const { p, digest, fileSha256, sealed, cursor, treeHead } = written;
  const manifest: ArchiveManifest = {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_VERSION,
    partition: o.partition,
    rangeFrom: p.range_from,
    rangeTo: p.range_to,
    eventCount: digest.eventCount,
    invocationCount: digest.invocationCount,
    firstPosition: digest.firstPosition,
    lastPosition: digest.lastPosition,
    firstOccurredAt: digest.firstOccurredAt,
    lastOccurredAt: digest.lastOccurredAt,
    file: { name: path.basename(dataPath), bytes: (await stat(dataPath)).size, sha256: fileSha256, contentSha256: digest.contentSha256 },
    leaves: { leafVersion: LEAF_VERSION, archiveRoot: digest.archiveRoot, sealed, treeSize: Number(cursor.tree_size), treeRoot: cursor.root, treeHead },
    exportedAt: new Date().toISOString(),
    exportedBy: o.by,
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  await writeFile(manifestPath, manifestText);
  const manifestSha256 = sha256Hex(manifestText);
  await logArchiveAction(db, 'exported', manifest, manifestSha256, manifestPath, o.by);
  return { partition: o.partition, manifestPath, dataPath, manifestSha256, manifest };
}

async function logArchiveAction(
  db: Executor,
  action: 'exported' | 'dropped' | 'restored',
  m: ArchiveManifest,
  manifestSha256: string,
  location: string,
  by: string,
  restoredInto: string | null = null,
): Promise<void> {
  await sql`
    insert into ledger.archive_log (action, partition_name, range_from, range_to, event_count, invocation_count,
      first_position, last_position, first_occurred_at, last_occurred_at, manifest_sha256, location, restored_into, actor)
    values (${action}, ${m.partition}, ${m.rangeFrom}::uuid, ${m.rangeTo}::uuid, ${m.eventCount}, ${m.invocationCount},
      ${m.firstPosition}::bigint, ${m.lastPosition}::bigint, ${m.firstOccurredAt}::timestamptz, ${m.lastOccurredAt}::timestamptz,
      ${manifestSha256}, ${location}, ${restoredInto}, ${by || sql`session_user`})`.execute(db);
}

// ---------------------------------------------------------------------------------
// drop

export interface DropResult {
  partition: string;
  events: number;
  invocations: number;
}

/**
 * Detaches and drops the partition an archive holds, after checking the archive offline
 * and against the partition itself (same content hash, in one locked snapshot). The
 * projections of its invocations go with it (their events are gone; the archive has them).
 */
export async function dropArchivedPartition(db: Db, o: { manifestPath: string; by: string }): Promise<DropResult> {
  const check = await verifyArchiveFile(o.manifestPath);
  if (!check.ok) throw new ArchiveRefused(`the archive does not verify, so ${check.manifest.partition} is kept:\n  ${check.problems.join('\n  ')}`);
  const m = check.manifest;
  return db.transaction().execute(async (tx) => {
    const { rows: exported } = await sql<{ id: string }>`
      select id::text from ledger.archive_log
      where action = 'exported' and partition_name = ${m.partition} and manifest_sha256 = ${check.manifestSha256}`.execute(tx);
    if (exported.length === 0) {
      throw new ArchiveRefused(`ledger.archive_log has no export of ${m.partition} with manifest ${check.manifestSha256}: drop only what this ledger exported`);
    }
    const p = await partitionNamed(tx, m.partition);
    if (p.range_from !== m.rangeFrom || p.range_to !== m.rangeTo) {
      throw new ArchiveRefused(`${m.partition} covers [${p.range_from}, ${p.range_to}), the archive [${m.rangeFrom}, ${m.rangeTo})`);
    }
    // nothing appends to the partition from here on (a writer waits, then finds no partition);
    // SHARE, not ACCESS EXCLUSIVE: readers of ledger.events (the feed, the sealer) go on
    // while the partition is read again; only the detach at the end takes the table briefly
    await sql`lock table ${sql.table(`ledger.${m.partition}`)} in share mode`.execute(tx);
    const range = { from: m.rangeFrom, to: m.rangeTo };
    const { rows: queued } = await sql<{ n: string }>`
      select count(*)::text as n from ledger.queue where invocation_id >= ${range.from}::uuid and invocation_id < ${range.to}::uuid`.execute(tx);
    if (Number(queued[0]?.n) > 0) throw new ArchiveRefused(`${m.partition} holds ${queued[0]?.n} unfinished invocation(s)`);
    const { rows: unsealed } = await sql<{ n: string }>`
      select count(*)::text as n from ledger.events e, ledger.seal_state s
      where s.tree_size > 0 and e.invocation_id >= ${range.from}::uuid and e.invocation_id < ${range.to}::uuid
        and (e.tx_id, e.position) > (s.last_tx_id, s.last_position)`.execute(tx);
    if (Number(unsealed[0]?.n) > 0) {
      throw new ArchiveRefused(`${m.partition} holds ${unsealed[0]?.n} event(s) the sealer has not sealed yet: run \`invoke-ledger seal\`, export again, then drop`);
    }
    const now = await digestOf(tx, 'ledger.events', range);
    if (now.contentSha256 !== m.file.contentSha256 || now.eventCount !== m.eventCount) {
      throw new ArchiveRefused(
        `${m.partition} now holds ${now.eventCount} event(s) with content ${now.contentSha256}; the archive holds ${m.eventCount} with ${m.file.contentSha256}: export again`,
      );
    }
    await sql`delete from ledger.idempotency_keys where invocation_id >= ${range.from}::uuid and invocation_id < ${range.to}::uuid`.execute(tx);
    const removed = await sql`delete from ledger.invocations where id >= ${range.from}::uuid and id < ${range.to}::uuid`.execute(tx);
    await sql`alter table ledger.events detach partition ${sql.table(`ledger.${m.partition}`)}`.execute(tx);
    await sql`drop table ${sql.table(`ledger.${m.partition}`)}`.execute(tx);
    await logArchiveAction(tx, 'dropped', m, check.manifestSha256, o.manifestPath, o.by);
    return { partition: m.partition, events: m.eventCount, invocations: Number(removed.numAffectedRows ?? 0) };
  });
}

// ---------------------------------------------------------------------------------
// restore

export interface RestoreResult {
  table: string;
  events: number;
}

/**
 * Loads an archive into ledger_archive.<partition>, a detached partition of ledger.events
 * (same columns, defaults, constraints and indexes, its bound as a CHECK constraint,
 * UPDATE, DELETE and TRUNCATE refused) kept outside the ledger, and reads it back to the
 * archive's content hash and leaf root. Each batch commits on its own: a
 * long transaction with an xid would hold back the sealer of every database on the server
 * (its xmin rule). A restore that fails drops its table.
 */
export async function restoreArchive(db: Db, o: { manifestPath: string; by: string; table?: string }): Promise<RestoreResult> {
  const check = await verifyArchiveFile(o.manifestPath);
  if (!check.ok) throw new ArchiveRefused(`the archive does not verify; nothing restored:\n  ${check.problems.join('\n  ')}`);
  const m = check.manifest;
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  if (!uuid.test(m.rangeFrom) || !uuid.test(m.rangeTo)) throw new ArchiveRefused(`the manifest's range [${m.rangeFrom}, ${m.rangeTo}) is not a range of ids`);
  const name = o.table ?? m.partition;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new ArchiveRefused(`${name} is not a plain table name`);
  const table = `${RESTORE_SCHEMA}.${name}`;
  await db.transaction().execute(async (tx) => {
    await sql`create schema if not exists ${sql.id(RESTORE_SCHEMA)}`.execute(tx);
    const { rows: exists } = await sql<{ t: string | null }>`select to_regclass(${table})::text as t`.execute(tx);
    if (exists[0]?.t) throw new ArchiveRefused(`${table} exists already: restore into another table (--table)`);
    // a detached partition of ledger.events: its columns, defaults, CHECK constraints (by
    // name) and every index (the primary key and unique constraint as constraints), made
    // from the parent as it is now, so `alter table ledger.events attach partition` finds
    // all of them and builds nothing
    await sql`create table ${sql.table(table)} (like ledger.events including defaults including constraints including indexes)`.execute(tx);
    // the partition bound as a CHECK constraint: an attach finds it implied and skips the
    // scan of the table; loading checks every event against the bound on the way in
    await sql`
      alter table ${sql.table(table)} add constraint partition_bound
        check (invocation_id >= ${sql.lit(m.rangeFrom)}::uuid and invocation_id < ${sql.lit(m.rangeTo)}::uuid)`.execute(tx);
    // read-only like every partition (ledger.guard_event_partition): only INSERT, by this load
    for (const [trigger, event] of [['events_no_update', 'update'], ['events_no_delete', 'delete'], ['events_no_truncate', 'truncate']] as const) {
      await sql`create trigger ${sql.id(trigger)} before ${sql.raw(event)} on ${sql.table(table)}
                for each statement execute function ledger.refuse_mutation()`.execute(tx);
    }
  });
  try {
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await sql`
        insert into ${sql.table(table)} (position, invocation_id, seq, type, attempt, data, occurred_at, tx_id)
        select position, "invocationId", seq, type, attempt, data, "occurredAt", "txId"
        from json_to_recordset(${`[${batch.join(',')}]`}::json)
          as t(position bigint, "txId" xid8, "invocationId" uuid, seq int, type text, attempt int, "occurredAt" timestamptz, data jsonb)`.execute(db);
      batch = [];
    };
    for await (const { text } of archiveLines(path.join(path.dirname(o.manifestPath), m.file.name))) {
      batch.push(text);
      if (batch.length >= RESTORE_BATCH) await flush();
    }
    await flush();
    const back = await digestOf(db, table);
    if (back.contentSha256 !== m.file.contentSha256 || back.archiveRoot !== m.leaves.archiveRoot) {
      throw new ArchiveRefused(`${table} read back differs from the archive (content ${back.contentSha256}, leaves ${back.archiveRoot}); nothing restored`);
    }
    await db.transaction().execute(async (tx) => {
      // auditors read restored months like the ledger, through their own role
      await sql`grant usage on schema ${sql.id(RESTORE_SCHEMA)} to ledger_auditor`.execute(tx);
      await sql`grant select on ${sql.table(table)} to ledger_auditor`.execute(tx);
      await logArchiveAction(tx, 'restored', m, check.manifestSha256, o.manifestPath, o.by, table);
    });
  } catch (e) {
    await sql`drop table if exists ${sql.table(table)}`.execute(db).catch(() => {});
    throw e;
  }
  return { table, events: m.eventCount };
}
