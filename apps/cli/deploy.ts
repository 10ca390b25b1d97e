// `invoke-ledger deploy PATH --name NAME [--handler file.export] [--publish]`: packs a file
// or a directory (with its node_modules) into a deterministic zip, checks it as an upload
// would be checked, stores it in the database under its SHA-256 (docs/code.md) and makes
// it the code of NAME, creating the function or adding a version, with --publish a
// published version too (docs/control-plane.md). One transaction: a refusal stores nothing.
// Unchanged content writes nothing: no package, no version, no change.
import { userInfo } from 'node:os';
import { openDatabase } from '../../db/connection.ts';
import { changeFunction, createManagedFunction, publishVersion, type ChangeContext } from '../../db/control-plane.ts';
import { CODE_LIMITS, packCodePackage, storeCodePackage, whyUnsafePath, type CodeLimits } from '../../db/code/index.ts';
import { LedgerError, isLedgerError } from '../../db/errors.ts';
import { assertFunctionName, getFunction, inTransaction } from '../../db/functions.ts';
import type { Executor } from '../../db/schema.ts';
import { databaseRole } from './config.ts';


interface Output {
  write(s: string): unknown;
}

export interface UploadedPackage {
  sha256: string;
  /** base64, Lambda's `CodeSha256` */
  codeSha256: string;
  zippedSize: number;
  unzippedSize: number;
  fileCount: number;
  /** false when the database held these bytes already */
  created: boolean;
  /** the file --handler resolves to inside the package, when given */
  handlerFile: string | null;
}

export interface PackAndUploadOptions {
  /** Lambda-style `file.export`; checked against the packed files before anything is stored */
  handler?: string;
  limits?: CodeLimits;
  storageLimitBytes?: number;
}

/** Packs `source`, checks the handler (if any) is in it, and stores the package. */
export async function packAndUpload(db: Executor, source: string, options: PackAndUploadOptions = {}): Promise<UploadedPackage> {
  const limits = options.limits ?? CODE_LIMITS;
  const packed = await packCodePackage(source, limits);
  const handlerFile = options.handler === undefined ? null : handlerModuleIn(options.handler, packed.files.map((f) => f.path));
  const stored = await storeCodePackage(db, packed.zip, { limits, ...(options.storageLimitBytes !== undefined ? { storageLimitBytes: options.storageLimitBytes } : {}) });
  return {
    sha256: stored.sha256,
    codeSha256: stored.codeSha256,
    zippedSize: stored.zippedSize,
    unzippedSize: stored.unzippedSize,
    fileCount: stored.fileCount,
    created: stored.created,
    handlerFile,
  };
}

/**
 * The package file a Lambda handler names, as Lambda's Node.js runtime finds it:
 * `src/app.main` is export `main` of `src/app`, tried as is, then `.js`, `.mjs`, `.cjs`;
 * a bare module name may also be a package under node_modules. Then `.ts`, which this
 * server's runtimes load as FUNCTIONS_DIR handlers are (functions/*.ts).
 */
export function handlerModuleIn(handler: string, files: string[]): string {
  const slash = handler.lastIndexOf('/');
  const base = handler.slice(slash + 1);
  const dot = base.indexOf('.');
  if (handler.length > 128 || /\s/.test(handler) || dot <= 0 || dot === base.length - 1) {
    throw new LedgerError('InvalidParameter', `handler ${JSON.stringify(handler)} must be file.export, such as index.handler or src/app.main`);
  }
  const modulePath = handler.slice(0, slash + 1) + base.slice(0, dot);
  const unsafe = whyUnsafePath(modulePath);
  if (unsafe) throw new LedgerError('InvalidParameter', `handler ${JSON.stringify(handler)}: ${unsafe}`);
  const present = new Set(files);
  const tries = ['', '.js', '.mjs', '.cjs', '.ts'].map((ext) => modulePath + ext);
  const found =
    tries.slice(0, 4).find((f) => present.has(f)) ??
    (slash === -1 ? files.find((f) => f.startsWith(`node_modules/${modulePath}/`)) : undefined) ??
    tries.slice(4).find((f) => present.has(f));
  if (found === undefined) {
    throw new LedgerError('InvalidParameter', `handler ${JSON.stringify(handler)}: the package has none of ${tries.slice(1).join(', ')}`);
  }
  return found;
}

export interface DeployOptions {
  name: string;
  handler?: string | undefined;
  publish?: boolean | undefined;
  json?: boolean | undefined;
}

/** What deploy did to the function. */
export interface Registration {
  /** created the function, added a version, or found it running this code already */
  outcome: 'created' | 'updated' | 'unchanged';
  version: number;
  /** the published version, with --publish */
  published: number | null;
}

/** Stores the package and makes it NAME's code, in one transaction. */
export async function deployPackage(
  db: Executor,
  ctx: ChangeContext,
  source: string,
  values: { name: string; handler?: string | undefined; publish?: boolean | undefined },
  options: PackAndUploadOptions = {},
): Promise<UploadedPackage & Registration> {
  assertFunctionName(values.name);
  return inTransaction(db, async (tx) => {
    const existing = await getFunction(tx, values.name);
    const handler = values.handler ?? (existing?.codeSha256 ? (existing.handler ?? undefined) : undefined);
    // packing problems first; everything is rolled back on any refusal below
    const uploaded = await packAndUpload(tx, source, { ...options, ...(handler !== undefined ? { handler } : {}) });
    if (handler === undefined) {
      throw new LedgerError(
        'InvalidParameter',
        existing
          ? `function ${values.name} does not run a code package yet: give its --handler (file.export); nothing was stored`
          : `function ${values.name} does not exist: give its --handler (file.export) to create it; nothing was stored`,
      );
    }
    let registration: Registration;
    if (!existing) {
      const created = await createManagedFunction(tx, ctx, values.name, { runtime: 'MODULE', handler, isolation: 'thread', lambdaRuntime: 'nodejs20.x' }, { sha256: uploaded.sha256 });
      registration = { outcome: 'created', version: created.fn.version, published: null };
    } else {
      const changed = await changeFunction(tx, ctx, values.name, 'code_updated', { handler }, { code: { sha256: uploaded.sha256 } });
      registration = { outcome: changed.changed ? 'updated' : 'unchanged', version: changed.fn.version, published: null };
    }
    if (values.publish) registration.published = (await publishVersion(tx, ctx, values.name)).version;
    return { ...uploaded, handlerFile: uploaded.handlerFile, ...registration };
  });
}

export async function deployCommand(databaseUrl: string, source: string, values: DeployOptions, io: { out?: Output; err?: Output } = {}): Promise<number> {
  const out = io.out ?? process.stdout;
  const err = io.err ?? process.stderr;
  const handle = openDatabase(databaseUrl, { role: databaseRole(), max: 1, applicationName: 'invoke-ledger deploy' });
  try {
    const ctx: ChangeContext = { actor: `cli:${safeUser()}` };
    const d = await deployPackage(handle.db, ctx, source, values);
    if (values.json) {
      out.write(`${JSON.stringify({ name: values.name, handler: values.handler ?? null, ...d, registered: true }, null, 2)}\n`);
      return 0;
    }
    const n = (x: number) => x.toLocaleString('en-US');
    out.write(
      [
        `${d.created ? 'stored' : 'already stored'}: code package for ${values.name}`,
        `  SHA-256:     ${d.sha256}`,
        `  CodeSha256:  ${d.codeSha256}`,
        `  files:       ${n(d.fileCount)}`,
        `  unzipped:    ${n(d.unzippedSize)} bytes`,
        `  zipped:      ${n(d.zippedSize)} bytes (CodeSize)`,
        ...(d.handlerFile ? [`  handler:     ${values.handler ?? '(unchanged)'} (in ${d.handlerFile})`] : []),
        `${values.name}: ${d.outcome === 'created' ? 'created' : d.outcome === 'updated' ? 'new version' : 'unchanged, still'} version ${d.version} ($LATEST)`,
        ...(d.published !== null ? [`published: version ${d.published}`] : []),
        '',
      ].join('\n'),
    );
    return 0;
  } catch (e) {
    if (!isLedgerError(e)) throw e;
    err.write(`deploy: ${e.message}\n`);
    return 1;
  } finally {
    await handle.close();
  }
}

function safeUser(): string {
  try {
    return userInfo().username || 'unknown';
  } catch {
    return 'unknown';
  }
}
