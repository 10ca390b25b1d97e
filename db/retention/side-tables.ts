// Retention of the tables beside the events (migrations/0033, 0038, docs/retention.md): a rule per
// kind says how long rows are kept; ledger.purge_expired removes a bounded batch of expired
// rows, never live work, and records what it removed in ledger.retention_purges.
import { sql } from 'kysely';
import type { Executor } from '../schema.ts';

export const RETENTION_KINDS = ['attempt_logs', 'destination_deliveries', 'queue_messages', 'idempotency_keys', 'broker_messages_done'] as const;
export type RetentionKind = (typeof RETENTION_KINDS)[number];

export const isRetentionKind = (k: string): k is RetentionKind => (RETENTION_KINDS as readonly string[]).includes(k);

export class RetentionRuleInvalid extends Error {
  readonly code = 'RetentionRuleInvalid';
}

export interface RetentionRule {
  kind: RetentionKind;
  /** PostgreSQL's text of the interval (`30 days`); null: kept for ever */
  keep: string | null;
  actor: string | null;
  at: Date | null;
}

/**
 * Sets how long rows of `kind` are kept: a PostgreSQL interval (`30 days`, `12 hours`), or
 * null to keep them for ever. The rule is a new row: the history of rules stays.
 */
export async function setRetentionRule(db: Executor, kind: RetentionKind, keep: string | null, actor: string): Promise<RetentionRule> {
  try {
    const { rows } = await sql<{ kind: RetentionKind; keep: string | null; actor: string; at: Date }>`
      insert into ledger.retention_rules (kind, keep, actor)
      values (${kind}, ${keep}::interval, coalesce(nullif(${actor}, ''), session_user))
      returning kind, keep::text, actor, at`.execute(db);
    return rows[0] as RetentionRule;
  } catch (e) {
    const code = (e as { code?: string }).code;
    // 22007/22P02: not an interval; 23514: negative
    if (code === '22007' || code === '22P02' || code === '23514') {
      throw new RetentionRuleInvalid(`${keep} is not a retention period: give an interval such as "30 days" or "12 hours", or "forever"`);
    }
    throw e;
  }
}

/** The current rule of every kind (kinds never set: kept for ever). */
export async function listRetentionRules(db: Executor): Promise<RetentionRule[]> {
  const { rows } = await sql<{ kind: RetentionKind; keep: string | null; actor: string; at: Date }>`
    select distinct on (kind) kind, keep::text, actor, at from ledger.retention_rules order by kind, id desc`.execute(db);
  const set = new Map(rows.map((r) => [r.kind, r]));
  return RETENTION_KINDS.map((kind) => set.get(kind) ?? { kind, keep: null, actor: null, at: null });
}

/** Removes at most `batchSize` expired rows of `kind` under its current rule, recorded under `runId`; returns how many. */
export async function purgeExpired(db: Executor, kind: RetentionKind, batchSize: number, runId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`select ledger.purge_expired(${kind}, ${batchSize}::int, ${runId}::uuid) as n`.execute(db);
  return rows[0]?.n ?? 0;
}

export interface RetentionRun {
  run_id: string;
  kind: RetentionKind;
  keep: string;
  cutoff: Date;
  batches: number;
  removed: number;
  oldest_at: Date | null;
  newest_at: Date | null;
  finished_at: Date;
}

/** The newest purge runs, newest first (what `retention show` prints; auditors read audit.retention_runs). */
export async function recentRetentionRuns(db: Executor, limit = 20): Promise<RetentionRun[]> {
  const { rows } = await sql<RetentionRun>`
    select run_id::text, kind, keep::text, cutoff, batches::int, removed::int, oldest_at, newest_at, finished_at
    from audit.retention_runs order by finished_at desc, kind limit ${limit}`.execute(db);
  return rows;
}
