// Proofs served to auditors: inclusion of an event (or of every event of an invocation)
// in a tree head, and consistency between two tree sizes. Each reads O(log n) stored
// hashes in one REPEATABLE READ snapshot. Proofs are only as good as the signed head they
// are checked against: the caller verifies them (tools/verify-ledger.mjs does).
import { LedgerError } from '../errors.ts';
import type { Db, Executor } from '../schema.ts';
import { eventLeafHash, type SealedEvent } from './leaf.ts';
import { consistencyRanges, inclusionRanges, rangeRoot, subtreeKey, subtreesOf, type LeafRange, type Subtree } from './merkle.ts';
import {
  countUnsealed,
  latestTreeHead,
  leafIndexesOf,
  readEventsByPosition,
  readInvocationEvents,
  readSealState,
  type EventToSeal,
  type SealState,
} from './store.ts';
import { subtreeRoots, tailOf } from './subtrees.ts';
import type { TreeHead } from './tree-head.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const POSITION = /^[1-9][0-9]{0,18}$/;

export interface EventInclusionProof {
  position: string;
  leafIndex: number;
  /** the event as the ledger holds it now, in the form that is hashed */
  event: SealedEvent;
  /** hex SHA-256 leaf hash of that event */
  leafHash: string;
  /** hex hashes, leaf level first (RFC 9162 inclusion path) */
  auditPath: string[];
}

export interface InvocationProof {
  invocationId: string;
  treeSize: number;
  rootHash: string;
  /** the signed head of that size, when there is one */
  treeHead: TreeHead | null;
  events: EventInclusionProof[];
  /** events not in that tree yet (appended after it) */
  notCovered: { position: string; seq: number }[];
}

export interface ConsistencyProof {
  fromSize: number;
  toSize: number;
  fromRoot: string;
  toRoot: string;
  fromTreeHead: TreeHead | null;
  toTreeHead: TreeHead | null;
  /** hex hashes (RFC 9162 consistency proof) */
  proof: string[];
}

/** Roots of the given ranges of the sealed tree. */
async function rangeRoots(db: Executor, state: SealState, ranges: readonly LeafRange[]): Promise<Buffer[]> {
  const wanted = new Map<string, Subtree>();
  for (const r of ranges) for (const s of subtreesOf(r)) wanted.set(subtreeKey(s), s);
  const roots = await subtreeRoots(db, [...wanted.values()], tailOf(state));
  return ranges.map((r) => rangeRoot(r, (s) => roots.get(subtreeKey(s)) as Buffer));
}

/** The tree a proof is for: the given size, or the latest signed head's. */
async function proofTree(tx: Executor, state: SealState, treeSize: number | undefined): Promise<{ size: number; head: TreeHead | null }> {
  if (treeSize === undefined) {
    const head = await latestTreeHead(tx);
    if (!head) throw new LedgerError('TreeHeadNotFound', 'no tree head has been signed yet; sign one with `invoke-ledger tree-head`');
    return { size: head.treeSize, head };
  }
  if (!Number.isSafeInteger(treeSize) || treeSize < 1) throw new LedgerError('InvalidParameter', `treeSize must be a positive integer, not ${treeSize}`);
  if (treeSize > state.treeSize) {
    throw new LedgerError('NotYetSealed', `the tree has ${state.treeSize} leaves; size ${treeSize} is not sealed yet`);
  }
  return { size: treeSize, head: await latestTreeHead(tx, treeSize) };
}

function inRepeatableRead<T>(db: Db, fn: (tx: Executor) => Promise<T>): Promise<T> {
  return db.transaction().setIsolationLevel('repeatable read').execute(fn);
}

/** Inclusion proofs of the events in the tree of `size` leaves, and that tree's root (one read of stored hashes). */
async function proveEvents(tx: Executor, state: SealState, size: number, events: EventToSeal[]) {
  const indexes = await leafIndexesOf(
    tx,
    events.map((e) => e.position),
  );
  const covered = events.filter((e) => (indexes.get(e.position) ?? Infinity) < size);
  const rangesOf = covered.map((e) => inclusionRanges(indexes.get(e.position) as number, size));
  const [root, ...roots] = await rangeRoots(tx, state, [{ start: 0, end: size }, ...rangesOf.flat()]);
  let at = 0;
  const proofs: EventInclusionProof[] = covered.map((e, i) => {
    const n = (rangesOf[i] as LeafRange[]).length;
    const path = roots.slice(at, at + n).map((h) => h.toString('hex'));
    at += n;
    const { position, txId: _txId, ...event } = e;
    return { position, leafIndex: indexes.get(position) as number, event, leafHash: eventLeafHash(e).toString('hex'), auditPath: path };
  });
  const notCovered = events.filter((e) => !covered.includes(e)).map((e) => ({ position: e.position, seq: e.seq }));
  return { proofs, notCovered, root: root as Buffer };
}

/** Inclusion proofs for every event of an invocation in the latest signed head (or a given size). */
export async function invocationProof(db: Db, invocationId: string, treeSize?: number): Promise<InvocationProof> {
  if (!UUID.test(invocationId)) throw new LedgerError('InvalidParameter', `not an invocation id: ${invocationId}`);
  return inRepeatableRead(db, async (tx) => {
    const events = await readInvocationEvents(tx, invocationId.toLowerCase());
    if (events.length === 0) throw new LedgerError('InvocationNotFound', `Invocation not found: ${invocationId}`);
    const state = await readSealState(tx);
    const tree = await proofTree(tx, state, treeSize);
    const { proofs, notCovered, root } = await proveEvents(tx, state, tree.size, events);
    return {
      invocationId: invocationId.toLowerCase(),
      treeSize: tree.size,
      rootHash: root.toString('hex'),
      treeHead: tree.head,
      events: proofs,
      notCovered,
    };
  });
}

/** Inclusion proof of one event, by position. */
export async function eventInclusionProof(
  db: Db,
  position: string,
  treeSize?: number,
): Promise<EventInclusionProof & { treeSize: number; rootHash: string; treeHead: TreeHead | null }> {
  if (!POSITION.test(position)) throw new LedgerError('InvalidParameter', `not an event position: ${position}`);
  return inRepeatableRead(db, async (tx) => {
    const events = await readEventsByPosition(tx, [position]);
    if (events.length === 0) throw new LedgerError('EventNotFound', `no event at position ${position}`);
    const state = await readSealState(tx);
    const tree = await proofTree(tx, state, treeSize);
    const { proofs, root } = await proveEvents(tx, state, tree.size, events);
    const proof = proofs[0];
    if (!proof) throw new LedgerError('NotYetSealed', `the event at position ${position} is not in the tree of size ${tree.size} yet`);
    return { ...proof, treeSize: tree.size, rootHash: root.toString('hex'), treeHead: tree.head };
  });
}

/** Consistency proof from size `from` to size `to` (default: the latest signed head). */
export async function consistencyProof(db: Db, from: number, to?: number): Promise<ConsistencyProof> {
  if (!Number.isSafeInteger(from) || from < 1) throw new LedgerError('InvalidParameter', `from must be a positive integer, not ${from}`);
  return inRepeatableRead(db, async (tx) => {
    const state = await readSealState(tx);
    const target = await proofTree(tx, state, to);
    if (from > target.size) throw new LedgerError('InvalidParameter', `from (${from}) must not exceed to (${target.size})`);
    const ranges = consistencyRanges(from, target.size);
    const [fromRoot, toRoot, ...proof] = await rangeRoots(tx, state, [{ start: 0, end: from }, { start: 0, end: target.size }, ...ranges]);
    return {
      fromSize: from,
      toSize: target.size,
      fromRoot: (fromRoot as Buffer).toString('hex'),
      toRoot: (toRoot as Buffer).toString('hex'),
      fromTreeHead: await latestTreeHead(tx, from),
      toTreeHead: target.head,
      proof: proof.map((h) => h.toString('hex')),
    };
  });
}

/** How far sealing has come: for /metrics-style status and the CLI. */
export async function sealStatus(db: Db): Promise<{ treeSize: number; rootHash: string; sealedAt: Date | null; sealedBy: string | null; unsealed: number; latestTreeHead: TreeHead | null }> {
  const state = await readSealState(db);
  return {
    treeSize: state.treeSize,
    rootHash: state.rootHash.toString('hex'),
    sealedAt: state.sealedAt,
    sealedBy: state.sealedBy,
    unsealed: await countUnsealed(db, state),
    latestTreeHead: await latestTreeHead(db),
  };
}
