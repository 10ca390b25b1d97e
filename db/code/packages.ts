// Code packages in PostgreSQL (`ledger.code_packages`, migration 0013): store, load,
// exists, info, stats. A package is checked completely before the first statement runs,
// so a refused zip writes nothing; the table refuses UPDATE, DELETE and TRUNCATE, and
// its own CHECK makes the primary key the SHA-256 of the bytes (docs/code.md).
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { LedgerError } from '../errors.ts';
import type { Executor } from '../schema.ts';
import { assertSha256, codeSha256Of } from './hash.ts';
import { inspectCodePackage, type CodePackageManifest } from './inspect.ts';
import { CODE_LIMITS, DEFAULT_CODE_STORAGE_BYTES, type CodeLimits } from './limits.ts';

export interface CodePackageInfo {
  /** lowercase hex: the package's name */
  sha256: string;
  /** base64 of the same digest: Lambda's `CodeSha256` */
  codeSha256: string;
  /** Lambda's `CodeSize` */
  zippedSize: number;
  unzippedSize: number;
  fileCount: number;
  createdAt: Date;
}

export interface StoredCodePackage extends CodePackageInfo {
  /** false when a package with these bytes was stored already (nothing written) */
  created: boolean;
}

export interface StoreCodePackageOptions {
  limits?: CodeLimits;
  /** zipped bytes all packages may take together (Lambda's code storage); default 75 GiB */
  storageLimitBytes?: number;
}

export interface CodeStorageStats {
  packages: number;
  /** what counts against the code storage limit (Lambda's `TotalCodeSize`) */
  zippedBytes: number;
  unzippedBytes: number;
  files: number;
}

// serialises new packages against the storage limit; stable, arbitrary ("code packages")
const STORE_LOCK = 7_311_042_913;

interface InfoRow {
  sha256: string;
  zipped_size: string;
  unzipped_size: string;
  file_count: number;
  created_at: Date;
}

const toInfo = (r: InfoRow): CodePackageInfo => ({
  sha256: r.sha256,
  codeSha256: codeSha256Of(r.sha256),
  zippedSize: Number(r.zipped_size),
  unzippedSize: Number(r.unzipped_size),
  fileCount: r.file_count,
  createdAt: r.created_at,
});

/**
 * Checks `zip` (every file inflated and counted) and stores it under its SHA-256.
 * Idempotent: the same bytes again return the stored package with `created: false`.
 * Refusals: InvalidCodePackage, CodePackageTooLarge, CodeStorageExceeded; nothing is
 * written on any of them. Runs in `db`'s transaction when given one.
 */
export async function storeCodePackage(db: Executor, zip: Uint8Array, options: StoreCodePackageOptions = {}): Promise<StoredCodePackage> {
  const manifest = await inspectCodePackage(zip, options.limits ?? CODE_LIMITS);
  const known = await codePackageInfo(db, manifest.sha256);
  if (known) return { ...known, created: false };
  const limit = options.storageLimitBytes ?? DEFAULT_CODE_STORAGE_BYTES;
  const bytes = Buffer.isBuffer(zip) ? zip : Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength);
  const insert = (tx: Executor) => insertLocked(tx, bytes, manifest, limit);
  return db.isTransaction ? insert(db) : db.transaction().execute(insert);
}

async function insertLocked(tx: Executor, zip: Buffer, m: CodePackageManifest, storageLimitBytes: number): Promise<StoredCodePackage> {
  await sql`select pg_advisory_xact_lock(${STORE_LOCK}::bigint)`.execute(tx);
  const known = await codePackageInfo(tx, m.sha256);
  if (known) return { ...known, created: false };
  const { rows } = await sql<{ used: string }>`select coalesce(sum(zipped_size), 0)::text as used from ledger.code_packages`.execute(tx);
  const used = Number(rows[0]!.used);
  if (used + m.zippedSize > storageLimitBytes) {
    throw new LedgerError(
      'CodeStorageExceeded',
      `Code storage limit exceeded: packages take ${used} bytes, this one ${m.zippedSize} more, and the limit is ${storageLimitBytes} bytes`,
      { usedBytes: used, packageBytes: m.zippedSize, limitBytes: storageLimitBytes },
    );
  }
  const inserted = await sql<InfoRow>`
    insert into ledger.code_packages (sha256, zip, zipped_size, unzipped_size, file_count)
    values (${m.sha256}, ${zip}, ${m.zippedSize}, ${m.unzippedSize}, ${m.fileCount})
    returning sha256, zipped_size::text, unzipped_size::text, file_count, created_at`.execute(tx);
  return { ...toInfo(inserted.rows[0]!), created: true };
}

/** Bytes per round trip when loading: bounds the text PostgreSQL sends (hex, twice the bytes). */
const LOAD_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * The zip bytes of a package, checked against its name. CodePackageNotFound if absent.
 * Read in chunks with substring() (cheap on EXTERNAL storage) into one buffer, so a
 * 50 MB package costs about 50 MB here rather than a 100 MB hex string and its copy;
 * the statements need no common snapshot because the row never changes.
 */
export async function loadCodePackage(db: Executor, sha256: string): Promise<Buffer> {
  const hex = assertSha256(sha256);
  const info = await codePackageInfo(db, hex);
  if (!info) throw new LedgerError('CodePackageNotFound', `No code package with SHA-256 ${hex}`, { sha256: hex });
  const zip = Buffer.allocUnsafe(info.zippedSize);
  const hash = createHash('sha256');
  for (let offset = 0; offset < zip.length; offset += LOAD_CHUNK_BYTES) {
    const { rows } = await sql<{ part: Buffer }>`
      select substring(zip from ${offset + 1}::int for ${LOAD_CHUNK_BYTES}::int) as part
      from ledger.code_packages where sha256 = ${hex}`.execute(db);
    const part = rows[0]!.part;
    part.copy(zip, offset);
    hash.update(part);
  }
  const actual = hash.digest('hex');
  if (actual !== hex) {
    throw new LedgerError('CodePackageCorrupt', `Code package ${hex} read back with SHA-256 ${actual}`, { sha256: hex, actual });
  }
  return zip;
}

export async function codePackageExists(db: Executor, sha256: string): Promise<boolean> {
  const hex = assertSha256(sha256);
  const { rows } = await sql<{ found: boolean }>`select exists (select 1 from ledger.code_packages where sha256 = ${hex}) as found`.execute(db);
  return rows[0]!.found;
}

/** What Lambda's GetFunction tells of code (`CodeSha256`, `CodeSize`) without the bytes; null if absent. */
export async function codePackageInfo(db: Executor, sha256: string): Promise<CodePackageInfo | null> {
  const hex = assertSha256(sha256);
  const { rows } = await sql<InfoRow>`
    select sha256, zipped_size::text, unzipped_size::text, file_count, created_at
    from ledger.code_packages where sha256 = ${hex}`.execute(db);
  return rows[0] ? toInfo(rows[0]) : null;
}

export async function codePackageStats(db: Executor): Promise<CodeStorageStats> {
  const { rows } = await sql<{ packages: number; zipped: string; unzipped: string; files: string }>`
    select count(*)::int as packages, coalesce(sum(zipped_size), 0)::text as zipped,
           coalesce(sum(unzipped_size), 0)::text as unzipped, coalesce(sum(file_count), 0)::text as files
    from ledger.code_packages`.execute(db);
  const r = rows[0]!;
  return { packages: r.packages, zippedBytes: Number(r.zipped), unzippedBytes: Number(r.unzipped), files: Number(r.files) };
}
