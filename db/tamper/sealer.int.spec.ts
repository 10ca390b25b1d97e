// The sealer against a real ledger: the tree it builds is the RFC 6962 tree of every
// event in (tx_id, position) order, whatever the batch sizes, restarts or competing
// sealers; events of open transactions wait, and late commits are not skipped; proofs
// from the stored record verify and have O(log n) hashes.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFunction, type FunctionVersion } from '../functions.ts';
import { acceptInvocations } from '../invocations.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { runAuditWorkload } from '../../test/audit/workload.ts';
import { eventLeafHash } from './leaf.ts';
import { merkleRoot, verifyConsistency, verifyInclusion } from './merkle.ts';
import { consistencyProof, eventInclusionProof, invocationProof } from './proofs.ts';
import { Sealer, signLatestTreeHead } from './sealer.ts';
import { leafIndexesOf, readSealState } from './store.ts';
import { generateSigningKey, parsePublicKey, parseSigningKey, verifyTreeHeadSignature } from './tree-head.ts';

let t: TestDatabase;
let fn: FunctionVersion;

beforeAll(async () => {
  t = await createTestDatabase();
  fn = await createFunction(t.db, 'sealed', { runtime: 'MODULE', handler: 'noop.mjs' });
  await runAuditWorkload(t.db);
});

afterAll(async () => {});

/** Every event's leaf hash in leaf order, read straight from ledger.events. */
async function expectedLeaves(db = t.db): Promise<{ positions: string[]; hashes: Buffer[] }> {
  const { rows } = await sql<{ position: string; invocation_id: string; seq: number; type: string; attempt: number | null; occurred_at: string; data: unknown }>`
    select position::text, invocation_id::text, seq, type, attempt,
           to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as occurred_at, data
    from ledger.events e order by e.tx_id, e.position`.execute(db);
  return {
    positions: rows.map((r) => r.position),
    hashes: rows.map((r) => eventLeafHash({ invocationId: r.invocation_id, seq: r.seq, type: r.type, attempt: r.attempt, occurredAt: r.occurred_at, data: r.data })),
  };
}

/**
 * Seals until every event committed so far is in the tree. Transactions anywhere on the
 * server (other test files share it) hold sealing back until they end: wait them out.
 */
async function sealAll(sealer: Sealer, o: { wait?: boolean } = { wait: true }): Promise<number> {
  const { n } = (await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(t.db)).rows[0]!;
  for (;;) {
    const r = await sealer.sealPending(o);
    if (r.locked && r.treeSize >= n) {
      await sealer.release(); // the next test's sealer need not wait for this lease to run out
      return r.treeSize;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const accept = (n: number) =>
  acceptInvocations(
    t.db,
    Array.from({ length: n }, (_, i) => ({ fn, invocationType: 'async' as const, payload: { i, text: 'é\u2028😀', big: 2 ** 53 - 1, tiny: 1e-7 } })),
  );

describe('sealing', () => {
  it('builds the RFC 6962 tree of every event in (tx_id, position) order, across blocks, nodes and transactions', async () => {
    // small batches and transactions: blocks of 16, nodes of 256, and the tail all cross boundaries
    const sealer = new Sealer(t.db, { sealerId: 'test-a', batchSize: 7, maxEventsPerTransaction: 37 });
    await sealAll(sealer);
    const expected = await expectedLeaves();
    expect(expected.hashes.length).toBeGreaterThan(300);
    const state = await readSealState(t.db);
    expect(state.treeSize).toBe(expected.hashes.length);
    expect(state.rootHash).toEqual(merkleRoot(expected.hashes));
    expect(state.sealedBy).toBe('test-a');
    expect(state.tailHashes).toHaveLength(expected.hashes.length % 16);
    // nothing new: nothing sealed, nothing written
    expect(await sealer.sealPending()).toMatchObject({ sealed: 0, treeSize: expected.hashes.length });
    await sealer.release();
    const indexes = await leafIndexesOf(t.db, expected.positions);
    expect(expected.positions.map((p) => indexes.get(p))).toEqual(expected.positions.map((_, i) => i));
  });

  it('a new sealer (a restart) carries on from the stored record; two at once never seal an event twice', async () => {
    await accept(700);
    const first = new Sealer(t.db, { sealerId: 'test-b', batchSize: 50, maxEventsPerTransaction: 120 });
    expect((await first.sealOnce()).locked).toBe(true);
    const other = t.open({ max: 4 });
    const second = new Sealer(other.db, { sealerId: 'test-c', batchSize: 64, maxEventsPerTransaction: 100 });
    // one lease: the second skips its turn until the first hands over
    expect(await second.sealOnce()).toMatchObject({ locked: false, sealed: 0 });
    await first.release();
    expect(await second.sealOnce()).toMatchObject({ locked: true });
    expect(await first.sealOnce()).toMatchObject({ locked: false });
    // on demand (wait) both write, and the write's check keeps them from sealing anything twice
    // both race while more events arrive
    await Promise.all([first.sealPending({ wait: true }), second.sealPending({ wait: true }), accept(90)]);
    await sealAll(first, { wait: true });
    await second.release();
    const expected = await expectedLeaves();
    const state = await readSealState(t.db);
    expect(state.treeSize).toBe(expected.hashes.length);
    expect(state.rootHash).toEqual(merkleRoot(expected.hashes));
    const { rows } = await sql<{ n: number; distinct: number }>`
      select count(*)::int as n, count(distinct position)::int as distinct from audit.merkle_leaves`.execute(t.db);
    expect(rows[0]).toEqual({ n: expected.hashes.length, distinct: expected.hashes.length });
  });

  it('waits for open transactions, and orders a late commit by its transaction, not its position', async () => {
    const sealer = new Sealer(t.db, { sealerId: 'test-d' });
    await sealAll(sealer);
    const before = (await readSealState(t.db)).treeSize;
    const other = t.open({ max: 1 });
    let tookId!: () => void;
    const idTaken = new Promise<void>((r) => (tookId = r));
    let lateCommitted!: () => void;
    const lateDone = new Promise<void>((r) => (lateCommitted = r));
    // an early transaction takes its id first, but appends only after a later one committed
    const early = other.db.transaction().execute(async (tx) => {
      await sql`select pg_current_xact_id()`.execute(tx);
      tookId();
      await lateDone;
      const [a] = await acceptInvocations(tx, [{ fn, invocationType: 'async', payload: { early: true } }]);
      // held back while this transaction is open, though the later one has committed
      expect((await sealer.sealPending({ wait: true })).treeSize).toBe(before);
      return a!.invocationId;
    });
    await idTaken;
    const [late] = await accept(1);
    lateCommitted();
    const earlyId = await early;
    const [earlyPosition] = await positionsOf(earlyId);
    const [latePosition] = await positionsOf(late!.invocationId);
    expect(BigInt(earlyPosition!)).toBeGreaterThan(BigInt(latePosition!));
    expect(await sealAll(sealer)).toBe(before + 2);
    const indexes = await leafIndexesOf(t.db, [earlyPosition!, latePosition!]);
    // the early transaction's event has the larger position and the smaller leaf index
    expect(indexes.get(earlyPosition!)).toBe(before);
    expect(indexes.get(latePosition!)).toBe(before + 1);
  });
});

async function positionsOf(invocationId: string): Promise<string[]> {
  const { rows } = await sql<{ position: string }>`
    select position::text from ledger.events where invocation_id = ${invocationId}::uuid order by seq`.execute(t.db);
  return rows.map((r) => r.position);
}

describe('proofs from the stored record', () => {
  it('every event of an invocation is proven in a signed head with ⌈log2 n⌉ hashes or fewer', async () => {
    const key = parseSigningKey(generateSigningKey().privateKeyPem);
    await sealAll(new Sealer(t.db, { sealerId: 'test-e' }));
    const signed = await signLatestTreeHead(t.db, key, { wait: true });
    expect(signed?.created).toBe(true);
    const head = signed!.head;
    expect(verifyTreeHeadSignature(head, key.publicKey)).toBe(true);
    expect(verifyTreeHeadSignature({ ...head, treeSize: head.treeSize - 1 }, key.publicKey)).toBe(false);
    expect(verifyTreeHeadSignature(head, parsePublicKey(generateSigningKey().publicKeyPem))).toBe(false);
    // the same tree again: the same head, not a new one
    expect(await signLatestTreeHead(t.db, key, { wait: true })).toEqual({ head, created: false });

    const { rows } = await sql<{ id: string }>`select id::text from ledger.invocations order by accepted_at limit 25`.execute(t.db);
    const depth = Math.ceil(Math.log2(head.treeSize));
    for (const { id } of rows) {
      const proof = await invocationProof(t.db, id);
      expect(proof.treeHead).toEqual(head);
      expect(proof.notCovered).toEqual([]);
      for (const p of proof.events) {
        expect(p.auditPath.length).toBeLessThanOrEqual(depth);
        expect(p.auditPath.length).toBeGreaterThanOrEqual(depth - 1);
        const ok = verifyInclusion(p.leafIndex, head.treeSize, Buffer.from(p.leafHash, 'hex'), p.auditPath.map((h) => Buffer.from(h, 'hex')), Buffer.from(head.rootHash, 'hex'));
        expect(ok).toBe(true);
        expect(eventLeafHash(p.event).toString('hex')).toBe(p.leafHash);
      }
    }
  });

  it('inclusion in any sealed size, and consistency between any two sizes', async () => {
    const expected = await expectedLeaves();
    const n = expected.hashes.length;
    for (const size of [1, 2, 15, 16, 17, 255, 256, 257, 300, n - 1, n]) {
      const root = merkleRoot(expected.hashes.slice(0, size));
      for (const leaf of [0, Math.floor(size / 2), size - 1]) {
        const p = await eventInclusionProof(t.db, expected.positions[leaf]!, size);
        expect(p.rootHash).toBe(root.toString('hex'));
        expect(p.leafIndex).toBe(leaf);
        expect(verifyInclusion(leaf, size, expected.hashes[leaf]!, p.auditPath.map((h) => Buffer.from(h, 'hex')), root)).toBe(true);
      }
      for (const from of [1, 16, Math.max(1, size - 1), size]) {
        if (from > size) continue;
        const c = await consistencyProof(t.db, from, size);
        expect(c.fromRoot).toBe(merkleRoot(expected.hashes.slice(0, from)).toString('hex'));
        expect(verifyConsistency(from, size, Buffer.from(c.fromRoot, 'hex'), root, c.proof.map((h) => Buffer.from(h, 'hex')))).toBe(true);
      }
    }
  });

  it('refuses what it cannot prove, with typed errors', async () => {
    const { treeSize } = await readSealState(t.db);
    await expect(eventInclusionProof(t.db, '1', treeSize + 1)).rejects.toMatchObject({ code: 'NotYetSealed' });
    await expect(eventInclusionProof(t.db, '99999999', treeSize)).rejects.toMatchObject({ code: 'EventNotFound' });
    await expect(eventInclusionProof(t.db, 'x', treeSize)).rejects.toMatchObject({ code: 'InvalidParameter' });
    await expect(invocationProof(t.db, '00000000-0000-0000-0000-000000000000')).rejects.toMatchObject({ code: 'InvocationNotFound' });
    await expect(consistencyProof(t.db, 1, treeSize + 1)).rejects.toMatchObject({ code: 'NotYetSealed' });
    await expect(consistencyProof(t.db, treeSize, treeSize - 1)).rejects.toMatchObject({ code: 'InvalidParameter' });
  });
});
