// The local code cache: any process turns a package name into a directory of files,
// `<CODE_CACHE_DIR>/<sha256>/`, loading the zip from the database the first time. With
// nothing but DATABASE_URL a new host runs any stored version (docs/code.md).
//
// The directory appears whole or not at all: a package is extracted into a fresh
// temporary directory beside it and renamed into place. rename(2) of a directory onto a
// non-empty one fails, so when two processes extract the same package at once, one
// rename wins, the other finds the winner's directory, drops its own copy and uses it.
// The zip is checked against its SHA-256 before it is extracted; a directory under its
// name is trusted afterwards, so the cache directory is created private (0700).
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LedgerError } from '../errors.ts';
import type { Executor } from '../schema.ts';
import { assertSha256, sha256Hex } from './hash.ts';
import { extractCodePackage } from './inspect.ts';
import { CODE_LIMITS } from './limits.ts';
import { loadCodePackage } from './packages.ts';

export const DEFAULT_CODE_CACHE_DIR = '.data/code-cache';

/** The cache directory: `CODE_CACHE_DIR`, or `.data/code-cache` under the working directory. */
export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.CODE_CACHE_DIR || DEFAULT_CODE_CACHE_DIR);
}

export interface MaterializedCodePackage {
  sha256: string;
  /** absolute: `<cache dir>/<sha256>`, the package's files (Lambda's LAMBDA_TASK_ROOT) */
  dir: string;
  /** false when this call (or the concurrent call in this process it joined) extracted it */
  cached: boolean;
}

export interface MaterializeOptions {
  /** default codeCacheDir() */
  cacheDir?: string;
  /** the zip when the caller holds it already (just uploaded); still checked against the hash */
  zip?: Uint8Array;
  /** test seam: runs after extraction, before the rename that publishes the directory */
  beforeRename?: () => Promise<void>;
}

/** Temporary directories older than this are left over from a killed process. */
const STALE_TEMP_MS = 60 * 60 * 1000;
const TEMP_PREFIX = '.tmp-';

const inFlight = new Map<string, Promise<MaterializedCodePackage>>();

/**
 * The directory holding package `sha256`'s files, extracting it from the database into
 * the cache on first use. Concurrent calls in one process share one extraction; across
 * processes, see the header.
 */
export function materializeCodePackage(db: Executor, sha256: string, options: MaterializeOptions = {}): Promise<MaterializedCodePackage> {
  const hex = assertSha256(sha256);
  const cacheDir = path.resolve(options.cacheDir ?? codeCacheDir());
  const key = `${cacheDir}\0${hex}`;
  let pending = inFlight.get(key);
  if (!pending) {
    pending = materialize(db, hex, cacheDir, options).finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

/** Where package `sha256` is (or would be) in `cacheDir`. */
export function cachedPackageDir(cacheDir: string, sha256: string): string {
  return path.join(path.resolve(cacheDir), assertSha256(sha256));
}

async function materialize(db: Executor, sha256: string, cacheDir: string, options: MaterializeOptions): Promise<MaterializedCodePackage> {
  const dir = path.join(cacheDir, sha256);
  if (await isDirectory(dir)) return { sha256, dir, cached: true };

  const zip = options.zip ?? (await loadCodePackage(db, sha256));
  const actual = sha256Hex(zip);
  if (actual !== sha256) throw new LedgerError('CodePackageCorrupt', `Code package ${sha256} has SHA-256 ${actual}`, { sha256, actual });

  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  await sweepStaleTemps(cacheDir);
  const temp = await mkdtemp(path.join(cacheDir, `${TEMP_PREFIX}${sha256.slice(0, 16)}-`));
  try {
    await extractCodePackage(zip, temp, CODE_LIMITS);
    await options.beforeRename?.();
    try {
      await rename(temp, dir);
      return { sha256, dir, cached: false };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // another process published it first: theirs is the same bytes, use it
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await isDirectory(dir))) return { sha256, dir, cached: true };
      throw e;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Removes extraction directories a killed process left behind. */
async function sweepStaleTemps(cacheDir: string, now = Date.now()): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const p = path.join(cacheDir, name);
    try {
      if (now - (await stat(p)).mtimeMs > STALE_TEMP_MS) await rm(p, { recursive: true, force: true });
    } catch {
      // another process swept it first
    }
  }
}
