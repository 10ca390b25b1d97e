// The sealer's tables (migrations/0011): one exported function per operation. Only the
// sealer writes them; proofs and tree heads read them. Hashes travel as hex.
import { sql } from 'kysely';
import type { Executor } from '../schema.ts';
import { OCCURRED_AT_SQL, type LeafRow, type SealedEvent } from './leaf.ts';
import type { TreeHead } from './tree-head.ts';

export const BLOCK_LEAVES = 16;
/** levels of the complete subtrees stored in merkle_nodes: 8, 12, 16, … */
export const NODE_LEVEL_STEP = 4;
export const BLOCK_LEVEL = 4;

export interface SealState {
  treeSize: number;
  lastTxId: string;
  lastPosition: string;
  rootHash: Buffer;
  /** positions and leaf hashes of the unfinished block */
  tailPositions: string[];
  tailHashes: Buffer[];
  sealedBy: string | null;
  sealedAt: Date | null;
}

interface SealStateRow {
  tree_size: string;
  last_tx_id: string;
  last_position: string;
  root_hash: Buffer;
  tail_positions: string[];
  tail_hashes: Buffer;
  sealed_by: string | null;
  sealed_at: Date | null;
}

const splitHashes = (b: Buffer): Buffer[] => Array.from({ length: b.length / 32 }, (_, i) => b.subarray(i * 32, i * 32 + 32));

function toState(r: SealStateRow): SealState {
  return {
    treeSize: Number(r.tree_size),
    lastTxId: r.last_tx_id,
    lastPosition: r.last_position,
    rootHash: r.root_hash,
    tailPositions: r.tail_positions.map(String),
    tailHashes: splitHashes(r.tail_hashes),
    sealedBy: r.sealed_by,
    sealedAt: r.sealed_at,
  };
}

const STATE_COLUMNS = sql`tree_size::text, last_tx_id::text, last_position::text, root_hash, tail_positions::text[], tail_hashes, sealed_by, sealed_at`;

/**
 * Takes or renews the sealer's lease and returns the seal state; null while another
 * process holds an unexpired lease. A plain UPDATE, committed at once.
 */
export async function acquireSealLease(db: Executor, holder: string, leaseMs: number): Promise<SealState | null> {
  const { rows } = await sql<SealStateRow>`
    update ledger.seal_state set lease_holder = ${holder}, lease_until = clock_timestamp() + make_interval(secs => ${leaseMs / 1000})
    where lease_holder is null or lease_holder = ${holder} or lease_until < clock_timestamp()
    returning ${STATE_COLUMNS}`.execute(db);
  return rows[0] ? toState(rows[0]) : null;
}

/** Gives the lease up (a stopping sealer), so another process takes over at once. */
export async function releaseSealLease(db: Executor, holder: string): Promise<void> {
  await sql`update ledger.seal_state set lease_holder = null, lease_until = null where lease_holder = ${holder}`.execute(db);
}

/**
 * The seal state, locked for this transaction: the sealer's write and the signer take
 * it, so they never interleave. With `wait: false` another holder means null (FOR UPDATE
 * SKIP LOCKED), not a wait.
 */
export async function lockSealState(tx: Executor, o: { wait: boolean }): Promise<SealState | null> {
  const { rows } = o.wait
    ? await sql<SealStateRow>`select ${STATE_COLUMNS} from ledger.seal_state for update`.execute(tx)
    : await sql<SealStateRow>`select ${STATE_COLUMNS} from ledger.seal_state for update skip locked`.execute(tx);
  return rows[0] ? toState(rows[0]) : null;
}

export async function readSealState(db: Executor): Promise<SealState> {
  const { rows } = await sql<SealStateRow>`select ${STATE_COLUMNS} from ledger.seal_state`.execute(db);
  if (!rows[0]) throw new Error('ledger.seal_state has no row (migration 0011 not applied?)');
  return toState(rows[0]);
}

export interface EventToSeal extends SealedEvent {
  position: string;
  txId: string;
}

interface EventRow {
  position: string;
  tx_id: string;
  invocation_id: string;
  seq: number;
  type: string;
  attempt: number | null;
  occurred_at: string;
  data: unknown;
}

const toEvent = (r: EventRow): EventToSeal => ({
  position: r.position,
  txId: r.tx_id,
  invocationId: r.invocation_id,
  seq: r.seq,
  type: r.type,
  attempt: r.attempt,
  occurredAt: r.occurred_at,
  data: r.data,
});

// ORDER BY must name e.position: a bare `position` would be this text output column
const EVENT_COLUMNS = sql.raw(
  `position::text, tx_id::text, invocation_id::text, seq, type, attempt, ${OCCURRED_AT_SQL} as occurred_at, data`,
);

/** An event to seal: where it is, and its leaf's fields with `data` as JSON text. */
export interface EventRowToSeal {
  position: string;
  txId: string;
  leaf: LeafRow;
}

/**
 * The next events in leaf order, (tx_id, position), after the cursor, and only those of
 * transactions older than this snapshot's xmin: every such transaction has ended, so no
 * event can still appear before the last one returned (the rule of db/subscriptions.ts).
 * `data` stays text: whoever hashes it parses it (possibly in another thread).
 */
export async function readEventsToSeal(tx: Executor, after: { txId: string; position: string }, limit: number): Promise<EventRowToSeal[]> {
  const { rows } = await sql<Omit<EventRow, 'data'> & { data_text: string }>`
    select e.position::text, e.tx_id::text, e.invocation_id::text, e.seq, e.type, e.attempt,
           ${sql.raw(OCCURRED_AT_SQL.replace('occurred_at', 'e.occurred_at'))} as occurred_at, e.data::text as data_text
    from ledger.events e
    where (e.tx_id, e.position) > (${after.txId}::xid8, ${after.position}::bigint)
      and e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
    order by e.tx_id, e.position
    limit ${limit}`.execute(tx);
  return rows.map((r) => ({ position: r.position, txId: r.tx_id, leaf: [r.invocation_id, r.seq, r.type, r.attempt, r.occurred_at, r.data_text] }));
}

/** Committed events not sealed yet (including those held back behind open transactions). */
export async function countUnsealed(db: Executor, state: SealState): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ledger.events
    where (tx_id, position) > (${state.lastTxId}::xid8, ${state.lastPosition}::bigint)`.execute(db);
  return Number((rows[0] as { n: string }).n);
}

export interface SealedBlock {
  blockIndex: number;
  lastTxId: string;
  lastPosition: string;
  positions: string[];
  leafHashes: Buffer[];
  rootHash: Buffer;
}

export interface StoredNode {
  level: number;
  index: number;
  hash: Buffer;
}

/** Appends blocks and nodes and moves the state forward, in the caller's transaction. */
export async function writeSealed(
  tx: Executor,
  o: { blocks: SealedBlock[]; nodes: StoredNode[]; state: Omit<SealState, 'sealedAt'> },
): Promise<void> {
  const { blocks, nodes, state } = o;
  if (blocks.length > 0) {
    await sql`
      insert into ledger.merkle_leaf_blocks (block_index, last_tx_id, last_position, positions, leaf_hashes, root_hash)
      select u.b, u.t, u.p, (${blocks.flatMap((b) => b.positions)}::bigint[])[(u.i - 1) * 16 + 1 : u.i * 16],
             decode(u.h, 'hex'), decode(u.r, 'hex')
      from unnest(${blocks.map((b) => b.blockIndex)}::bigint[], ${blocks.map((b) => b.lastTxId)}::xid8[],
                  ${blocks.map((b) => b.lastPosition)}::bigint[], ${blocks.map((b) => Buffer.concat(b.leafHashes).toString('hex'))}::text[],
                  ${blocks.map((b) => b.rootHash.toString('hex'))}::text[]) with ordinality as u(b, t, p, h, r, i)`.execute(tx);
  }
  if (nodes.length > 0) {
    await sql`
      insert into ledger.merkle_nodes (level, node_index, hash)
      select l, n, decode(h, 'hex')
      from unnest(${nodes.map((n) => n.level)}::smallint[], ${nodes.map((n) => n.index)}::bigint[],
                  ${nodes.map((n) => n.hash.toString('hex'))}::text[]) as u(l, n, h)`.execute(tx);
  }
  await sql`
    update ledger.seal_state set
      tree_size = ${state.treeSize}, last_tx_id = ${state.lastTxId}::xid8, last_position = ${state.lastPosition}::bigint,
      root_hash = decode(${state.rootHash.toString('hex')}, 'hex'), tail_positions = ${state.tailPositions}::bigint[],
      tail_hashes = decode(${Buffer.concat(state.tailHashes).toString('hex')}, 'hex'),
      sealed_by = ${state.sealedBy}, sealed_at = now()`.execute(tx);
}

/** Stored blocks by index: their leaf hashes and roots. */
export async function readBlocks(db: Executor, blockIndexes: readonly number[]): Promise<Map<number, { leafHashes: Buffer[]; rootHash: Buffer }>> {
  if (blockIndexes.length === 0) return new Map();
  const { rows } = await sql<{ block_index: string; leaf_hashes: Buffer; root_hash: Buffer }>`
    select block_index::text, leaf_hashes, root_hash from ledger.merkle_leaf_blocks
    where block_index = any(${[...blockIndexes]}::bigint[])`.execute(db);
  return new Map(rows.map((r) => [Number(r.block_index), { leafHashes: splitHashes(r.leaf_hashes), rootHash: r.root_hash }]));
}

/** Stored subtree roots (levels 8, 12, …) by "level:index". */
export async function readNodes(db: Executor, keys: readonly { level: number; index: number }[]): Promise<Map<string, Buffer>> {
  if (keys.length === 0) return new Map();
  const { rows } = await sql<{ level: number; node_index: string; hash: Buffer }>`
    select n.level, n.node_index::text, n.hash from ledger.merkle_nodes n
    join unnest(${keys.map((k) => k.level)}::smallint[], ${keys.map((k) => k.index)}::bigint[]) as u(l, i)
      on n.level = u.l and n.node_index = u.i`.execute(db);
  return new Map(rows.map((r) => [`${r.level}:${r.node_index}`, r.hash]));
}

/**
 * Leaf indexes of events by position. An event's block is the first whose last
 * (tx_id, position) is at or after the event's own; unfinished-block events are found
 * in the state's tail. Positions not sealed yet are absent from the result.
 */
export async function leafIndexesOf(db: Executor, positions: readonly string[]): Promise<Map<string, number>> {
  if (positions.length === 0) return new Map();
  const { rows } = await sql<{ position: string; leaf_index: string | null }>`
    with ev as (select position, tx_id from ledger.events where position = any(${[...positions]}::bigint[]))
    select ev.position::text,
           coalesce(b.block_index * 16 + array_position(b.positions, ev.position) - 1,
                    s.tree_size - cardinality(s.tail_positions) + array_position(s.tail_positions, ev.position) - 1)::text as leaf_index
    from ev
    cross join ledger.seal_state s
    left join lateral (
      select block_index, positions from ledger.merkle_leaf_blocks b
      where (b.last_tx_id, b.last_position) >= (ev.tx_id, ev.position)
      order by b.last_tx_id, b.last_position limit 1
    ) b on true`.execute(db);
  return new Map(rows.filter((r) => r.leaf_index !== null).map((r) => [r.position, Number(r.leaf_index)]));
}

/** Events by position, as they are now, in the form they are sealed in. */
export async function readEventsByPosition(db: Executor, positions: readonly string[]): Promise<EventToSeal[]> {
  if (positions.length === 0) return [];
  const { rows } = await sql<EventRow>`
    select ${EVENT_COLUMNS} from ledger.events e where e.position = any(${[...positions]}::bigint[]) order by e.position`.execute(db);
  return rows.map(toEvent);
}

/** One invocation's events, by seq, in the form they are sealed in. */
export async function readInvocationEvents(db: Executor, invocationId: string): Promise<EventToSeal[]> {
  const { rows } = await sql<EventRow>`
    select ${EVENT_COLUMNS} from ledger.events where invocation_id = ${invocationId}::uuid order by seq`.execute(db);
  return rows.map(toEvent);
}

// ----------------------------------------------------------------------------------
// Tree heads

interface TreeHeadRow {
  tree_size: string;
  timestamp_ms: string;
  root_hash: Buffer;
  key_id: string;
  signature: Buffer;
}

const toHead = (r: TreeHeadRow): TreeHead => ({
  treeSize: Number(r.tree_size),
  timestamp: Number(r.timestamp_ms),
  rootHash: r.root_hash.toString('hex'),
  keyId: r.key_id,
  signature: r.signature.toString('base64'),
});

export async function insertTreeHead(tx: Executor, h: TreeHead): Promise<void> {
  await sql`
    insert into ledger.tree_heads (tree_size, timestamp_ms, root_hash, key_id, signature)
    values (${h.treeSize}, ${h.timestamp}, decode(${h.rootHash}, 'hex'), ${h.keyId}, decode(${h.signature}, 'base64'))`.execute(tx);
}

/** The newest tree head, or the newest of one size. */
export async function latestTreeHead(db: Executor, treeSize?: number): Promise<TreeHead | null> {
  const { rows } =
    treeSize === undefined
      ? await sql<TreeHeadRow>`
          select tree_size::text, timestamp_ms::text, root_hash, key_id, signature from ledger.tree_heads
          order by id desc limit 1`.execute(db)
      : await sql<TreeHeadRow>`
          select tree_size::text, timestamp_ms::text, root_hash, key_id, signature from ledger.tree_heads
          where tree_size = ${treeSize} order by id desc limit 1`.execute(db);
  return rows[0] ? toHead(rows[0]) : null;
}

/** Newest first. */
export async function listTreeHeads(db: Executor, limit: number): Promise<TreeHead[]> {
  const { rows } = await sql<TreeHeadRow>`
    select tree_size::text, timestamp_ms::text, root_hash, key_id, signature from ledger.tree_heads
    order by id desc limit ${limit}`.execute(db);
  return rows.map(toHead);
}

/** The database's clock in ms: one clock for every signer. */
export async function databaseNowMs(db: Executor): Promise<number> {
  const { rows } = await sql<{ ms: string }>`select floor(extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms`.execute(db);
  return Number((rows[0] as { ms: string }).ms);
}
