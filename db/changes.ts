// The control-plane ledger (`ledger.changes`, migration 0017; docs/changes.md): every
// change to a resource is one immutable row in that resource's own stream, numbered by
// `seq`. Control-plane writes call `appendChange` in the same transaction as the state
// they change, so a change is recorded exactly when it happened.
import { sql } from 'kysely';
import { LedgerError } from './errors.ts';
import type { Executor } from './schema.ts';
import { whyNotStorableJson, whyNotStorableText } from './storable.ts';

export interface NewChange {
  /** `function`, `version`, `alias`, `schedule`, `event_source_mapping`, `api_key`, … */
  resourceType: string;
  resourceName: string;
  /** `created`, `code_updated`, `config_updated`, `published`, `deleted`, … */
  action: string;
  /** an API key id, `cli:<user>`, `startup`; never a secret */
  actor: string;
  requestId?: string | undefined;
  /** for updates `{ before, after }`, plus whatever the action needs */
  data?: Record<string, unknown>;
  /**
   * The revision (seq) the caller read. When given, the change is refused with
   * RevisionConflict unless it is still the resource's latest; 0 means "must not exist yet".
   */
  expectedSeq?: number | undefined;
}

export interface Change {
  position: string;
  resourceType: string;
  resourceName: string;
  seq: number;
  action: string;
  actor: string;
  requestId: string | null;
  data: Record<string, unknown>;
  occurredAt: Date;
}

/** A row of ledger.changes as selected (`CHANGE_COLUMNS`). */
export interface ChangeRow {
  position: string;
  resource_type: string;
  resource_name: string;
  seq: number;
  action: string;
  actor: string;
  request_id: string | null;
  data: Record<string, unknown>;
  occurred_at: Date;
}

export const toChange = (r: ChangeRow): Change => ({
  position: String(r.position),
  resourceType: r.resource_type,
  resourceName: r.resource_name,
  seq: r.seq,
  action: r.action,
  actor: r.actor,
  requestId: r.request_id,
  data: r.data,
  occurredAt: r.occurred_at,
});

const UNIQUE_VIOLATION = '23505';

/**
 * Appends one change. Without `expectedSeq`, it follows the resource's latest change
 * (two concurrent writers of one resource: the second gets RevisionConflict, never a
 * gap or a duplicate seq). Run it in the transaction that makes the change.
 */
export async function appendChange(db: Executor, change: NewChange): Promise<Change> {
  const why =
    whyNotStorableJson(change.data ?? {}) ??
    whyNotStorableText(change.resourceName) ??
    whyNotStorableText(change.actor) ??
    whyNotStorableText(change.requestId ?? '');
  if (why !== null) throw new LedgerError('InvalidParameter', `The change cannot be recorded: ${why}`);
  const data = JSON.stringify(change.data ?? {});
  const seq =
    change.expectedSeq !== undefined
      ? sql<number>`${change.expectedSeq + 1}::int`
      : sql<number>`(select coalesce(max(seq), 0) + 1 from ledger.changes
                     where resource_type = ${change.resourceType} and resource_name = ${change.resourceName})`;
  try {
    const { rows } = await sql<ChangeRow>`
      insert into ledger.changes (resource_type, resource_name, seq, action, actor, request_id, data)
      values (${change.resourceType}, ${change.resourceName}, ${seq}, ${change.action}, ${change.actor},
              ${change.requestId ?? null}, ${data}::jsonb)
      returning position, resource_type, resource_name, seq, action, actor, request_id, data, occurred_at`.execute(db);
    return toChange(rows[0]!);
  } catch (e) {
    const code = (e as { code?: string }).code;
    // a concurrent change took the seq, or the caller's revision is stale (the seq
    // check trigger refuses a gap with check_violation)
    if (code === UNIQUE_VIOLATION || (code === '23514' && change.expectedSeq !== undefined)) {
      throw new LedgerError(
        'RevisionConflict',
        `${change.resourceType} ${change.resourceName} was changed since revision ${change.expectedSeq ?? 'read'}; read it again and retry`,
        { resourceType: change.resourceType, resourceName: change.resourceName, expectedSeq: change.expectedSeq },
      );
    }
    throw e;
  }
}

/** The latest seq of a resource (0 when it has no change yet): its revision. */
export async function latestChangeSeq(db: Executor, resourceType: string, resourceName: string): Promise<number> {
  const { rows } = await sql<{ seq: number }>`
    select coalesce(max(seq), 0)::int as seq from ledger.changes
    where resource_type = ${resourceType} and resource_name = ${resourceName}`.execute(db);
  return rows[0]?.seq ?? 0;
}

export interface ChangeFilter {
  resourceType?: string;
  resourceName?: string;
  /** changes at or before this time: "what was it at 14:02" */
  until?: Date;
  /** newest first; default 100, at most 1,000 */
  limit?: number;
}

/** A resource's history, newest first. */
export async function listChanges(db: Executor, filter: ChangeFilter = {}): Promise<Change[]> {
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
  const { rows } = await sql<ChangeRow>`
    select position, resource_type, resource_name, seq, action, actor, request_id, data, occurred_at
    from ledger.changes
    where (${filter.resourceType ?? null}::text is null or resource_type = ${filter.resourceType ?? null})
      and (${filter.resourceName ?? null}::text is null or resource_name = ${filter.resourceName ?? null})
      and (${filter.until ?? null}::timestamptz is null or occurred_at <= ${filter.until ?? null})
    order by position desc
    limit ${limit}`.execute(db);
  return rows.map(toChange);
}
