// Tamper evidence over HTTP (docs/tamper-evidence.md), all with the `audit` scope:
//   GET  /audit/tree-heads[?limit=N]           signed tree heads, newest first
//   GET  /audit/tree-heads/latest              the newest one
//   POST /audit/tree-heads                     seal what is committed and sign a head now (needs a signing key)
//   GET  /audit/seal                           how far sealing has come
//   GET  /audit/invocations/:id/proof[?treeSize=N]   inclusion of every event of an invocation
//   GET  /audit/events/:position/proof[?treeSize=N]  inclusion of one event
//   GET  /audit/consistency?from=M[&to=N]      consistency between two tree sizes
// Without treeSize (or `to`), proofs are for the latest signed tree head.
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import type { ReplicaReads } from '../../db/replica.ts';
import type { Db } from '../../db/schema.ts';
import { consistencyProof, eventInclusionProof, invocationProof, sealStatus } from '../../db/tamper/proofs.ts';
import { latestTreeHead, listTreeHeads } from '../../db/tamper/store.ts';
import type { TreeHead } from '../../db/tamper/tree-head.ts';
import { nativeAnswer } from './native-routes.ts';

/** Signing on demand, composed by the CLI: seal, sign, publish to the witnesses. */
export interface TreeHeadSigner {
  signNow(): Promise<{ head: TreeHead; created: boolean }>;
}

function size(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  if (v === undefined || v === '') return undefined;
  if (!/^[1-9][0-9]{0,15}$/.test(v)) throw new LedgerError('InvalidParameter', `${name} must be a positive integer`);
  return Number(v);
}

export function auditRoutes(primary: Db, logger: Logger, signer?: TreeHeadSigner, reads?: ReplicaReads): Hono {
  const app = new Hono();
  // GETs read from the replica when there is one, once it has caught up with the primary (db/replica.ts)
  const readable = async (): Promise<Db> => (reads ? (await reads.fresh()).db : primary);

  app.get('/audit/tree-heads', (c) =>
    nativeAnswer(c, logger, async () => {
      const limit = size(c, 'limit') ?? 100;
      if (limit > 1000) throw new LedgerError('InvalidParameter', 'limit must be at most 1000');
      return c.json({ treeHeads: await listTreeHeads(await readable(), limit) });
    }),
  );

  app.get('/audit/tree-heads/latest', (c) =>
    nativeAnswer(c, logger, async () => {
      const head = await latestTreeHead(await readable());
      if (!head) throw new LedgerError('TreeHeadNotFound', 'no tree head has been signed yet');
      return c.json(head);
    }),
  );

  app.post('/audit/tree-heads', (c) =>
    nativeAnswer(c, logger, async () => {
      if (!signer) {
        throw new LedgerError(
          'ServiceUnavailable',
          'this process has no signing key (LEDGER_SIGNING_KEY or LEDGER_SIGNING_KEY_FILE); tree heads are signed by the sealer or `invoke-ledger tree-head`',
        );
      }
      const { head, created } = await signer.signNow();
      return c.json(head, created ? 201 : 200);
    }),
  );

  app.get('/audit/seal', (c) => nativeAnswer(c, logger, async () => c.json(await sealStatus(await readable()))));

  app.get('/audit/invocations/:id/proof', (c) =>
    nativeAnswer(c, logger, async () => c.json(await invocationProof(await readable(), c.req.param('id'), size(c, 'treeSize')))),
  );

  app.get('/audit/events/:position/proof', (c) =>
    nativeAnswer(c, logger, async () => c.json(await eventInclusionProof(await readable(), c.req.param('position'), size(c, 'treeSize')))),
  );

  app.get('/audit/consistency', (c) =>
    nativeAnswer(c, logger, async () => {
      const from = size(c, 'from');
      if (from === undefined) throw new LedgerError('InvalidParameter', 'from (the older tree size) is required');
      return c.json(await consistencyProof(await readable(), from, size(c, 'to')));
    }),
  );

  return app;
}
