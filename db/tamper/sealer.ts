// The sealer: appends every event to the Merkle tree in leaf order, (tx_id, position),
// in batches, and signs tree heads.
//
// One sealer at a time, without holding a transaction open while it works: a process
// takes a lease on the seal state (a plain UPDATE, so it works behind PgBouncer in
// transaction mode), reads and hashes a batch in autocommit statements, and writes it in
// a short transaction that locks the state row and checks the tree is still the size it
// started from. A long transaction would hold back the server's xmin, and with it the
// vacuuming of the hot queue table the workers claim from. A sealer whose lease ran out
// (a paused process) or that raced an on-demand seal writes nothing and starts again
// from the stored record. Progress is committed with the leaves, so a sealer killed at
// any point leaves a consistent record and the next one carries on.
import type { Db } from '../schema.ts';
import { LeafRowError, UnsealableEvent } from './leaf.ts';
import { inlineHasher, type LeafHasher } from './leaf-hasher.ts';
import type { Frontier } from './merkle.ts';
import {
  acquireSealLease,
  databaseNowMs,
  insertTreeHead,
  latestTreeHead,
  lockSealState,
  readEventsToSeal,
  readSealState,
  releaseSealLease,
  writeSealed,
  BLOCK_LEVEL,
  NODE_LEVEL_STEP,
  type SealedBlock,
  type SealState,
  type StoredNode,
} from './store.ts';
import { loadFrontier } from './subtrees.ts';
import { signTreeHead, type SigningKey, type TreeHead } from './tree-head.ts';

export interface SealerOptions {
  /** who seals, kept in seal_state.sealed_by and lease_holder */
  sealerId: string;
  /** events read (and hashed) per statement (default 2,000) */
  batchSize?: number;
  /** events per write transaction (default 10,000) */
  maxEventsPerTransaction?: number;
  /** how long the lease lasts without renewal (default 30 s); renewed every round */
  leaseMs?: number;
  /** where leaves are hashed (default inline; worker processes use a thread: ./leaf-hasher.ts) */
  hasher?: LeafHasher;
}

export interface SealResult {
  /** false: another process holds the lease; nothing was done */
  locked: boolean;
  sealed: number;
  treeSize: number;
  rootHash: Buffer | null;
}

export class SealRecordMismatch extends Error {
  constructor(treeSize: number) {
    super(`the stored Merkle record does not reproduce the sealed root at size ${treeSize}: it was altered outside the sealer`);
    this.name = 'SealRecordMismatch';
  }
}

export class Sealer {
  /** the frontier as of this process's last commit, while it still matches the database */
  private frontier: Frontier | null = null;
  private readonly batchSize: number;
  private readonly maxPerTx: number;
  private readonly leaseMs: number;

  constructor(
    private readonly db: Db,
    private readonly o: SealerOptions,
  ) {
    this.batchSize = o.batchSize ?? 2_000;
    this.maxPerTx = o.maxEventsPerTransaction ?? 10_000;
    this.leaseMs = o.leaseMs ?? 30_000;
  }

  /**
   * Seals up to maxEventsPerTransaction events. `wait`: seal even while another process
   * holds the lease (on-demand signing); the write's check keeps the two apart.
   */
  async sealOnce(o: { wait?: boolean } = {}): Promise<SealResult & { conflict?: boolean }> {
    const state = o.wait ? await readSealState(this.db) : await acquireSealLease(this.db, this.o.sealerId, this.leaseMs);
    if (!state) return { locked: false, sealed: 0, treeSize: 0, rootHash: null };
    let f = this.frontier;
    // another process sealed since, or this one has never loaded the record
    if (!f || f.size !== state.treeSize || !f.root().equals(state.rootHash)) {
      this.frontier = null;
      f = await loadFrontier(this.db, state);
      if (!f.root().equals(state.rootHash)) throw new SealRecordMismatch(state.treeSize);
    }
    // f changes in place below: until the write commits it is nobody's
    this.frontier = null;
    const built = await this.build(f, state);
    if (built.sealed === 0) {
      this.frontier = f;
      return { locked: true, sealed: 0, treeSize: f.size, rootHash: state.rootHash };
    }
    const rootHash = f.root();
    const written = await this.db.transaction().execute(async (tx) => {
      const now = await lockSealState(tx, { wait: true });
      if (!now || now.treeSize !== state.treeSize || !now.rootHash.equals(state.rootHash)) return false;
      await writeSealed(tx, {
        blocks: built.blocks,
        nodes: built.nodes,
        state: { ...built.state, treeSize: f.size, rootHash, sealedBy: this.o.sealerId },
      });
      return true;
    });
    if (!written) return { locked: true, sealed: 0, treeSize: state.treeSize, rootHash: state.rootHash, conflict: true };
    this.frontier = f;
    return { locked: true, sealed: built.sealed, treeSize: f.size, rootHash };
  }

  /** Reads and hashes the next events onto `f`, collecting what completes on the way. */
  private async build(f: Frontier, state: SealState) {
    const tailPositions = [...state.tailPositions];
    const tailHashes = [...state.tailHashes];
    const blocks: SealedBlock[] = [];
    const nodes: StoredNode[] = [];
    let last = { txId: state.lastTxId, position: state.lastPosition };
    let sealed = 0;
    while (sealed < this.maxPerTx) {
      const limit = Math.min(this.batchSize, this.maxPerTx - sealed);
      const events = await readEventsToSeal(this.db, last, limit);
      let hashes: Buffer[];
      try {
        hashes = await (this.o.hasher ?? inlineHasher).hash(events.map((e) => e.leaf));
      } catch (err) {
        if (!(err instanceof LeafRowError)) throw err;
        throw new UnsealableEvent(events[err.row]?.position ?? '?', err.message);
      }
      for (const [i, e] of events.entries()) {
        tailPositions.push(e.position);
        tailHashes.push(hashes[i] as Buffer);
        f.push(hashes[i] as Buffer, (s, root) => {
          if (s.level === BLOCK_LEVEL) {
            blocks.push({
              blockIndex: s.index,
              lastTxId: e.txId,
              lastPosition: e.position,
              positions: tailPositions.splice(0),
              leafHashes: tailHashes.splice(0),
              rootHash: root,
            });
          } else if (s.level >= 2 * NODE_LEVEL_STEP && s.level % NODE_LEVEL_STEP === 0) {
            nodes.push({ level: s.level, index: s.index, hash: root });
          }
        });
        last = { txId: e.txId, position: e.position };
      }
      sealed += events.length;
      if (events.length < limit) break;
    }
    return { sealed, blocks, nodes, state: { lastTxId: last.txId, lastPosition: last.position, tailPositions, tailHashes } };
  }

  /** Seals until nothing committed is left (or another process holds the lease). */
  async sealPending(o: { wait?: boolean } = {}): Promise<SealResult> {
    let total = 0;
    for (;;) {
      const r = await this.sealOnce(o);
      total += r.sealed;
      if (r.conflict) continue; // someone else sealed meanwhile: carry on from their record
      if (!r.locked || r.sealed < this.maxPerTx) return { locked: r.locked, sealed: total, treeSize: r.treeSize, rootHash: r.rootHash };
    }
  }

  /** Hands the lease over (at shutdown), so another process carries on at once. */
  async release(): Promise<void> {
    await releaseSealLease(this.db, this.o.sealerId);
  }
}

export interface SignOptions {
  /** queue for the seal state lock instead of skipping when another process holds it */
  wait: boolean;
  /** do not sign again before this long after the last head (periodic signing) */
  minIntervalMs?: number;
}

/**
 * Signs a tree head for everything sealed, under the seal state's row lock (so heads
 * are signed in tree order, never between a sealer's check and its write). Returns the latest head unchanged when it already covers the
 * whole tree, null when the lock is held elsewhere, the tree is empty or the interval
 * has not passed.
 */
export async function signLatestTreeHead(db: Db, key: SigningKey, o: SignOptions): Promise<{ head: TreeHead; created: boolean } | null> {
  return db.transaction().execute(async (tx) => {
    const state = await lockSealState(tx, { wait: o.wait });
    if (!state || state.treeSize === 0) return null;
    const latest = await latestTreeHead(tx);
    const rootHash = state.rootHash.toString('hex');
    if (latest && latest.treeSize === state.treeSize && latest.rootHash === rootHash && latest.keyId === key.keyId) {
      return { head: latest, created: false };
    }
    const now = await databaseNowMs(tx);
    if (o.minIntervalMs !== undefined && latest && now - latest.timestamp < o.minIntervalMs) return null;
    // heads never go back in time, even if the database's clock does
    const head = signTreeHead({ treeSize: state.treeSize, timestamp: Math.max(now, latest?.timestamp ?? 0), rootHash }, key);
    await insertTreeHead(tx, head);
    return { head, created: true };
  });
}
