// A sealed, signed ledger for tamper tests, and the superuser who then rewrites it.
import { sql } from 'kysely';
import pg from 'pg';
import { runAuditWorkload } from '../audit/workload.ts';
import { Sealer, signLatestTreeHead } from '../../db/tamper/sealer.ts';
import { generateSigningKey, parseSigningKey, type SigningKey, type TreeHead } from '../../db/tamper/tree-head.ts';
import type { Db } from '../../db/schema.ts';
import { verifyLedger, type LedgerReport, type SignedTreeHead } from '../../tools/verify-ledger.mjs';
import { adminQuery } from '../helpers/pg-admin.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

export interface SealedLedger {
  t: TestDatabase;
  key: SigningKey;
  publicKeyPem: string;
  /** the head published to the witnesses, covering every event */
  head: TreeHead;
}

export const testKey = (): { key: SigningKey; publicKeyPem: string } => {
  const k = generateSigningKey();
  return { key: parseSigningKey(k.privateKeyPem), publicKeyPem: k.publicKeyPem };
};

/**
 * Seals every committed event. Transactions anywhere on the shared server hold sealing
 * back until they end (the xmin rule), so this waits them out.
 */
export async function sealAll(db: Db, sealer = new Sealer(db, { sealerId: 'test' })): Promise<number> {
  const { n } = (await sql<{ n: number }>`select count(*)::int as n from ledger.events`.execute(db)).rows[0]!;
  for (;;) {
    const r = await sealer.sealPending({ wait: true });
    if (r.treeSize >= n) return r.treeSize;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A realistic ledger (about 600 events), sealed, with a signed head over all of it. */
export async function sealedLedger(o: { key?: { key: SigningKey; publicKeyPem: string } } = {}): Promise<SealedLedger> {
  // tampering breaks what the teardown's replay check expects: these databases skip it
  const t = await createTestDatabase({ verify: false });
  await runAuditWorkload(t.db);
  const { key, publicKeyPem } = o.key ?? testKey();
  await sealAll(t.db);
  const signed = await signLatestTreeHead(t.db, key, { wait: true });
  if (!signed) throw new Error('nothing to sign');
  return { t, key, publicKeyPem, head: signed.head };
}

/** Runs SQL as the superuser with the immutability triggers off, in one transaction. */
export async function asSuperuser(t: TestDatabase, statements: string): Promise<void> {
  await adminQuery(t.ownerUrl, `begin; set local session_replication_role = replica; ${statements}; commit;`);
}

export interface LeafRow {
  position: string;
  txId: string;
  invocationId: string;
  seq: number;
  type: string;
}

/** The events in leaf order, as the superuser sees them. */
export async function leafOrder(t: TestDatabase): Promise<LeafRow[]> {
  const { rows } = await adminQuery(
    t.ownerUrl,
    `select e.position::text as p, e.tx_id::text as tx, e.invocation_id::text as inv, e.seq, e.type
     from ledger.events e order by e.tx_id, e.position`,
  );
  return rows.map((r: { p: string; tx: string; inv: string; seq: number; type: string }) => ({ position: r.p, txId: r.tx, invocationId: r.inv, seq: r.seq, type: r.type }));
}

/** The standalone verifier, as an auditor would run it: a plain connection, the heads, the public key. */
export async function verify(t: TestDatabase, heads: (TreeHead | SignedTreeHead)[], publicKeyPem: string): Promise<LedgerReport> {
  const client = new pg.Client({ connectionString: t.ownerUrl });
  await client.connect();
  try {
    return await verifyLedger({ client, treeHeads: heads.map((h, i) => ({ ...h, source: `witness-${i + 1}` })), publicKey: publicKeyPem });
  } finally {
    await client.end();
  }
}

export const kinds = (r: LedgerReport): string[] => r.problems.map((p) => p.kind).sort();
