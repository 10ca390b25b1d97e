// A database superuser rewrites the ledger after a tree head was published, each test a
// different way, with `session_replication_role = replica` so the immutability triggers
// stay silent. The standalone verifier, given only the published head(s) and the public
// key, must catch every one and name it; an untouched ledger must verify clean.
import { describe, expect, it } from 'vitest';
import { acceptInvocations } from '../../db/invocations.ts';
import { createFunction } from '../../db/functions.ts';
import { consistencyProof, invocationProof } from '../../db/tamper/proofs.ts';
import { Sealer, signLatestTreeHead } from '../../db/tamper/sealer.ts';
import { signTreeHead } from '../../db/tamper/tree-head.ts';
import { loadPublicKey, verifyInclusionProof } from '../../tools/verify-ledger.mjs';
import { adminQuery } from '../helpers/pg-admin.ts';
import { asSuperuser, kinds, leafOrder, sealAll, sealedLedger, verify, type SealedLedger } from './helpers.ts';

const ledger = (): Promise<SealedLedger> => sealedLedger();

describe('an untouched ledger', () => {
  it('verifies clean against its tree head, and keeps doing so as it grows', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const r = await verify(t, [head], publicKeyPem);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.eventsRead).toBe(head.treeSize);
    expect(r.treeHeads).toEqual([expect.objectContaining({ treeSize: head.treeSize, signature: 'valid', reproduced: true })]);
    // new events after the head are not a problem: they are simply not covered yet
    const fn = await createFunction(t.db, 'later', { runtime: 'MODULE', handler: 'x.mjs' });
    await acceptInvocations(t.db, [{ fn, invocationType: 'async', payload: {} }]);
    const later = await verify(t, [head], publicKeyPem);
    expect(later).toMatchObject({ ok: true, unsealedAfterLargestHead: 1 });
  });

  it('an inclusion proof verifies with only the tree head and the event, in O(log n) hashes', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const [, e] = await leafOrder(t);
    const proof = await invocationProof(t.db, e!.invocationId);
    // what an auditor keeps: the JSON of the proof and of the head; nothing else is consulted
    const kept = JSON.parse(JSON.stringify(proof));
    const r = verifyInclusionProof(kept, JSON.parse(JSON.stringify(head)), loadPublicKey(publicKeyPem));
    expect(r).toEqual({ ok: true, verified: proof.events.length, problems: [] });
    const depth = Math.ceil(Math.log2(head.treeSize));
    for (const p of proof.events) expect(p.auditPath.length).toBeLessThanOrEqual(depth);
    expect(proof.events.map((p) => p.event.seq)).toEqual(proof.events.map((_, i) => i + 1));
    // the same proof with the event changed in any field does not verify
    for (const change of [{ type: 'failed' }, { occurredAt: '2000-01-01T00:00:00.000000Z' }, { data: { forged: true } }, { seq: 9 }]) {
      const bent = { ...kept, events: [{ ...kept.events[0], event: { ...kept.events[0].event, ...change } }] };
      expect(verifyInclusionProof(bent, head, loadPublicKey(publicKeyPem)).ok).toBe(false);
    }
    // and not against a head the key did not sign
    expect(verifyInclusionProof(kept, { ...head, timestamp: head.timestamp + 1 }, loadPublicKey(publicKeyPem)).ok).toBe(false);
  });
});

describe('a superuser edits an event after the head was published', () => {
  it.each([
    ['data', (p: string) => `update ledger.events set data = jsonb_set(data, '{forged}', 'true') where position = ${p}`],
    ['type', (p: string) => `update ledger.events set type = 'succeeded' where position = ${p}`],
    ['occurred_at (by one microsecond)', (p: string) => `update ledger.events set occurred_at = occurred_at + interval '1 microsecond' where position = ${p}`],
  ])('%s: named as an edit of that event', async (_field, edit) => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    const leaf = 123;
    const target = order.find((e, i) => i >= leaf && e.type === 'failed') as (typeof order)[number];
    const index = order.indexOf(target);
    await asSuperuser(t, edit(target.position));
    const r = await verify(t, [head], publicKeyPem);
    expect(r.ok).toBe(false);
    expect(kinds(r)).toEqual(['edited', 'mismatch']);
    const edited = r.problems.find((p) => p.kind === 'edited');
    expect(edited).toMatchObject({ leafIndex: index, position: target.position, invocationId: target.invocationId, seq: target.seq });
    if (_field === 'type') expect(edited?.message).toMatch(/its type was 'failed'/);
  });
});

describe('a superuser rewrites the order or the membership of the ledger', () => {
  it('a deleted event is named by its leaf and position', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    await asSuperuser(t, `delete from ledger.events where position = ${order[200]!.position}`);
    const r = await verify(t, [head], publicKeyPem);
    expect(kinds(r)).toEqual(['deleted', 'mismatch']);
    expect(r.problems.find((p) => p.kind === 'deleted')).toMatchObject({ leafIndex: 200, position: order[200]!.position });
  });

  it('an inserted event (backdated into a sealed transaction) is named', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    const victim = order[50]!;
    const { rows } = await adminQuery(t.ownerUrl, `select max(seq) as s from ledger.events where invocation_id = $1`, [victim.invocationId]);
    const nextSeq = Number(rows[0].s) + 1;
    await asSuperuser(
      t,
      `insert into ledger.events (invocation_id, seq, type, attempt, data, occurred_at, tx_id)
       values ('${victim.invocationId}', ${nextSeq}, 'cancelled', null, '{"reason": "forged"}',
               (select occurred_at from ledger.events where position = ${victim.position}), '${order[60]!.txId}')`,
    );
    const r = await verify(t, [head], publicKeyPem);
    expect(kinds(r)).toEqual(['inserted', 'mismatch']);
    expect(r.problems.find((p) => p.kind === 'inserted')).toMatchObject({ invocationId: victim.invocationId, seq: nextSeq });
  });

  it('two events swapped: each is in the other’s place', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    const [a, b] = [order[100]!, order[400]!];
    expect(a.txId).not.toBe(b.txId);
    // the rows trade their place in the ledger order (position and transaction), content unchanged
    await asSuperuser(
      t,
      `create temp table swap on commit drop as select * from ledger.events where position in (${a.position}, ${b.position});
       delete from ledger.events where position in (${a.position}, ${b.position});
       insert into ledger.events (position, invocation_id, seq, type, attempt, data, occurred_at, tx_id) overriding system value
       select o.position, s.invocation_id, s.seq, s.type, s.attempt, s.data, s.occurred_at, o.tx_id
       from swap s join swap o on o.position <> s.position`,
    );
    const r = await verify(t, [head], publicKeyPem);
    expect(kinds(r)).toEqual(['mismatch', 'swapped']);
    expect(r.problems.find((p) => p.kind === 'swapped')).toMatchObject({ leafIndexes: [100, 400] });
  });

  it('a truncated tail: the last sealed events are gone', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    const gone = order.slice(-7);
    await asSuperuser(t, `delete from ledger.events where position in (${gone.map((e) => e.position).join(',')})`);
    const r = await verify(t, [head], publicKeyPem);
    expect(kinds(r)).toEqual(['mismatch', 'truncated']);
    expect(r.problems.find((p) => p.kind === 'truncated')).toMatchObject({ leafIndex: order.length - 7, count: 7, positions: gone.map((e) => e.position) });
    expect(r.problems.find((p) => p.kind === 'mismatch')?.message).toMatch(new RegExp(`only ${order.length - 7} events`));
  });

  it('a forged tree head (a root the key never signed) is refused, not trusted', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const r = await verify(t, [{ ...head, treeSize: head.treeSize - 1 }], publicKeyPem);
    expect(kinds(r)).toEqual(['signature']);
  });
});

describe('a fork: two auditors are shown two histories', () => {
  it('each head alone looks fine to its holder or shows tampering; together they are named a fork', async () => {
    const { t, key, head: first, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    // history 2: an event rewritten, and the sealer's record rebuilt from scratch to match
    await asSuperuser(
      t,
      `update ledger.events set data = jsonb_set(data, '{forged}', 'true') where position = ${order[30]!.position};
       delete from ledger.merkle_leaf_blocks; delete from ledger.merkle_nodes;
       update ledger.seal_state set tree_size = 0, last_tx_id = '0', last_position = 0, root_hash = sha256(''::bytea),
         tail_positions = '{}', tail_hashes = ''::bytea`,
    );
    const fn = await createFunction(t.db, 'after-fork', { runtime: 'MODULE', handler: 'x.mjs' });
    await acceptInvocations(t.db, [1, 2, 3].map((i) => ({ fn, invocationType: 'async' as const, payload: { i } })));
    await sealAll(t.db, new Sealer(t.db, { sealerId: 'operator' }));
    const second = (await signLatestTreeHead(t.db, key, { wait: true }))!.head;
    expect(second.treeSize).toBe(first.treeSize + 3);

    // auditor 1, holding the first head, sees the ledger no longer matches it; the record
    // was rebuilt too, so the events cannot be named one by one
    const one = await verify(t, [first], publicKeyPem);
    expect(kinds(one)).toEqual(['mismatch', 'unlocated']);
    // auditor 2, holding only the second head, sees nothing wrong: that is what witnesses are for
    expect((await verify(t, [second], publicKeyPem)).ok).toBe(true);
    // with both heads together the equivocation is plain
    const both = await verify(t, [first, second], publicKeyPem);
    expect(kinds(both)).toContain('fork');
    expect(both.problems.find((p) => p.kind === 'fork')).toMatchObject({ treeSizes: [first.treeSize, second.treeSize] });

    // a head of the same size over the other history is a fork by itself
    const { fromRoot } = await consistencyProof(t.db, first.treeSize, second.treeSize);
    const sameSize = signTreeHead({ treeSize: first.treeSize, timestamp: second.timestamp, rootHash: fromRoot }, key);
    const pair = await verify(t, [first, sameSize], publicKeyPem);
    expect(pair.problems.filter((p) => p.kind === 'fork')).toEqual([
      expect.objectContaining({ treeSizes: [first.treeSize, first.treeSize], message: expect.stringMatching(/same size different roots/) }),
    ]);
  });
});

describe('a number a double cannot hold, written by hand', () => {
  it('stops the sealer with the event named, and the verifier reports it', async () => {
    const { t, head, publicKeyPem } = await ledger();
    const order = await leafOrder(t);
    const victim = order.at(-1)!;
    await asSuperuser(
      t,
      `insert into ledger.events (invocation_id, seq, type, data)
       values ('${victim.invocationId}', ${victim.seq + 1}, 'cancelled', '{"reason": "x", "n": 1e400, "m": 12345678901234567890}')`,
    );
    const { rows } = await adminQuery(t.ownerUrl, `select max(position)::text as p from ledger.events`);
    // transactions elsewhere on the server may hold sealing back for a while: seal until it refuses
    const sealer = new Sealer(t.db, { sealerId: 'test' });
    const refusal = await (async () => {
      for (;;) {
        try {
          await sealer.sealPending({ wait: true });
        } catch (e) {
          return e;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    expect(refusal).toMatchObject({ name: 'UnsealableEvent', position: rows[0].p });
    const r = await verify(t, [head], publicKeyPem);
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'inexact-number', position: rows[0].p, message: expect.stringMatching(/12345678901234567890, 10000000000000000000… \(401 digits\)/) })]);
  });
});
