// `invoke-ledger deploy`: packs a directory or file, checks it, stores it by hash, and
// makes it the function's code (created, new version, unchanged; --publish). Refusals
// store nothing. Also the HTTP side of the code-package errors (apps/api/errors.ts).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { httpErrorOf } from '../../apps/api/errors.ts';
import { handlerModuleIn, packAndUpload } from '../../apps/cli/deploy.ts';
import { cli as cliInProcess } from '../helpers/cli.ts';
import { loadCodePackage, packCodePackage } from '../../db/code/index.ts';
import { LedgerError, type LedgerErrorCode } from '../../db/errors.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let t: TestDatabase;
let app: string;
const temps: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  app = await tempDir();
  await mkdir(path.join(app, 'src'));
  await mkdir(path.join(app, 'node_modules/greeting'), { recursive: true });
  await writeFile(path.join(app, 'src/app.mjs'), 'import greeting from "greeting";\nexport const main = async (event) => `${greeting}, ${event.name}`;\n');
  await writeFile(path.join(app, 'node_modules/greeting/package.json'), '{"name":"greeting","main":"index.js"}');
  await writeFile(path.join(app, 'node_modules/greeting/index.js'), 'module.exports = "hello";\n');
});
afterAll(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'deploy-'));
  temps.push(d);
  return d;
}

let baseline: number;
beforeEach(async () => {
  baseline = await packages();
});
async function changeCount(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.changes`.execute(t.db);
  return rows[0]!.n;
}
async function packages(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.code_packages`.execute(t.db);
  return rows[0]!.n;
}

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/invoke-ledger.mjs', ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: t.ownerUrl, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

describe('invoke-ledger deploy (the real command)', () => {
  it('packs a directory with node_modules, stores it, prints hash and sizes, and registers it as the function', async () => {
    const run = await cli(['deploy', app, '--name', 'greeter', '--handler', 'src/app.main']);
    expect(run.code, run.err).toBe(0);
    const expected = await packCodePackage(app);
    expect(run.out).toContain(`stored: code package for greeter`);
    expect(run.out).toContain(`SHA-256:     ${expected.sha256}`);
    expect(run.out).toContain(`CodeSha256:  ${expected.codeSha256}`);
    expect(run.out).toMatch(/files: +3\n/);
    expect(run.out).toContain(`handler:     src/app.main (in src/app.mjs)`);
    expect(run.out).toContain('greeter: created version 1 ($LATEST)');
    expect((await loadCodePackage(t.db, expected.sha256)).equals(expected.zip)).toBe(true);

    // the same content again: nothing new (no package, no version, no change)
    const changes = await changeCount();
    const again = await cli(['deploy', app, '--name', 'greeter', '--json']);
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({ sha256: expected.sha256, created: false, registered: true, outcome: 'unchanged', version: 1 });
    expect(await packages()).toBe(baseline + 1);
    expect(await changeCount()).toBe(changes);
    const { rows } = await sql<{ actor: string; action: string }>`select actor, action from ledger.changes where resource_name = 'greeter'`.execute(t.db);
    expect(rows).toEqual([{ actor: expect.stringMatching(/^cli:/), action: 'created' }]);
  });

  it('refuses a directory with a link to a file outside it, storing nothing', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'index.mjs'), 'export const handler = async () => 1;\n');
    await symlink('/etc/hostname', path.join(dir, 'hostname'));
    const run = await cli(['deploy', dir, '--name', 'leaky']);
    expect(run.code).toBe(1);
    expect(run.err).toMatch(/deploy: Cannot pack "hostname": it is a symbolic link to \/etc\/hostname, outside/);
    expect(await packages()).toBe(baseline);
  });
});

describe('invoke-ledger deploy', () => {
  it.each([
    [['--name', 'x'], /missing required argument 'path'/],
    [['PATH'], /required option '--name <name>' not specified/],
    [['a', 'b', '--name', 'x'], /too many arguments for 'deploy'/],
    [['PATH', '--name', 'x', '--bogus'], /unknown option '--bogus'/],
    [['PATH', '--name', 'x', '--publish'], /function x does not exist: give its --handler/],
    [['PATH', '--name', 'bad name!'], /function name must match/],
    [['PATH', '--name', 'x', '--handler', 'src/nope.main'], /handler "src\/nope.main": the package has none of src\/nope.js/],
    [['/no/such/dir', '--name', 'x'], /Cannot pack \/no\/such\/dir: no such file or directory/],
  ])('%j is refused, nothing stored', async (args, message) => {
    const argv = args.map((a) => (a === 'PATH' ? app : a));
    const run = await cliInProcess(['deploy', ...argv], { DATABASE_URL: t.ownerUrl });
    expect(run.code).toBe(1);
    expect(run.err).toMatch(message);
    expect(await packages()).toBe(baseline);
  });

  it('a single file', async () => {
    const run = await cliInProcess(['deploy', path.join(app, 'src/app.mjs'), '--name', 'single', '--handler', 'app.main', '--json'], { DATABASE_URL: t.ownerUrl });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.out)).toMatchObject({ fileCount: 1, handlerFile: 'app.mjs', created: true });
  });
});

describe('invoke-ledger deploy --publish', () => {
  it('publishes; changed content is a new version, published again; the history says who', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'index.js'), 'exports.handler = async () => 1;\n');
    const first = await cliInProcess(['deploy', dir, '--name', 'pub', '--handler', 'index.handler', '--publish', '--json'], { DATABASE_URL: t.ownerUrl });
    expect(first.code, first.err).toBe(0);
    expect(JSON.parse(first.out)).toMatchObject({ outcome: 'created', version: 1, published: 1 });
    await writeFile(path.join(dir, 'index.js'), 'exports.handler = async () => 2;\n');
    const second = await cliInProcess(['deploy', dir, '--name', 'pub', '--publish', '--json'], { DATABASE_URL: t.ownerUrl });
    expect(second.code, second.err).toBe(0);
    expect(JSON.parse(second.out)).toMatchObject({ outcome: 'updated', version: 2, published: 2 });
    const { rows } = await sql<{ action: string; version: number }>`
      select action, (data ->> 'version')::int as version from ledger.changes where resource_type = 'function' and resource_name = 'pub' order by seq`.execute(t.db);
    expect(rows).toEqual([
      { action: 'created', version: 1 },
      { action: 'published', version: 1 },
      { action: 'code_updated', version: 2 },
      { action: 'published', version: 2 },
    ]);
  });
});

describe('packAndUpload', () => {
  it('returns what the control plane will record: hash, CodeSha256, sizes, handler file', async () => {
    const up = await packAndUpload(t.db, app, { handler: 'src/app.main' });
    const packed = await packCodePackage(app);
    expect(up).toEqual({
      sha256: packed.sha256,
      codeSha256: packed.codeSha256,
      zippedSize: packed.zippedSize,
      unzippedSize: packed.unzippedSize,
      fileCount: 3,
      created: expect.any(Boolean),
      handlerFile: 'src/app.mjs',
    });
  });

  it('the storage limit is CodeStorageExceeded', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'index.js'), 'exports.handler = async () => "new";\n');
    const refused = await packAndUpload(t.db, dir, { storageLimitBytes: 10 }).catch((x: unknown) => x);
    expect((refused as LedgerError).code).toBe('CodeStorageExceeded');
    expect(await packages()).toBe(baseline);
  });
});

describe('handlerModuleIn (Lambda handler strings)', () => {
  const files = ['index.js', 'src/app.mjs', 'lib/legacy.cjs', 'bin/tool', 'node_modules/pkg/index.js', 'ts/handler.ts'];
  it.each([
    ['index.handler', 'index.js'],
    ['src/app.main', 'src/app.mjs'],
    ['lib/legacy.run', 'lib/legacy.cjs'],
    ['index.nested.export', 'index.js'],
    ['pkg.handler', 'node_modules/pkg/index.js'],
    ['ts/handler.handler', 'ts/handler.ts'],
  ])('%s → %s', (handler, file) => {
    expect(handlerModuleIn(handler, files)).toBe(file);
  });
  it.each(['index', 'index.', '.handler', 'in dex.handler', '../index.handler', 'src/../index.handler', '/abs/index.handler', 'missing.handler', 'x'.repeat(130) + '.h'])(
    '%s is refused',
    (handler) => {
      expect(() => handlerModuleIn(handler, files)).toThrow(LedgerError);
    },
  );
});

describe('HTTP mapping of code-package errors (Lambda wire)', () => {
  it.each([
    ['InvalidCodePackage', 400, 'InvalidParameterValueException'],
    ['CodePackageTooLarge', 413, 'RequestEntityTooLargeException'],
    ['CodeStorageExceeded', 400, 'CodeStorageExceededException'],
    ['CodePackageNotFound', 404, 'ResourceNotFoundException'],
    ['CodePackageCorrupt', 500, 'ServiceException'],
  ] as const)('%s → %i %s', (code, status, awsType) => {
    expect(httpErrorOf(new LedgerError(code as LedgerErrorCode, 'm'))).toMatchObject({ status, awsType, code });
  });
});
