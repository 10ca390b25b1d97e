// The reads behind the live feed (the feed itself lives next to GraphQL, its only edge).
//
// Order and completeness come from the transaction ids, not from `position`: identity
// values are handed out before commit, so a reader following `position` alone would skip
// a row whose transaction commits after a later one's. The feed reads events in
// (tx_id, position) order and only those whose tx_id is below the horizon, the xmin of a
// current snapshot: every transaction older than that has committed or aborted for good,
// so nothing behind a cursor can still appear. A (tx_id, position) pair is therefore a
// resumable position in the ledger: "everything after this" is well defined forever.
//
// Reads come in two steps: the ids (cheap, index-only on events_tx_order plus the
// function name), then the bodies of only the events someone wants.
import { sql } from 'kysely';
import { toLedgerEvent, UUID, type EventRowRaw } from './invocations.ts';
import type { LedgerEvent } from './lifecycle.ts';
import type { Executor } from './schema.ts';

/** A position in the feed: the last event seen as (tx_id, position), both as text. */
export interface FeedCursor {
  txId: string;
  position: string;
}

export interface FeedFilter {
  invocationId?: string | null;
  functionName?: string | null;
}

/** An event's place in the feed, without its body. */
export interface FeedEntry {
  txId: string;
  position: string;
  invocationId: string;
  functionName: string;
  /** what its data takes on disk (compressed): the basis of per-subscriber memory bounds */
  bytes: number;
}

export interface FeedEvent extends Omit<LedgerEvent, 'position'> {
  position: string;
  functionName: string;
  txId: string;
  bytes: number;
}

/** (a) vs (b) in feed order: negative, zero or positive. */
export function compareCursors(a: FeedCursor, b: FeedCursor): number {
  const tx = BigInt(a.txId) - BigInt(b.txId);
  if (tx !== 0n) return tx < 0n ? -1 : 1;
  const p = BigInt(a.position) - BigInt(b.position);
  return p === 0n ? 0 : p < 0n ? -1 : 1;
}

/** The start of the ledger: every event is after it. */
export const FEED_ORIGIN: FeedCursor = { txId: '0', position: '0' };

/** "Now": everything from transactions still open or yet to come is after it. */
export async function currentFeedCursor(db: Executor): Promise<FeedCursor> {
  const { rows } = await sql<{ xmin: string }>`select pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(db);
  return { txId: (rows[0] as { xmin: string }).xmin, position: '0' };
}

export interface FeedHorizon {
  /** every transaction below it has ended */
  horizon: string;
  /** events after the cursor can be read now */
  ready: boolean;
  /** committed events after the cursor wait for an older transaction to end */
  heldBack: boolean;
}

/** Where the horizon stands relative to a cursor: two index probes, no rows read. */
export async function feedHorizon(db: Executor, after: FeedCursor): Promise<FeedHorizon> {
  const { rows } = await sql<{ horizon: string; ready: boolean; held_back: boolean }>`
    select h.xmin::text as horizon,
      exists (select 1 from ledger.events e
              where (e.tx_id, e.position) > (${after.txId}::xid8, ${after.position}::bigint) and e.tx_id < h.xmin) as ready,
      exists (select 1 from ledger.events e
              where (e.tx_id, e.position) > (${after.txId}::xid8, ${after.position}::bigint) and e.tx_id >= h.xmin) as held_back
    from (select pg_snapshot_xmin(pg_current_snapshot()) as xmin) h`.execute(db);
  const r = rows[0] as { horizon: string; ready: boolean; held_back: boolean };
  return { horizon: r.horizon, ready: r.ready, heldBack: r.held_back };
}

interface EntryRow {
  tx_id: string;
  position: string;
  invocation_id: string;
  function_name: string;
  bytes: number;
}

/**
 * The entries after `after`, in feed order: below `horizon` (the live reader) or up to and
 * including `upTo` (a subscriber catching up to the live reader), optionally filtered.
 */
export async function readFeedEntries(
  db: Executor,
  after: FeedCursor,
  bound: { horizon: string } | { upTo: FeedCursor },
  limit: number,
  filter: FeedFilter = {},
): Promise<FeedEntry[]> {
  const invocationId = filter.invocationId ?? null;
  if (invocationId !== null && !UUID.test(invocationId)) return [];
  const functionName = filter.functionName ?? null;
  const below = 'horizon' in bound ? bound.horizon : null;
  const upTo = 'upTo' in bound ? bound.upTo : null;
  const { rows } = await sql<EntryRow>`
    select e.tx_id::text as tx_id, e.position::text as position, e.invocation_id, i.function_name,
           pg_column_size(e.data) as bytes
    from ledger.events e join ledger.invocations i on i.id = e.invocation_id
    where (e.tx_id, e.position) > (${after.txId}::xid8, ${after.position}::bigint)
      and (${below}::xid8 is null or e.tx_id < ${below}::xid8)
      and (${upTo?.txId ?? null}::xid8 is null or (e.tx_id, e.position) <= (${upTo?.txId ?? null}::xid8, ${upTo?.position ?? null}::bigint))
      and (${invocationId}::uuid is null or e.invocation_id = ${invocationId}::uuid)
      and (${functionName}::text is null or i.function_name = ${functionName}::text)
    order by e.tx_id, e.position
    limit ${limit}`.execute(db);
  return rows.map((r) => ({ txId: r.tx_id, position: r.position, invocationId: r.invocation_id, functionName: r.function_name, bytes: r.bytes }));
}

/** The bodies of these entries, in the entries' order. */
export async function readFeedEvents(db: Executor, entries: readonly FeedEntry[]): Promise<FeedEvent[]> {
  if (entries.length === 0) return [];
  const { rows } = await sql<EventRowRaw>`
    select e.position::text as position, e.invocation_id, e.seq, e.type, e.attempt, e.data, e.occurred_at
    from ledger.events e where e.position = any(${entries.map((e) => e.position)}::bigint[])`.execute(db);
  const byPosition = new Map(rows.map((r) => [r.position, r]));
  const out: FeedEvent[] = [];
  for (const entry of entries) {
    const r = byPosition.get(entry.position);
    if (r) out.push({ ...toLedgerEvent(r), position: entry.position, functionName: entry.functionName, txId: entry.txId, bytes: entry.bytes } as FeedEvent);
  }
  return out;
}
