// Untrusted zips: every refusal of docs/code.md, each with a zip crafted for it (byte by
// byte, with fflate, or with Info-ZIP's `zip` where it is installed), and what a good
// package looks like after the checks. Storing (and that nothing is written on refusal)
// is in packages.int.spec.ts.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { strToU8, zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { craftZip, deflatedZeros, unicodePathExtra, zerosCrc, type CraftEntry } from '../../test/helpers/craft-zip.ts';
import { LedgerError } from '../errors.ts';
import { extractCodePackage, inspectCodePackage } from './inspect.ts';
import { CODE_LIMITS } from './limits.ts';
import type { CodePackageRefusal } from './refusals.ts';

const HAS_ZIP = existsSync('/usr/bin/zip');
const temps: string[] = [];
afterAll(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'code-inspect-'));
  temps.push(d);
  return d;
}

async function refusal(zip: Uint8Array, limits = CODE_LIMITS): Promise<LedgerError> {
  try {
    await inspectCodePackage(zip, limits);
  } catch (e) {
    expect(e).toBeInstanceOf(LedgerError);
    return e as LedgerError;
  }
  throw new Error('the package was accepted');
}

async function expectRefused(zip: Uint8Array, reason: CodePackageRefusal, message: RegExp, limits = CODE_LIMITS): Promise<LedgerError> {
  const e = await refusal(zip, limits);
  expect({ code: e.code, reason: e.details['reason'] }).toEqual({ code: 'InvalidCodePackage', reason });
  expect(e.message).toMatch(message);
  return e;
}

const file = (name: string, content = 'export const handler = async () => 1;\n', more: Partial<CraftEntry> = {}): CraftEntry => ({
  name,
  data: Buffer.from(content),
  ...more,
});

describe('a good package', () => {
  it('is described: files, sizes, counts, its SHA-256 in hex and base64', async () => {
    const zip = zipSync({ 'index.js': strToU8('exports.handler = async () => 42;\n'), lib: { 'util.js': strToU8('x'.repeat(5000)) } });
    const m = await inspectCodePackage(zip);
    expect(m.sha256).toBe(createHash('sha256').update(zip).digest('hex'));
    expect(m.codeSha256).toBe(createHash('sha256').update(zip).digest('base64'));
    expect(m).toMatchObject({ zippedSize: zip.length, unzippedSize: 34 + 5000, fileCount: 2, directories: ['lib'] });
    expect(m.files.map((f) => [f.path, f.size])).toEqual([
      ['index.js', 34],
      ['lib/util.js', 5000],
    ]);
  });

  it('extracts with its execute bits, and explicit empty directories', async () => {
    const zip = craftZip([
      { name: 'bin/', unixMode: 0o040755 },
      file('bin/run', '#!/bin/sh\necho hi\n', { unixMode: 0o100755 }),
      file('index.js'),
      { name: 'empty/', unixMode: 0o040755 },
    ]);
    const into = await tempDir();
    const m = await extractCodePackage(zip, into);
    expect(m.files.map((f) => [f.path, f.executable])).toEqual([
      ['bin/run', true],
      ['index.js', false],
    ]);
    expect((await stat(path.join(into, 'bin/run'))).mode & 0o777).toBe(0o755 & ~process.umask());
    expect((await stat(path.join(into, 'index.js'))).mode & 0o111).toBe(0);
    expect(await readFile(path.join(into, 'bin/run'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect((await stat(path.join(into, 'empty'))).isDirectory()).toBe(true);
  });

  it.skipIf(!HAS_ZIP)("accepts Info-ZIP's zip of a directory (directory entries, Unix modes, stored and deflated)", async () => {
    const src = await tempDir();
    await mkdir(path.join(src, 'node_modules/dep'), { recursive: true });
    await writeFile(path.join(src, 'index.mjs'), 'export const handler = async () => "ok";\n');
    await writeFile(path.join(src, 'node_modules/dep/index.js'), 'module.exports = 1;\n'.repeat(100));
    await writeFile(path.join(src, 'tool.sh'), '#!/bin/sh\n');
    await chmod(path.join(src, 'tool.sh'), 0o755);
    const zipPath = path.join(await tempDir(), 'p.zip');
    execFileSync('/usr/bin/zip', ['-qr', zipPath, '.'], { cwd: src });
    const m = await inspectCodePackage(await readFile(zipPath));
    expect(m.files.map((f) => f.path).sort()).toEqual(['index.mjs', 'node_modules/dep/index.js', 'tool.sh']);
    expect(m.files.find((f) => f.path === 'tool.sh')?.executable).toBe(true);
    expect(m.directories.sort()).toEqual(['node_modules', 'node_modules/dep']);
  });
});

describe('refused: not a zip, empty, too large', () => {
  it('zero bytes, text, and a truncated zip are not zips', async () => {
    await expectRefused(Buffer.alloc(0), 'not-a-zip', /empty \(0 bytes\)/);
    await expectRefused(Buffer.from('console.log("this is a .js file, not a zip")'), 'not-a-zip', /Could not unzip/);
    const zip = zipSync({ 'index.js': strToU8('x') });
    await expectRefused(zip.subarray(0, zip.length - 10), 'not-a-zip', /Could not unzip/);
  });

  it('a zip with no entries, or only directories, holds no code', async () => {
    await expectRefused(craftZip([]), 'empty', /no files/);
    await expectRefused(craftZip([{ name: 'a/' }, { name: 'a/b/' }]), 'empty', /no files/);
  });

  it('over 50 MB zipped is CodePackageTooLarge (413), before anything is parsed', async () => {
    const zip = craftZip([{ name: 'big.bin', data: randomBytes(CODE_LIMITS.maxZippedBytes), method: 0 }]);
    expect(zip.length).toBeGreaterThan(CODE_LIMITS.maxZippedBytes);
    const e = await refusal(zip);
    expect(e.code).toBe('CodePackageTooLarge');
    expect(e.message).toMatch(/Zipped size must be at most 52428800 bytes/);
    expect(e.details).toMatchObject({ zippedSize: zip.length, limit: 52_428_800 });
  });

  it('more entries than allowed', async () => {
    const zip = craftZip(Array.from({ length: 11 }, (_, i) => file(`f${i}.js`)));
    const e = await expectRefused(zip, 'too-many-entries', /11 entries; at most 10/, { ...CODE_LIMITS, maxEntries: 10 });
    expect(e.details).toMatchObject({ entries: 11, limit: 10 });
  });
});

describe('refused: zip bombs', () => {
  const over = CODE_LIMITS.maxUnzippedBytes + 1;

  it('files declaring more than 250 MB together, refused before inflating', async () => {
    const zeros = await deflatedZeros(over);
    const zip = craftZip([{ name: 'zeros.bin', stored: zeros, declaredSize: over, crc: zerosCrc(over) }]);
    const e = await expectRefused(zip, 'unzipped-too-large', /Unzipped size must be at most 262144000 bytes; .* 262144001 bytes \(declared\)/);
    expect(e.details).toMatchObject({ unzippedSize: over, limit: 262_144_000 });
  });

  it('a header that understates the inflated size: refused once the bytes pass the declared size', async () => {
    const zeros = await deflatedZeros(over); // ~255 KB that inflate to 250 MB
    const zip = craftZip([file('index.js'), { name: 'zeros.bin', stored: zeros, declaredSize: 1000, crc: zerosCrc(1000) }]);
    const e = await expectRefused(zip, 'size-mismatch', /"zeros.bin" does not inflate to the 1000 bytes its header declares/);
    expect(e.details).toMatchObject({ entry: 'zeros.bin', declared: 1000 });
  });

  it('a header that overstates it', async () => {
    const data = Buffer.from('short');
    await expectRefused(craftZip([{ name: 'a.js', data, declaredSize: 2000 }]), 'size-mismatch', /does not inflate to the 2000 bytes/);
  });

  it('entries that share compressed bytes (the overlapping-file bomb)', async () => {
    const zip = craftZip([file('a.js', 'y'.repeat(10_000)), { name: 'b.js', sameDataAs: 0 }, { name: 'c.js', sameDataAs: 0 }]);
    await expectRefused(zip, 'overlapping-entries', /"a.js" and "b.js" share bytes/);
  });
});

describe('refused: names that would escape or collide', () => {
  const unsafe: [string, RegExp][] = [
    ['../evil.js', /'\.\.' path segments/],
    ['lib/../../evil.js', /'\.\.' path segments/],
    ['/etc/cron.d/evil', /absolute paths/],
    ['C:/Windows/evil.js', /drive letters/],
    ['C:evil.js', /drive letters/],
    ['lib\\..\\..\\evil.js', /backslashes/],
    ['lib\\index.js', /backslashes/],
    ['./index.js', /'\.' path segments/],
    ['lib//index.js', /empty path segments/],
    ['a\u0000b.js', /control characters/],
    ['line\nbreak.js', /control characters/],
    [`${'x'.repeat(256)}.js`, /segment is longer than 255 bytes/],
  ];
  for (const [name, why] of unsafe) {
    it(`refuses ${JSON.stringify(name)}`, async () => {
      const e = await expectRefused(craftZip([file('index.js'), file(name)]), 'unsafe-path', why);
      expect(e.details['entry']).toBe(name);
    });
  }

  it('checks the name it would extract: a Unicode Path extra field saying ../evil.js', async () => {
    const zip = craftZip([file('index.js'), file('innocent.js', 'x', { extra: unicodePathExtra('innocent.js', '../evil.js') })]);
    await expectRefused(zip, 'unsafe-path', /"\.\.\/evil\.js"/);
  });

  it('duplicate entries', async () => {
    await expectRefused(craftZip([file('index.js', 'a'), file('index.js', 'b')]), 'duplicate-entry', /"index.js" twice/);
    await expectRefused(craftZip([{ name: 'lib/' }, { name: 'lib/' }, file('lib/index.js')]), 'duplicate-entry', /"lib" twice/);
  });

  it('names equal after case folding or Unicode normalisation (one file on macOS and Windows)', async () => {
    await expectRefused(craftZip([file('Index.js'), file('index.js')]), 'duplicate-entry', /"Index.js" and "index.js", one file on case-insensitive/);
    await expectRefused(craftZip([file('caf\u00e9.js'), file('cafe\u0301.js')]), 'duplicate-entry', /one file/);
  });

  it('a file that is also a directory', async () => {
    await expectRefused(craftZip([file('lib'), file('lib/index.js')]), 'path-conflict', /"lib" as a file and as the directory of "lib\/index.js"/);
    await expectRefused(craftZip([file('LIB'), file('lib/a/index.js')]), 'path-conflict', /"LIB"/);
    await expectRefused(craftZip([{ name: 'lib/' }, file('lib')]), 'duplicate-entry', /"lib"/);
  });
});

describe('refused: links, special files, encryption, odd compression, damage', () => {
  it('a symbolic link (Unix mode 120777)', async () => {
    const zip = craftZip([file('index.js'), { name: 'passwd', data: Buffer.from('/etc/passwd'), unixMode: 0o120777, method: 0 }]);
    await expectRefused(zip, 'symlink', /symbolic link "passwd"/);
  });

  it.skipIf(!HAS_ZIP)("a symbolic link as Info-ZIP stores it (zip --symlinks)", async () => {
    const src = await tempDir();
    await writeFile(path.join(src, 'index.js'), 'exports.handler = async () => 1;\n');
    await symlink('/etc/passwd', path.join(src, 'passwd'));
    const zipPath = path.join(await tempDir(), 'p.zip');
    execFileSync('/usr/bin/zip', ['-q', '--symlinks', zipPath, 'index.js', 'passwd'], { cwd: src });
    await expectRefused(await readFile(zipPath), 'symlink', /"passwd"/);
  });

  it('FIFOs, devices and sockets', async () => {
    for (const mode of [0o010644, 0o020644, 0o060644, 0o140644]) {
      await expectRefused(craftZip([file('index.js'), file('odd', '', { unixMode: mode, method: 0 })]), 'special-file', /"odd", which is not a regular file/);
    }
  });

  it('a directory mode on a name without a slash, and a directory with content', async () => {
    await expectRefused(craftZip([file('index.js'), file('lib', '', { unixMode: 0o040755, method: 0 })]), 'corrupt', /marks "lib" a directory/);
    await expectRefused(craftZip([file('index.js'), file('lib/', 'content', { method: 0 })]), 'corrupt', /directory entry "lib\/" has content/);
  });

  it('an encrypted entry (traditional and strong encryption flags)', async () => {
    await expectRefused(craftZip([file('index.js'), file('secret.js', 'x', { flags: 0x0001 })]), 'encrypted', /encrypted entry "secret.js"/);
    await expectRefused(craftZip([file('index.js'), file('secret.js', 'x', { flags: 0x0041 })]), 'encrypted', /encrypted/);
  });

  it.skipIf(!HAS_ZIP)("a password-protected zip made by Info-ZIP (zip -P)", async () => {
    const src = await tempDir();
    await writeFile(path.join(src, 'index.js'), 'exports.handler = async () => 1;\n');
    const zipPath = path.join(await tempDir(), 'p.zip');
    execFileSync('/usr/bin/zip', ['-q', '-P', 'hunter2', zipPath, 'index.js'], { cwd: src });
    await expectRefused(await readFile(zipPath), 'encrypted', /encrypted/);
  });

  it('compression other than stored and deflate (bzip2, LZMA, zstd)', async () => {
    for (const method of [12, 14, 93]) {
      const e = await expectRefused(craftZip([file('index.js', 'x', { method, stored: Buffer.from('whatever') })]), 'unsupported-compression', new RegExp(`method ${method}`));
      expect(e.details['compressionMethod']).toBe(method);
    }
  });

  it('a wrong CRC-32', async () => {
    await expectRefused(craftZip([file('index.js', 'exports.x = 1;', { crc: 12345 })]), 'corrupt', /"index.js" fails its CRC-32 check/);
  });

  it('deflate data that does not inflate', async () => {
    const zip = craftZip([file('index.js', 'exports.x = 1;', { stored: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]) })]);
    await expectRefused(zip, 'corrupt', /Could not unzip the code package's entry "index.js"/);
  });
});

describe('any damage to a good zip', () => {
  const good = zipSync(
    { 'index.js': strToU8('exports.handler = async (e) => e;\n'.repeat(20)), 'lib/a.js': strToU8('module.exports = "a";\n'), 'lib/b.json': strToU8('{"b":1}') },
    { mtime: new Date(1980, 0, 1) },
  );

  it('is refused with a typed InvalidCodePackage, or yields a package that passes every check (never another error)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat({ max: good.length }), { nil: undefined }),
        async (flips, cut) => {
          const damaged = Buffer.from(good);
          for (const [at, byte] of flips) damaged[at] = byte;
          const zip = cut === undefined ? damaged : damaged.subarray(0, cut);
          try {
            const m = await inspectCodePackage(zip);
            expect(m.fileCount).toBeGreaterThan(0);
          } catch (e) {
            expect(e).toBeInstanceOf(LedgerError);
            expect((e as LedgerError).code).toBe('InvalidCodePackage');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
