// One invocation's inclusion proof (docs/tamper-evidence.md): every event of it proven to
// be in the latest signed tree, each audit path checked here against the tree's root, with
// the leaf hash computed again from the event as served, so the page says whether the
// proof holds rather than repeating what the server claims. The head's signature needs the
// public key, which only the auditor holds: tools/verify-ledger.mjs checks it.
import { eventLeafHash, type SealedEvent } from '../../../db/tamper/leaf.ts';
import { verifyInclusion } from '../../../db/tamper/merkle.ts';
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count } from '../views/format.ts';
import { ErrorNote, Layout, NotAllowed, Time } from '../views/ui.tsx';

interface ProofData {
  invocationId: string;
  treeSize: number;
  rootHash: string;
  treeHead: { treeSize: number; time: string; rootHash: string; keyId: string } | null;
  events: { position: string; leafIndex: number; event: SealedEvent; leafHash: string; auditPath: string[] }[];
  notCovered: { position: string; seq: number }[];
}

const PROOF_QUERY = /* GraphQL */ `
  query ConsoleInvocationProof($id: ID!) {
    invocationProof(id: $id) {
      invocationId treeSize rootHash
      treeHead { treeSize time rootHash keyId }
      events { position leafIndex event { invocationId seq type attempt occurredAt data } leafHash auditPath }
      notCovered { position seq }
    }
  }
`;

/** Whether an event's proof holds: its leaf hashed again from the event, its path leading to the root. */
export function proofHolds(p: ProofData['events'][number], treeSize: number, rootHash: string): boolean {
  const leaf = eventLeafHash(p.event);
  if (leaf.toString('hex') !== p.leafHash) return false;
  return verifyInclusion(p.leafIndex, treeSize, leaf, p.auditPath.map((h) => Buffer.from(h, 'hex')), Buffer.from(rootHash, 'hex'));
}

export async function proofPage(ctx: PageContext, id: string) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Inclusion proof" nav="invocations">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  let proof: ProofData | null = null;
  let failure: unknown = null;
  try {
    proof = (await ctx.gql<{ invocationProof: ProofData }>(PROOF_QUERY, { id })).invocationProof;
  } catch (e) {
    failure = e;
  }
  const back = (
    <p>
      <a href={`/console/invocations/${encodeURIComponent(id)}`}>Back to the invocation</a>
    </p>
  );
  if (!proof) {
    return (
      <Layout ctx={ctx} title="Inclusion proof" nav="invocations">
        <ErrorNote error={failure} what="the inclusion proof" />
        {back}
      </Layout>
    );
  }
  const p = proof;
  const checks = p.events.map((e) => proofHolds(e, p.treeSize, p.rootHash));
  const signedRoot = p.treeHead !== null && p.treeHead.rootHash === p.rootHash && p.treeHead.treeSize === p.treeSize;
  const all = checks.every(Boolean) && signedRoot;
  return (
    <Layout ctx={ctx} title={`Inclusion proof of ${p.invocationId}`} nav="invocations">
      {back}
      <div class={`flash ${all ? 'flash-ok' : 'flash-error'}`} role="status" id="proof-verdict">
        <p>
          {all
            ? `Every one of its ${count(p.events.length)} sealed events is in the signed tree of ${count(p.treeSize)} events: each proof checked here.`
            : `The proof does not hold: ${checks.filter((c) => !c).length} of ${p.events.length} event proofs fail${signedRoot ? '' : ', and the root is not the signed head’s'}.`}
          {p.notCovered.length ? ` ${count(p.notCovered.length)} later events are not in that tree yet.` : ''}
        </p>
      </div>
      <dl class="facts">
        <div>
          <dt>Tree size</dt>
          <dd>{count(p.treeSize)}</dd>
        </div>
        <div>
          <dt>Root (SHA-256)</dt>
          <dd class="mono">{p.rootHash}</dd>
        </div>
        <div>
          <dt>Signed</dt>
          <dd>{p.treeHead ? <Time at={p.treeHead.time} /> : 'no head of this size'}</dd>
        </div>
        <div>
          <dt>Signing key id</dt>
          <dd class="mono">{p.treeHead?.keyId ?? '—'}</dd>
        </div>
      </dl>
      <div class="table-wrap" tabindex={0} role="region" aria-label="Event proofs">
        <table class="list">
          <caption class="sr-only">Each event's leaf and whether its audit path leads to the root</caption>
          <thead>
            <tr>
              <th scope="col" class="num">
                Seq
              </th>
              <th scope="col">Event</th>
              <th scope="col" class="num">
                Leaf
              </th>
              <th scope="col" class="num">
                Path
              </th>
              <th scope="col">Proof</th>
            </tr>
          </thead>
          <tbody>
            {p.events.map((e, i) => (
              <tr data-seq={String(e.event.seq)}>
                <td class="num">{e.event.seq}</td>
                <td>
                  {e.event.type} <span class="muted small">{e.event.occurredAt}</span>
                </td>
                <td class="num">{count(e.leafIndex)}</td>
                <td class="num">{e.auditPath.length} hashes</td>
                <td>{checks[i] ? 'holds' : 'FAILS'}</td>
              </tr>
            ))}
            {p.notCovered.map((e) => (
              <tr data-seq={String(e.seq)}>
                <td class="num">{e.seq}</td>
                <td colspan={4} class="muted">
                  not sealed into this tree yet
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="hint">
        The head's signature is checked with the public key, which this server does not hold: <code>node tools/verify-ledger.mjs</code> (docs/tamper-evidence.md).
      </p>
    </Layout>
  );
}
