// Tamper evidence from the shell (docs/tamper-evidence.md), and the composition `start`
// uses: the sealer task of worker processes, on-demand signing for the API.
//   invoke-ledger keys signing [--out FILE] [--force]
//   invoke-ledger seal
//   invoke-ledger tree-head
//   invoke-ledger proof --invocation ID | --position P | --consistency FROM [--to N] [--tree-size N]
//   invoke-ledger verify --tree-head FILE [--tree-head FILE …] --public-key FILE [--json]
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { openDatabase } from '../../db/connection.ts';
import { isLedgerError, LedgerError } from '../../db/errors.ts';
import type { Db } from '../../db/schema.ts';
import { consistencyProof, eventInclusionProof, invocationProof, sealStatus } from '../../db/tamper/proofs.ts';
import { Sealer, signLatestTreeHead } from '../../db/tamper/sealer.ts';
import { generateSigningKey, loadSigningKey, type SigningKey, type TreeHead } from '../../db/tamper/tree-head.ts';
import { main as verifyLedgerMain } from '../../tools/verify-ledger.mjs';
import type { TreeHeadSigner } from '../api/audit-routes.ts';
import { createSealerTask, type SealerTask } from '../worker/sealer.ts';
import { parseWitnesses, publishTreeHead, type Witness } from '../worker/witnesses.ts';
import type { Config } from './config.ts';
import { databaseRole } from './config.ts';

export const TAMPER_USAGE = `  keys signing [--out FILE] [--force]
                                  create the Ed25519 key that signs tree heads; prints the public key
  seal                            seal every committed event now and print how far sealing is
  tree-head                       seal, sign a tree head now, publish it to LEDGER_WITNESSES; prints it
  proof --invocation ID | --position P | --consistency FROM [--to N] [--tree-size N]
                                  inclusion or consistency proof (JSON)
  verify --tree-head FILE --public-key FILE [--json]
                                  check the events against signed tree heads (docs/tamper-evidence.md)
`;

interface Output {
  write(s: string): unknown;
}

export function signingKeyOf(config: Pick<Config, 'LEDGER_SIGNING_KEY' | 'LEDGER_SIGNING_KEY_FILE'>): SigningKey | null {
  try {
    return loadSigningKey({ key: config.LEDGER_SIGNING_KEY, file: config.LEDGER_SIGNING_KEY_FILE });
  } catch (e) {
    throw new Error(`the signing key (LEDGER_SIGNING_KEY / LEDGER_SIGNING_KEY_FILE) cannot be used: ${(e as Error).message}`, { cause: e });
  }
}

export const witnessesOf = (config: Pick<Config, 'LEDGER_WITNESSES'>, stdout?: Output): Witness[] =>
  parseWitnesses(config.LEDGER_WITNESSES, stdout ? { stdout } : {});

/** Seal what is committed, sign a head for it, publish it: what "a tree head now" means. */
export function treeHeadSigner(db: Db, key: SigningKey, witnesses: readonly Witness[], sealerId: string, logger: Logger): TreeHeadSigner {
  const sealer = new Sealer(db, { sealerId });
  return {
    async signNow() {
      await sealer.sealPending({ wait: true });
      const signed = await signLatestTreeHead(db, key, { wait: true });
      if (!signed) throw new LedgerError('NotYetSealed', 'nothing is sealed yet: the ledger has no events');
      if (signed.created) {
        for (const f of await publishTreeHead(witnesses, signed.head)) {
          logger.warn({ witness: f.witness, err: f.error }, 'witness did not take the tree head');
        }
      }
      return signed;
    },
  };
}

/** The sealer task of a worker (or all) process, or null when it is off. */
export function sealerTaskFor(config: Config, db: Db, logger: Logger, registry: Registry, sealerId: string): SealerTask | null {
  const key = signingKeyOf(config);
  const on = config.LEDGER_SEALER === 'on' || (config.LEDGER_SEALER === 'auto' && key !== null);
  if (!on) return null;
  return createSealerTask({
    db,
    logger,
    registry,
    sealerId,
    signingKey: key,
    witnesses: witnessesOf(config),
    sealIntervalMs: config.LEDGER_SEAL_INTERVAL_MS,
    treeHeadIntervalMs: config.LEDGER_TREE_HEAD_INTERVAL_MS,
  });
}

export function keysSigningCommand(argv: string[], out: Output = process.stdout, err: Output = process.stderr): number {
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, force: { type: 'boolean' } }, strict: true });
  const file = values.out ?? 'ledger-signing-key.pem';
  const pubFile = `${file.replace(/\.pem$/, '')}.pub.pem`;
  if (!values.force && (existsSync(file) || existsSync(pubFile))) {
    err.write(`keys signing: ${existsSync(file) ? file : pubFile} exists; pass --force to replace it (heads signed with the old key then need the old public key)\n`);
    return 1;
  }
  const key = generateSigningKey();
  writeFileSync(file, key.privateKeyPem, { mode: 0o600 });
  writeFileSync(pubFile, key.publicKeyPem, { mode: 0o644 });
  out.write(
    [
      `private key: ${file} (keep it secret; start workers with LEDGER_SIGNING_KEY_FILE=${file})`,
      `public key:  ${pubFile} (give it to auditors; key id ${key.keyId})`,
      '',
      key.publicKeyPem.trim(),
      '',
    ].join('\n'),
  );
  return 0;
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

export async function sealCommand(url: string, sealerId: string, out: Output = process.stdout): Promise<number> {
  const handle = openDatabase(url, { role: databaseRole(), max: 2, applicationName: 'invoke-ledger seal' });
  try {
    const r = await new Sealer(handle.db, { sealerId }).sealPending({ wait: true });
    const status = await sealStatus(handle.db);
    out.write(json({ sealedNow: r.sealed, ...status }));
    return 0;
  } finally {
    await handle.close();
  }
}

export async function treeHeadCommand(config: Config, url: string, sealerId: string, logger: Logger, out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  const key = signingKeyOf(config);
  if (!key) {
    err.write('tree-head: no signing key: set LEDGER_SIGNING_KEY_FILE (create one with `invoke-ledger keys signing`)\n');
    return 1;
  }
  const handle = openDatabase(url, { role: databaseRole(), max: 2, applicationName: 'invoke-ledger tree-head' });
  try {
    const { head, created } = await treeHeadSigner(handle.db, key, witnessesOf(config, out), sealerId, logger).signNow();
    out.write(json({ ...head, created } satisfies TreeHead & { created: boolean }));
    return 0;
  } catch (e) {
    if (!isLedgerError(e)) throw e;
    err.write(`tree-head: ${e.message}\n`);
    return 1;
  } finally {
    await handle.close();
  }
}

export async function proofCommand(url: string, argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      invocation: { type: 'string' },
      position: { type: 'string' },
      consistency: { type: 'string' },
      to: { type: 'string' },
      'tree-size': { type: 'string' },
    },
    strict: true,
  });
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    if (!/^[1-9][0-9]{0,15}$/.test(v)) throw new Error(`--${name} must be a positive integer`);
    return Number(v);
  };
  const handle = openDatabase(url, { role: databaseRole(), max: 2, applicationName: 'invoke-ledger proof' });
  try {
    const size = num(values['tree-size'], 'tree-size');
    if (values.invocation) out.write(json(await invocationProof(handle.db, values.invocation, size)));
    else if (values.position) out.write(json(await eventInclusionProof(handle.db, values.position, size)));
    else if (values.consistency) out.write(json(await consistencyProof(handle.db, num(values.consistency, 'consistency') as number, num(values.to, 'to'))));
    else {
      err.write('proof needs --invocation ID, --position P or --consistency FROM\n');
      return 1;
    }
    return 0;
  } catch (e) {
    if (!isLedgerError(e)) throw e;
    err.write(`proof: ${e.message}\n`);
    return 1;
  } finally {
    await handle.close();
  }
}

/** `verify --tree-head …`: the standalone verifier, on this database. */
export function verifyTreeHeadsCommand(url: string, argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  return verifyLedgerMain(['--database-url', url, ...argv], out, err);
}
