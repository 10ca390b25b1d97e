// RFC 6962 / RFC 9162 Merkle trees, pure: hashing, the compact frontier the sealer keeps,
// which subtree roots a proof needs, and proof verification. No database, no I/O: the
// store (./store.ts) supplies subtree roots; tests compare everything with the naive
// recursive definition.
//
// Sizes and indexes are JS numbers (exact up to 2^53 leaves). Bitwise operators are
// 32-bit in JS, so halving is Math.floor(x / 2) and "lowest bit" is x % 2.
import { createHash, hash } from 'node:crypto';

export const HASH_BYTES = 32;

/** SHA-256 of the empty string: the root of the empty tree. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

// crypto.hash (one shot) is two to three times faster than createHash for inputs this
// small, which is most of what sealing costs: one leaf hash and about one node hash per event.
const node = Buffer.alloc(65);
node[0] = 0x01;

/** SHA-256(0x00 || bytes) */
export function leafHash(bytes: Uint8Array): Buffer {
  const input = Buffer.allocUnsafe(bytes.length + 1);
  input[0] = 0x00;
  input.set(bytes, 1);
  return hash('sha256', input, 'buffer');
}

/** SHA-256(0x01 || left || right) */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  node.set(left, 1);
  node.set(right, 33);
  return hash('sha256', node, 'buffer');
}

/** The largest power of two smaller than n (n ≥ 2): RFC 6962's split point k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[0:n]) by the RFC's recursive definition: O(n), for tests and small trees. */
export function merkleRoot(leaves: readonly Uint8Array[]): Buffer {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return Buffer.from(leaves[0] as Uint8Array);
  const k = splitPoint(leaves.length);
  return nodeHash(merkleRoot(leaves.slice(0, k)), merkleRoot(leaves.slice(k)));
}

/** A complete subtree: leaves [index · 2^level, (index + 1) · 2^level). */
export interface Subtree {
  level: number;
  index: number;
}

export const subtreeKey = (s: Subtree): string => `${s.level}:${s.index}`;

/** Leaves [start, end) of the tree: the subtrees whose roots make up a proof. */
export interface LeafRange {
  start: number;
  end: number;
}

/**
 * The complete subtrees that make up [start, end), left to right: one per set bit of
 * end - start, largest first. Every range a proof needs starts at a multiple of the
 * power of two at or above its length, so each of these subtrees is aligned.
 */
export function subtreesOf(range: LeafRange): Subtree[] {
  const out: Subtree[] = [];
  let at = range.start;
  let left = range.end - range.start;
  while (left > 0) {
    let size = 1;
    let level = 0;
    while (size * 2 <= left) {
      size *= 2;
      level++;
    }
    if (at % size !== 0) throw new Error(`range [${range.start}, ${range.end}) is not aligned at ${at}`);
    out.push({ level, index: at / size });
    at += size;
    left -= size;
  }
  return out;
}

/** MTH of a range from its complete subtrees' roots (right to left: H(S1, H(S2, …))). */
export function rangeRoot(range: LeafRange, rootOf: (s: Subtree) => Buffer): Buffer {
  const parts = subtreesOf(range);
  if (parts.length === 0) return EMPTY_ROOT;
  let acc = rootOf(parts[parts.length - 1] as Subtree);
  for (let i = parts.length - 2; i >= 0; i--) acc = nodeHash(rootOf(parts[i] as Subtree), acc);
  return acc;
}

/** RFC 6962 §2.1.1 PATH(m, D[n]) as the ranges whose roots it lists, leaf level first. */
export function inclusionRanges(leafIndex: number, treeSize: number): LeafRange[] {
  if (!(leafIndex >= 0 && leafIndex < treeSize)) throw new RangeError(`leaf ${leafIndex} is not in a tree of ${treeSize}`);
  const out: LeafRange[] = [];
  const walk = (m: number, n: number, offset: number) => {
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, k, offset);
      out.push({ start: offset + k, end: offset + n });
    } else {
      walk(m - k, n - k, offset + k);
      out.push({ start: offset, end: offset + k });
    }
  };
  walk(leafIndex, treeSize, 0);
  return out;
}

/** RFC 6962 §2.1.2 PROOF(m, D[n]) as ranges (0 < m ≤ n; empty when m = n). */
export function consistencyRanges(m: number, n: number): LeafRange[] {
  if (!(m > 0 && m <= n)) throw new RangeError(`no consistency proof from ${m} to ${n}`);
  const out: LeafRange[] = [];
  const sub = (m1: number, n1: number, offset: number, whole: boolean) => {
    if (m1 === n1) {
      if (!whole) out.push({ start: offset, end: offset + n1 });
      return;
    }
    const k = splitPoint(n1);
    if (m1 <= k) {
      sub(m1, k, offset, whole);
      out.push({ start: offset + k, end: offset + n1 });
    } else {
      sub(m1 - k, n1 - k, offset + k, false);
      out.push({ start: offset, end: offset + k });
    }
  };
  if (m < n) sub(m, n, 0, true);
  return out;
}

/** The complete subtrees of a tree of `size` leaves, largest (leftmost) first. */
export function perfectSubtrees(size: number): Subtree[] {
  return subtreesOf({ start: 0, end: size });
}

/**
 * The compact frontier: the roots of the complete subtrees along the right edge (one
 * per set bit of the size). Appending a leaf merges equal-sized neighbours; every
 * subtree completed on the way is reported, which is how the sealer stores them.
 */
export class Frontier {
  private readonly roots: (Buffer | undefined)[] = [];
  private count: number;

  /** `roots` by level, as perfectSubtrees(size) lists them (largest first). */
  constructor(size = 0, roots: readonly Buffer[] = []) {
    const parts = perfectSubtrees(size);
    if (parts.length !== roots.length) throw new Error(`a frontier of ${size} leaves has ${parts.length} roots, not ${roots.length}`);
    parts.forEach((p, i) => (this.roots[p.level] = roots[i]));
    this.count = size;
  }

  get size(): number {
    return this.count;
  }

  /** Appends a leaf hash; `completed` sees every complete subtree this closes, leaf first. */
  push(hash: Buffer, completed?: (s: Subtree, root: Buffer) => void): void {
    let node = hash;
    let level = 0;
    let index = this.count;
    completed?.({ level, index }, node);
    while (this.roots[level]) {
      node = nodeHash(this.roots[level] as Buffer, node);
      this.roots[level] = undefined;
      level++;
      index = Math.floor(index / 2);
      completed?.({ level, index }, node);
    }
    this.roots[level] = node;
    this.count++;
  }

  /** MTH of everything appended so far. */
  root(): Buffer {
    let acc: Buffer | undefined;
    for (let level = 0; level < this.roots.length; level++) {
      const r = this.roots[level];
      if (r) acc = acc ? nodeHash(r, acc) : r;
    }
    return acc ?? EMPTY_ROOT;
  }
}

const isOdd = (x: number) => x % 2 === 1;
const half = (x: number) => Math.floor(x / 2);

/** RFC 9162 §2.1.3.2: does `path` prove leaf `leafIndex` with hash `leaf` in the tree with `root`? */
export function verifyInclusion(leafIndex: number, treeSize: number, leaf: Uint8Array, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!(leafIndex >= 0 && leafIndex < treeSize)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of path) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!(isOdd(fn) || fn === 0)) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: is the tree (n, newRoot) an extension of (m, oldRoot)? */
export function verifyConsistency(m: number, n: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!(m > 0 && m <= n)) return false;
  if (m === n) return proof.length === 0 && Buffer.from(oldRoot).equals(newRoot);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!(isOdd(fn) || fn === 0)) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

function isPowerOfTwo(x: number): boolean {
  let v = x;
  while (v > 1 && v % 2 === 0) v /= 2;
  return v === 1;
}
