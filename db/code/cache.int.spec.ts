// The local code cache: a package becomes <cache>/<sha256>/ whole or not at all, is
// reused without the database, survives several processes extracting it at once, and
// is all a process with nothing but DATABASE_URL needs to run stored code.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { strToU8, zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { LedgerError } from '../errors.ts';
import { cachedPackageDir, codeCacheDir, materializeCodePackage } from './cache.ts';
import { storeCodePackage } from './packages.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = path.join(ROOT, 'db/code/fixtures/materialize.ts');
const TSX = pathToFileURL(path.join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

let t: TestDatabase;
const temps: string[] = [];
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'code-cache-'));
  temps.push(d);
  return d;
}

let counter = 0;
/** A package of its own for each test (so no test finds another's in a cache). */
async function storedPackage(): Promise<{ sha256: string; files: Record<string, string> }> {
  const n = ++counter;
  const files = {
    'index.mjs': `import { answer } from './lib/answer.mjs';\nexport const handler = async (event) => ({ answer, n: ${n}, event, cwd: process.cwd() });\n`,
    'lib/answer.mjs': 'export const answer = 42;\n',
  };
  const zip = zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, strToU8(v)])));
  const { sha256 } = await storeCodePackage(t.db, zip);
  return { sha256, files };
}

async function expectFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) expect(await readFile(path.join(dir, name), 'utf8')).toBe(content);
}

const temporaries = async (cacheDir: string) => (await readdir(cacheDir)).filter((n) => n.startsWith('.tmp-'));

interface Child {
  code: number | null;
  out: string;
  err: string;
}
/**
 * Runs the fixture with exactly `env` (no inherited environment) in `cwd`; ended by
 * itself, by the test through `onOutput`'s kill, or by pid after 60 s.
 */
function runFixture(args: string[], env: Record<string, string>, cwd: string, onOutput?: (out: string, kill: () => void) => void): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, FIXTURE, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      onOutput?.(out, () => process.kill(child.pid!, 'SIGKILL'));
    });
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

describe('materializeCodePackage', () => {
  it('extracts into <cache>/<sha256>/ once, then reuses it without the database', async () => {
    const cacheDir = path.join(await tempDir(), 'cache');
    const { sha256, files } = await storedPackage();
    const first = await materializeCodePackage(t.db, sha256, { cacheDir });
    expect(first).toEqual({ sha256, dir: path.join(cacheDir, sha256), cached: false });
    expect(cachedPackageDir(cacheDir, sha256)).toBe(first.dir);
    await expectFiles(first.dir, files);
    expect((await stat(cacheDir)).mode & 0o777).toBe(0o700);
    expect(await temporaries(cacheDir)).toEqual([]);

    const closed = t.open({ max: 1 });
    await closed.close(); // any query on it now fails
    expect(await materializeCodePackage(closed.db, sha256, { cacheDir })).toEqual({ ...first, cached: true });
  });

  it('concurrent calls in one process share one extraction', async () => {
    const cacheDir = await tempDir();
    const { sha256, files } = await storedPackage();
    const all = await Promise.all(Array.from({ length: 8 }, () => materializeCodePackage(t.db, sha256, { cacheDir })));
    // one extraction, one result object handed to every caller
    expect(all.every((m) => m === all[0])).toBe(true);
    expect(all[0]).toMatchObject({ dir: path.join(cacheDir, sha256), cached: false });
    await expectFiles(all[0]!.dir, files);
  });

  it('losing the rename to another process: uses the winner directory, leaves no temporary behind', async () => {
    const cacheDir = await tempDir();
    const { sha256, files } = await storedPackage();
    let other: Child | undefined;
    const m = await materializeCodePackage(t.db, sha256, {
      cacheDir,
      // extracted, not yet published: another process publishes the same package first
      beforeRename: async () => {
        other = await runFixture([sha256], { DATABASE_URL: t.ownerUrl, CODE_CACHE_DIR: cacheDir }, cacheDir);
      },
    });
    expect(other?.code, other?.err).toBe(0);
    expect(JSON.parse(other!.out)).toMatchObject({ sha256, cached: false });
    expect(m).toEqual({ sha256, dir: path.join(cacheDir, sha256), cached: true });
    await expectFiles(m.dir, files);
    expect(await temporaries(cacheDir)).toEqual([]);
  });

  it('four processes extracting the same package at once all get the complete directory', async () => {
    const cacheDir = await tempDir();
    const { sha256, files } = await storedPackage();
    const runs = await Promise.all(Array.from({ length: 4 }, () => runFixture([sha256], { DATABASE_URL: t.ownerUrl, CODE_CACHE_DIR: cacheDir }, cacheDir)));
    for (const r of runs) expect(r.code, r.err).toBe(0);
    const results = runs.map((r) => JSON.parse(r.out) as { dir: string; cached: boolean });
    expect(new Set(results.map((r) => r.dir))).toEqual(new Set([path.join(cacheDir, sha256)]));
    await expectFiles(path.join(cacheDir, sha256), files);
    expect(await temporaries(cacheDir)).toEqual([]);
  });

  it('a process killed after extracting, before publishing, leaves no package directory; the next one extracts it', async () => {
    const cacheDir = await tempDir();
    const { sha256, files } = await storedPackage();
    const killed = await runFixture([sha256], { DATABASE_URL: t.ownerUrl, CODE_CACHE_DIR: cacheDir, PAUSE_BEFORE_RENAME: '1' }, cacheDir, (out, kill) => {
      if (out.includes('extracted')) kill();
    });
    expect(killed.code).toBeNull(); // killed by the signal
    expect(await readdir(cacheDir)).toEqual([expect.stringMatching(/^\.tmp-/)]);
    const m = await materializeCodePackage(t.db, sha256, { cacheDir });
    expect(m.cached).toBe(false);
    await expectFiles(m.dir, files);
  });

  it('a process in another directory, with only DATABASE_URL, loads the code and runs its handler', async () => {
    const cwd = await tempDir();
    const { sha256 } = await storedPackage();
    const run = await runFixture([sha256, 'index.mjs', 'handler'], { DATABASE_URL: t.ownerUrl }, cwd);
    expect(run.code, run.err).toBe(0);
    const out = JSON.parse(run.out) as { dir: string; result: { answer: number; event: unknown } };
    // the default cache: .data/code-cache under the working directory
    expect(out.dir).toBe(path.join(cwd, '.data/code-cache', sha256));
    expect(out.result).toMatchObject({ answer: 42, event: { from: 'materialize fixture' } });
  });

  it('refuses bytes that are not the named package, and caches nothing', async () => {
    const cacheDir = await tempDir();
    const { sha256 } = await storedPackage();
    const other = zipSync({ 'index.mjs': strToU8('export const handler = async () => "not the stored code";\n') });
    const e = await materializeCodePackage(t.db, sha256, { cacheDir, zip: other }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(LedgerError);
    expect((e as LedgerError).code).toBe('CodePackageCorrupt');
    await expect(stat(path.join(cacheDir, sha256))).rejects.toThrow(/ENOENT/);
  });

  it('an unknown package is CodePackageNotFound', async () => {
    const cacheDir = await tempDir();
    const e = await materializeCodePackage(t.db, 'cd'.repeat(32), { cacheDir }).catch((x: unknown) => x);
    expect((e as LedgerError).code).toBe('CodePackageNotFound');
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('sweeps temporaries a killed process left more than an hour ago, and only those', async () => {
    const cacheDir = await tempDir();
    const old = path.join(cacheDir, '.tmp-0123456789abcdef-killed');
    const fresh = path.join(cacheDir, '.tmp-fedcba9876543210-running');
    await mkdir(path.join(old, 'lib'), { recursive: true });
    await mkdir(fresh);
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(old, twoHoursAgo, twoHoursAgo);
    const { sha256 } = await storedPackage();
    await materializeCodePackage(t.db, sha256, { cacheDir });
    expect((await readdir(cacheDir)).sort()).toEqual(['.tmp-fedcba9876543210-running', sha256].sort());
  });

  it('CODE_CACHE_DIR names the cache directory', () => {
    expect(codeCacheDir({ CODE_CACHE_DIR: '/var/cache/ledger' })).toBe('/var/cache/ledger');
    expect(codeCacheDir({})).toBe(path.resolve('.data/code-cache'));
  });
});
