// Packing from disk: deterministic bytes (same content → same SHA-256 whatever the
// timestamps, creation order, modes beyond the x bit, or time zone), what is left out
// and followed, and the refusals an upload would get.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import yauzl from 'yauzl';
import { afterAll, describe, expect, it } from 'vitest';
import { LedgerError } from '../errors.ts';
import { extractCodePackage } from './inspect.ts';
import { CODE_LIMITS } from './limits.ts';
import { packCodePackage } from './pack.ts';
import type { CodePackageRefusal } from './refusals.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const temps: string[] = [];
afterAll(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'code-pack-'));
  temps.push(d);
  return d;
}

type Tree = Record<string, string>;
async function writeTree(root: string, tree: Tree, order = Object.keys(tree)): Promise<void> {
  for (const name of order) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), tree[name]!);
  }
}

async function readTree(root: string, names: string[]): Promise<Tree> {
  const out: Tree = {};
  for (const n of names) out[n] = await readFile(path.join(root, n), 'utf8');
  return out;
}

async function packRefusal(source: string, limits = CODE_LIMITS): Promise<LedgerError> {
  try {
    await packCodePackage(source, limits);
  } catch (e) {
    expect(e).toBeInstanceOf(LedgerError);
    return e as LedgerError;
  }
  throw new Error('packed');
}
async function expectRefused(source: string, reason: CodePackageRefusal, message: RegExp, limits = CODE_LIMITS): Promise<void> {
  const e = await packRefusal(source, limits);
  expect({ code: e.code, reason: e.details['reason'] }).toEqual({ code: 'InvalidCodePackage', reason });
  expect(e.message).toMatch(message);
}

const APP: Tree = {
  'index.mjs': 'import { v } from "./lib/v.mjs";\nexport const handler = async () => v;\n',
  'lib/v.mjs': 'export const v = 42;\n',
  'node_modules/dep/package.json': '{"name":"dep","main":"index.js"}',
  'node_modules/dep/index.js': 'module.exports = "dep";\n',
};

describe('deterministic', () => {
  it('the same content gives the same bytes: other timestamps, creation order, permissions beyond x', async () => {
    const [a, b] = [await tempDir(), await tempDir()];
    await writeTree(a, APP);
    await writeTree(b, APP, Object.keys(APP).reverse());
    await utimes(path.join(b, 'index.mjs'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    await chmod(path.join(b, 'lib/v.mjs'), 0o600);
    const [pa, pb] = [await packCodePackage(a), await packCodePackage(b)];
    expect(pb.sha256).toBe(pa.sha256);
    expect(pb.zip.equals(pa.zip)).toBe(true);
    expect(pa.files.map((f) => f.path)).toEqual(['index.mjs', 'lib/v.mjs', 'node_modules/dep/index.js', 'node_modules/dep/package.json']);
  });

  it('the same bytes in another time zone (DOS time has none)', async () => {
    const dir = await tempDir();
    await writeTree(dir, APP);
    const hashIn = (tz: string) =>
      execFileSync(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', `const { packCodePackage } = await import('./db/code/pack.ts'); console.log((await packCodePackage(${JSON.stringify(dir)})).sha256);`],
        { cwd: ROOT, env: { ...process.env, TZ: tz }, encoding: 'utf8' },
      ).trim();
    const here = (await packCodePackage(dir)).sha256;
    expect(hashIn('Pacific/Kiritimati')).toBe(here);
    expect(hashIn('America/St_Johns')).toBe(here);
  });

  it('every entry: 1980-01-01 00:00:00, Unix mode 0644 or 0755', async () => {
    const dir = await tempDir();
    await writeTree(dir, { 'index.js': 'x', 'bin/tool': '#!/bin/sh\n' });
    await chmod(path.join(dir, 'bin/tool'), 0o700);
    const packed = await packCodePackage(dir);
    const zipfile = await yauzl.fromBufferPromise(packed.zip, { lazyEntries: true });
    const seen: [string, number, number, string][] = [];
    for await (const e of zipfile.eachEntry()) seen.push([e.fileName, e.lastModFileDate, e.lastModFileTime, ((e.externalFileAttributes >>> 16) & 0xffff).toString(8)]);
    expect(seen).toEqual([
      ['bin/tool', 0x21, 0, '100755'],
      ['index.js', 0x21, 0, '100644'],
    ]);
  });

  it('changes when a byte, a name or an x bit changes', async () => {
    const dir = await tempDir();
    await writeTree(dir, APP);
    const first = (await packCodePackage(dir)).sha256;
    await writeFile(path.join(dir, 'lib/v.mjs'), 'export const v = 43;\n');
    const second = (await packCodePackage(dir)).sha256;
    await chmod(path.join(dir, 'index.mjs'), 0o755);
    const third = (await packCodePackage(dir)).sha256;
    expect(new Set([first, second, third]).size).toBe(3);
  });

  it('round trip for any tree: extract(pack(tree)) = tree, and creation order never matters', async () => {
    const segment = fc.stringMatching(/^[a-z0-9_-]{1,8}(\.[a-z]{1,3})?$/);
    const tree = fc
      .uniqueArray(fc.tuple(fc.array(segment, { minLength: 1, maxLength: 3 }), fc.string({ maxLength: 200 })), {
        minLength: 1,
        maxLength: 12,
        selector: ([p]) => p.join('/'),
      })
      // no name may be both a file and a directory: keep the first of any clash
      .map((files) => {
        const kept: Tree = {};
        for (const [segs, content] of files) {
          const name = segs.join('/');
          const clash = Object.keys(kept).some((k) => k.startsWith(`${name}/`) || name.startsWith(`${k}/`));
          if (!clash) kept[name] = content;
        }
        return kept;
      });
    await fc.assert(
      fc.asyncProperty(tree, fc.infiniteStream(fc.nat()), async (t, seeds) => {
        const names = Object.keys(t);
        const shuffled = names.map((n) => [n, seeds.next().value as number] as const).sort((x, y) => x[1] - y[1]).map(([n]) => n);
        const [a, b, out] = [await tempDir(), await tempDir(), await tempDir()];
        await writeTree(a, t);
        await writeTree(b, t, shuffled);
        const [pa, pb] = [await packCodePackage(a), await packCodePackage(b)];
        expect(pb.sha256).toBe(pa.sha256);
        await extractCodePackage(pa.zip, out);
        expect(await readTree(out, names)).toEqual(t);
        expect(pa.fileCount).toBe(names.length);
        await Promise.all([a, b, out].map((d) => rm(d, { recursive: true, force: true })));
      }),
      { numRuns: 25 },
    );
  });
});

describe('what goes in', () => {
  it('a single file becomes a package of that file', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'handler.mjs'), 'export const handler = async () => 1;\n');
    const packed = await packCodePackage(path.join(dir, 'handler.mjs'));
    expect(packed.files.map((f) => f.path)).toEqual(['handler.mjs']);
  });

  it('.git is left out at any depth, as a directory or a file (worktrees, submodules)', async () => {
    const dir = await tempDir();
    await writeTree(dir, { ...APP, '.git/HEAD': 'ref: refs/heads/main\n', 'node_modules/dep/.git': 'gitdir: ../x\n', '.gitignore': 'node_modules\n' });
    const packed = await packCodePackage(dir);
    expect(packed.files.map((f) => f.path)).not.toContain('.git/HEAD');
    expect(packed.files.map((f) => f.path)).not.toContain('node_modules/dep/.git');
    expect(packed.files.map((f) => f.path)).toContain('.gitignore');
  });

  it('follows symbolic links that stay inside (node_modules/.bin, pnpm): packed as the file they point to', async () => {
    const dir = await tempDir();
    await writeTree(dir, { ...APP, 'node_modules/dep/cli.js': '#!/usr/bin/env node\n' });
    await chmod(path.join(dir, 'node_modules/dep/cli.js'), 0o755);
    await mkdir(path.join(dir, 'node_modules/.bin'));
    await symlink('../dep/cli.js', path.join(dir, 'node_modules/.bin/dep'));
    await symlink('dep', path.join(dir, 'node_modules/dep-alias'));
    const packed = await packCodePackage(dir);
    const out = await tempDir();
    await extractCodePackage(packed.zip, out);
    expect(packed.files.find((f) => f.path === 'node_modules/.bin/dep')).toMatchObject({ executable: true });
    expect(await readFile(path.join(out, 'node_modules/.bin/dep'), 'utf8')).toBe('#!/usr/bin/env node\n');
    expect(await readFile(path.join(out, 'node_modules/dep-alias/index.js'), 'utf8')).toBe('module.exports = "dep";\n');
  });
});

describe('refused', () => {
  it('a symbolic link leading outside the directory (it would pack, say, ~/.aws/credentials)', async () => {
    const [dir, elsewhere] = [await tempDir(), await tempDir()];
    await writeTree(dir, APP);
    await writeFile(path.join(elsewhere, 'credentials'), 'secret');
    await symlink(path.join(elsewhere, 'credentials'), path.join(dir, 'credentials'));
    await expectRefused(dir, 'outside-source', /"credentials": it is a symbolic link to .*credentials, outside/);
  });

  it('a dangling link and a link to its own ancestor', async () => {
    const dir = await tempDir();
    await writeTree(dir, APP);
    await symlink('missing.js', path.join(dir, 'gone.js'));
    await expectRefused(dir, 'symlink', /"gone.js": it is a symbolic link that leads nowhere/);
    await rm(path.join(dir, 'gone.js'));
    await symlink('..', path.join(dir, 'lib/up'));
    await expectRefused(dir, 'symlink', /"lib\/up": it is a symbolic link to its own ancestor/);
  });

  it('a FIFO', async () => {
    const dir = await tempDir();
    await writeTree(dir, APP);
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    await expectRefused(dir, 'special-file', /"pipe": it is not a regular file/);
  });

  it('names an upload would refuse: a backslash, and two names one file on macOS', async () => {
    const dir = await tempDir();
    await writeTree(dir, { 'index.js': 'x', 'odd\\name.js': 'y' });
    await expectRefused(dir, 'unsafe-path', /backslashes/);
    const dir2 = await tempDir();
    await writeTree(dir2, { 'index.js': 'x', 'Index.js': 'y' });
    await expectRefused(dir2, 'duplicate-entry', /"Index.js" and "index.js"/);
  });

  it('an empty directory, and a path that does not exist', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'only-dirs/deeper'), { recursive: true });
    await expectRefused(dir, 'empty', /holds no files/);
    const e = await packRefusal(path.join(dir, 'nope'));
    expect(e.code).toBe('InvalidParameter');
    expect(e.message).toMatch(/no such file or directory/);
  });

  it('files over the unzipped limit (counted on disk, before reading them), and a zip over the zipped limit', async () => {
    const dir = await tempDir();
    await writeTree(dir, { 'a.js': 'a'.repeat(600), 'b.js': 'b'.repeat(600) });
    await expectRefused(dir, 'unzipped-too-large', /at most 1000 bytes; .* 1200 bytes \(on disk\)/, { ...CODE_LIMITS, maxUnzippedBytes: 1000 });
    const e = await packRefusal(dir, { ...CODE_LIMITS, maxZippedBytes: 100 });
    expect(e.code).toBe('CodePackageTooLarge');
  });
});
