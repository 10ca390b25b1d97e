// Roots of complete subtrees from what the sealer stored: leaf hashes in blocks of 16
// (with each block's root), and the roots of levels 8, 12, 16, … in merkle_nodes. Any
// complete subtree is then at most 8 stored hashes away, so a proof or a historical root
// reads O(log n) rows and hashes O(log n) times, however large the tree.
import type { Executor } from '../schema.ts';
import { merkleRoot, nodeHash, perfectSubtrees, subtreeKey, Frontier, type Subtree } from './merkle.ts';
import { BLOCK_LEAVES, BLOCK_LEVEL, NODE_LEVEL_STEP, readBlocks, readNodes, type SealState } from './store.ts';

/** The leaves of the unfinished block (not in merkle_leaf_blocks yet). */
export interface Tail {
  /** leaf index of the first of them */
  start: number;
  hashes: Buffer[];
}

export const tailOf = (s: SealState): Tail => ({ start: s.treeSize - s.tailHashes.length, hashes: s.tailHashes });

export class IncompleteRecord extends Error {
  constructor(what: string) {
    super(`the Merkle record is incomplete: ${what} is missing`);
    this.name = 'IncompleteRecord';
  }
}

/** Folds 2^k equal-sized subtree roots, left to right, into their parent's root. */
function foldPerfect(roots: Buffer[]): Buffer {
  let level = roots;
  while (level.length > 1) {
    const up: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(nodeHash(level[i] as Buffer, level[i + 1] as Buffer));
    level = up;
  }
  return level[0] as Buffer;
}

/** Stored level a subtree's root is computed from, and the span of children at it. */
function plan(s: Subtree): { base: number; first: number; count: number } {
  if (s.level < BLOCK_LEVEL) return { base: 0, first: s.index * 2 ** s.level, count: 2 ** s.level };
  const base = s.level < 2 * NODE_LEVEL_STEP ? BLOCK_LEVEL : s.level - (s.level % NODE_LEVEL_STEP);
  const count = 2 ** (s.level - base);
  return { base, first: s.index * count, count };
}

/** Roots of complete subtrees (all within the sealed tree), by subtreeKey. */
export async function subtreeRoots(db: Executor, wanted: readonly Subtree[], tail: Tail): Promise<Map<string, Buffer>> {
  const tailBlock = Math.floor(tail.start / BLOCK_LEAVES);
  const plans = wanted.map((s) => ({ s, p: plan(s) }));
  const blockIndexes = new Set<number>();
  const nodeKeys = new Map<string, Subtree>();
  for (const { p } of plans) {
    if (p.base === 0) {
      const b = Math.floor(p.first / BLOCK_LEAVES);
      if (b !== tailBlock || tail.hashes.length === 0) blockIndexes.add(b);
    } else if (p.base === BLOCK_LEVEL) {
      for (let i = 0; i < p.count; i++) blockIndexes.add(p.first + i);
    } else {
      for (let i = 0; i < p.count; i++) nodeKeys.set(`${p.base}:${p.first + i}`, { level: p.base, index: p.first + i });
    }
  }
  const [blocks, nodes] = await Promise.all([readBlocks(db, [...blockIndexes]), readNodes(db, [...nodeKeys.values()])]);
  const block = (b: number) => {
    const found = blocks.get(b);
    if (!found) throw new IncompleteRecord(`leaf block ${b}`);
    return found;
  };
  const out = new Map<string, Buffer>();
  for (const { s, p } of plans) {
    let root: Buffer;
    if (p.base === 0) {
      const b = Math.floor(p.first / BLOCK_LEAVES);
      const leaves =
        b === tailBlock && tail.hashes.length > 0 && !blocks.has(b)
          ? tail.hashes.slice(p.first - tail.start, p.first - tail.start + p.count)
          : block(b).leafHashes.slice(p.first - b * BLOCK_LEAVES, p.first - b * BLOCK_LEAVES + p.count);
      if (leaves.length !== p.count) throw new IncompleteRecord(`leaves ${p.first}…${p.first + p.count - 1}`);
      root = merkleRoot(leaves);
    } else if (p.base === BLOCK_LEVEL) {
      root = foldPerfect(Array.from({ length: p.count }, (_, i) => block(p.first + i).rootHash));
    } else {
      root = foldPerfect(
        Array.from({ length: p.count }, (_, i) => {
          const h = nodes.get(`${p.base}:${p.first + i}`);
          if (!h) throw new IncompleteRecord(`node ${p.base}:${p.first + i}`);
          return h;
        }),
      );
    }
    out.set(subtreeKey(s), root);
  }
  return out;
}

/** The sealer's frontier for the state's tree, from the stored record. */
export async function loadFrontier(db: Executor, state: SealState): Promise<Frontier> {
  const parts = perfectSubtrees(state.treeSize);
  const roots = await subtreeRoots(db, parts, tailOf(state));
  return new Frontier(
    state.treeSize,
    parts.map((p) => roots.get(subtreeKey(p)) as Buffer),
  );
}
