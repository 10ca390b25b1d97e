// Partition upkeep for ledger.events (migrations/0020, docs/retention.md): one partition
// per UTC month of invocation accept time, made ahead by ledger.premake_event_partitions.
import { sql } from 'kysely';
import type { Executor } from '../schema.ts';

/** Months made ahead of the current one, by the server and by `archive partitions`. */
export const PREMAKE_MONTHS = 3;

export interface EventPartition {
  name: string;
  /** first instant of the month (UTC); null for events_default */
  month: Date | null;
  rangeFrom: string | null;
  rangeTo: string | null;
}

/** Makes the partitions of this month and the next `monthsAhead`; returns those it made. */
export async function premakeEventPartitions(db: Executor, monthsAhead = PREMAKE_MONTHS): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select ledger.premake_event_partitions(${monthsAhead}::int) as name`.execute(db);
  return rows.map((r) => r.name);
}

export async function listEventPartitions(db: Executor): Promise<EventPartition[]> {
  const { rows } = await sql<{ partition_name: string; month: Date | null; range_from: string | null; range_to: string | null }>`
    select partition_name, month, range_from::text, range_to::text from ledger.event_partitions
    order by month nulls first`.execute(db);
  return rows.map((r) => ({ name: r.partition_name, month: r.month, rangeFrom: r.range_from, rangeTo: r.range_to }));
}

/** How far ahead partitions exist: whole months after the current one (-1: not even this month's). */
export async function partitionMonthsAhead(db: Executor, now = new Date()): Promise<number> {
  const months = new Set((await listEventPartitions(db)).flatMap((p) => (p.month ? [p.month.getTime()] : [])));
  let ahead = -1;
  while (months.has(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + ahead + 1, 1))) ahead++;
  return ahead;
}

/**
 * What `verify` reports about partitions: premake behind, and months that are gone from
 * the database without a record of their archive (lost, not archived).
 */
export async function partitionProblems(db: Executor, now = new Date()): Promise<string[]> {
  const problems: string[] = [];
  // a ledger not migrated to 0020 yet has no partitions to keep up
  const { rows: partitioned } = await sql<{ t: string | null }>`select to_regclass('ledger.event_partition_log')::text as t`.execute(db);
  if (!partitioned[0]?.t) return problems;
  const ahead = await partitionMonthsAhead(db, now);
  if (ahead < 1) {
    problems.push(
      ahead < 0
        ? 'no partition for the current month: new invocations land in events_default, which is never archived (run `invoke-ledger archive partitions`)'
        : 'no partition for next month yet: premake is behind (run `invoke-ledger archive partitions`)',
    );
  }
  const { rows } = await sql<{ partition_name: string }>`
    select m.partition_name from ledger.event_partition_log m
    where not exists (select 1 from ledger.event_partitions p where p.partition_name = m.partition_name)
      and not exists (select 1 from ledger.archive_log a where a.partition_name = m.partition_name and a.action = 'dropped')
    order by m.partition_name`.execute(db);
  for (const r of rows) problems.push(`partition ${r.partition_name} is gone and ledger.archive_log records no archive of it: its events are lost`);
  return problems;
}

/** Months archived and dropped (each once), oldest first: what `verify` says is archived, not lost. */
export async function droppedPartitions(db: Executor): Promise<string[]> {
  const { rows: partitioned } = await sql<{ t: string | null }>`select to_regclass('ledger.archive_log')::text as t`.execute(db);
  if (!partitioned[0]?.t) return [];
  const { rows } = await sql<{ name: string }>`
    select distinct partition_name as name from ledger.archive_log where action = 'dropped' order by 1`.execute(db);
  return rows.map((r) => r.name);
}

export interface EventPartitionRow {
  partition_name: string;
  month: Date | null;
  /** the planner's estimate, as text (bigint) */
  events: string;
  last_archive_action: string | null;
}

/** Every event partition with its estimated size and last archive action, oldest month first (the CLI's table). */
export async function eventPartitionReport(db: Executor): Promise<EventPartitionRow[]> {
  const { rows } = await sql<EventPartitionRow>`
    select p.partition_name, p.month, greatest(c.reltuples, 0)::bigint::text as events, p.last_archive_action
    from audit.event_partitions p join pg_class c on c.oid = ('ledger.' || quote_ident(p.partition_name))::regclass
    order by p.month nulls first`.execute(db);
  return rows;
}

/** Months dropped from the database after their archive was verified, with where the archive is. */
export async function listDroppedPartitions(db: Executor): Promise<{ partition_name: string; at: Date; manifest_sha256: string; location: string }[]> {
  const { rows } = await sql<{ partition_name: string; at: Date; manifest_sha256: string; location: string }>`
    select partition_name, at, manifest_sha256, location from audit.archives where action = 'dropped' order by id`.execute(db);
  return rows;
}
