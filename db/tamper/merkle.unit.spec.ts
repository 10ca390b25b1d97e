// The Merkle module against RFC 6962's recursive definitions: roots, the frontier,
// inclusion and consistency proofs (generated and verified), and that any change to a
// proof, a leaf or a size makes verification fail.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyRanges,
  EMPTY_ROOT,
  Frontier,
  inclusionRanges,
  leafHash,
  merkleRoot,
  nodeHash,
  rangeRoot,
  splitPoint,
  subtreesOf,
  verifyConsistency,
  verifyInclusion,
  type LeafRange,
  type Subtree,
} from './merkle.ts';

const leaves = (n: number, salt = 0) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${salt}:${i}`)));

/** RFC 6962 PATH(m, D[n]) written exactly as the RFC states it. */
function rfcPath(m: number, d: Buffer[]): Buffer[] {
  const n = d.length;
  if (n <= 1) return [];
  const k = splitPoint(n);
  return m < k ? [...rfcPath(m, d.slice(0, k)), merkleRoot(d.slice(k))] : [...rfcPath(m - k, d.slice(k)), merkleRoot(d.slice(0, k))];
}

/** RFC 6962 SUBPROOF(m, D[n], b). */
function rfcSubproof(m: number, d: Buffer[], b: boolean): Buffer[] {
  const n = d.length;
  if (m === n) return b ? [] : [merkleRoot(d)];
  const k = splitPoint(n);
  return m <= k
    ? [...rfcSubproof(m, d.slice(0, k), b), merkleRoot(d.slice(k))]
    : [...rfcSubproof(m - k, d.slice(k), false), merkleRoot(d.slice(0, k))];
}

/** Roots of complete subtrees straight from the leaves. */
const rootFrom = (d: Buffer[]) => (s: Subtree) => merkleRoot(d.slice(s.index * 2 ** s.level, (s.index + 1) * 2 ** s.level));
const proofOf = (ranges: LeafRange[], d: Buffer[]) => ranges.map((r) => rangeRoot(r, rootFrom(d)));

describe('hashes', () => {
  it('leaf and node hashes are SHA-256 with the 0x00 / 0x01 prefixes', () => {
    const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
    expect(leafHash(Buffer.from('abc'))).toEqual(sha(Buffer.from([0]), Buffer.from('abc')));
    const [a, b] = leaves(2) as [Buffer, Buffer];
    expect(nodeHash(a, b)).toEqual(sha(Buffer.from([1]), a, b));
    expect(EMPTY_ROOT.toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('the empty-leaf tree of RFC 6962 test vectors: MTH({""}) = SHA-256(0x00)', () => {
    expect(merkleRoot([leafHash(Buffer.alloc(0))]).toString('hex')).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });
});

describe('frontier', () => {
  it('its root equals MTH after every append, and it reports each completed subtree once', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), (n) => {
        const d = leaves(n);
        const f = new Frontier();
        const seen = new Map<string, Buffer>();
        d.forEach((h, i) => {
          f.push(h, (s, root) => {
            expect(seen.has(`${s.level}:${s.index}`)).toBe(false);
            seen.set(`${s.level}:${s.index}`, root);
          });
          // every size up to 40, then a sample (MTH from scratch at every size is quadratic)
          if (i < 40 || i % 17 === 0 || i === n - 1) expect(f.root()).toEqual(merkleRoot(d.slice(0, i + 1)));
        });
        for (const [key, root] of seen) {
          const [level, index] = key.split(':').map(Number) as [number, number];
          expect(root).toEqual(rootFrom(d)({ level, index }));
        }
      }),
      { numRuns: 25 },
    );
  });

  it('restarts from the roots of its complete subtrees', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 50 }), (n, more) => {
        const d = leaves(n + more);
        const parts = subtreesOf({ start: 0, end: n });
        const f = new Frontier(n, parts.map(rootFrom(d)));
        for (const h of d.slice(n)) f.push(h);
        expect(f.root()).toEqual(merkleRoot(d));
      }),
    );
  });
});

describe('inclusion proofs', () => {
  it('match RFC 6962 PATH and verify; O(log n) hashes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 260 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n - 1 }))),
        ([n, m]) => {
          const d = leaves(n);
          const proof = proofOf(inclusionRanges(m, n), d);
          expect(proof).toEqual(rfcPath(m, d));
          expect(proof.length).toBeLessThanOrEqual(Math.ceil(Math.log2(n)));
          expect(verifyInclusion(m, n, d[m] as Buffer, proof, merkleRoot(d))).toBe(true);
        },
      ),
    );
  });

  it('fail for another leaf, index, size, root or any changed hash', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 200 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n - 1 }), fc.nat())),
        ([n, m, pick]) => {
          const d = leaves(n);
          const root = merkleRoot(d);
          const proof = proofOf(inclusionRanges(m, n), d);
          const leaf = d[m] as Buffer;
          expect(verifyInclusion(m, n, d[(m + 1) % n] as Buffer, proof, root)).toBe(false);
          expect(verifyInclusion((m + 1) % n, n, leaf, proof, root)).toBe(false);
          expect(verifyInclusion(m, n, leaf, proof, merkleRoot(d.slice(0, n - 1)))).toBe(false);
          expect(verifyInclusion(m, n, leaf, proof.slice(0, -1), root)).toBe(false);
          expect(verifyInclusion(m, n, leaf, [...proof, root], root)).toBe(false);
          const bent = proof.map((h, i) => (i === pick % proof.length ? Buffer.from(h.map((b, j) => (j === 0 ? b ^ 1 : b))) : h));
          expect(verifyInclusion(m, n, leaf, bent, root)).toBe(false);
        },
      ),
    );
  });

  it('a proof in a tree of a billion leaves has 30 hashes', () => {
    expect(inclusionRanges(123_456_789, 1_000_000_000)).toHaveLength(30);
    expect(inclusionRanges(0, 2 ** 40)).toHaveLength(40);
  });
});

describe('consistency proofs', () => {
  it('match RFC 6962 PROOF and verify', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 260 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n))),
        ([m, n]) => {
          const d = leaves(n);
          const proof = proofOf(consistencyRanges(m, n), d);
          expect(proof).toEqual(m === n ? [] : rfcSubproof(m, d, true));
          expect(proof.length).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(n)));
          expect(verifyConsistency(m, n, merkleRoot(d.slice(0, m)), merkleRoot(d), proof)).toBe(true);
        },
      ),
    );
  });

  it('fail for a rewritten history, wrong sizes or a changed hash', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 200 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n - 1 }), fc.constant(n), fc.nat())),
        ([m, n, pick]) => {
          const d = leaves(n);
          const oldRoot = merkleRoot(d.slice(0, m));
          const newRoot = merkleRoot(d);
          const proof = proofOf(consistencyRanges(m, n), d);
          // the first m leaves rewritten: no proof links the old root to the new tree
          const forked = [...leaves(m, 1), ...d.slice(m)];
          expect(verifyConsistency(m, n, oldRoot, merkleRoot(forked), proofOf(consistencyRanges(m, n), forked))).toBe(false);
          expect(verifyConsistency(m, n, oldRoot, merkleRoot(forked), proof)).toBe(false);
          // a proof for n does not link the old root to the tree one leaf later
          expect(verifyConsistency(m, n + 1, oldRoot, merkleRoot(leaves(n + 1)), proof)).toBe(false);
          const bent = proof.map((h, i) => (i === pick % proof.length ? Buffer.from(h.map((b, j) => (j === 31 ? b ^ 0x80 : b))) : h));
          expect(verifyConsistency(m, n, oldRoot, newRoot, bent)).toBe(false);
        },
      ),
    );
  });
});
