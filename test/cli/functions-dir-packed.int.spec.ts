// FUNCTIONS_DIR files are packed into the database at start (content-addressed, as
// uploaded code is): another host, whose functions directory is empty, runs them from the
// database; an unchanged file writes nothing; a changed one is a new package and a new
// version, and each version runs its own code.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFunctionsDir } from '../../apps/cli/register-functions.ts';
import { createRuntimes, type Runtimes } from '../../apps/runtimes/index.ts';
import { attemptRequest } from '../../apps/runtimes/test-fixtures.ts';
import { materializeCodePackage, packCodePackage } from '../../db/code/index.ts';
import { requireFunction } from '../../db/functions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { silent } from '../worker/helpers.ts';

let t: TestDatabase;
let here: string;
let elsewhere: string;
let cacheDir: string;
let otherHost: Runtimes;

const source = (tag: string, isolation: string) =>
  `export const config = { isolation: '${isolation}' };\nexport async function handler(e: unknown): Promise<unknown> { return { tag: '${tag}', e }; }\n`;

async function changes(name: string): Promise<string[]> {
  const { rows } = await sql<{ action: string; actor: string }>`
    select action, actor from ledger.changes where resource_type = 'function' and resource_name = ${name} order by seq`.execute(t.db);
  return rows.map((r) => `${r.action} by ${r.actor}`);
}

beforeAll(async () => {
  t = await createTestDatabase();
  here = await mkdtemp(path.join(tmpdir(), 'ledger-fdir-here-'));
  elsewhere = await mkdtemp(path.join(tmpdir(), 'ledger-fdir-elsewhere-'));
  cacheDir = await mkdtemp(path.join(tmpdir(), 'ledger-fdir-cache-'));
  // the other host: an empty functions directory, code from the database only
  otherHost = createRuntimes({
    functionsDir: elsewhere,
    logger: silent,
    poolSize: 1,
    codePackageDir: async (sha) => (await materializeCodePackage(t.db, sha, { cacheDir })).dir,
  });
});

afterAll(async () => {
  await otherHost?.close();
  for (const d of [here, elsewhere, cacheDir]) if (d) await rm(d, { recursive: true, force: true });
});

describe('FUNCTIONS_DIR packed into the database', () => {
  it('a host without the files runs them from the database; each version runs its own code', async () => {
    await writeFile(path.join(here, 'packedinline.ts'), source('one', 'inline'));
    await writeFile(path.join(here, 'packedthread.ts'), source('one', 'thread'));
    expect((await registerFunctionsDir(t.db, here, {}, silent)).sort()).toEqual(['packedinline:1', 'packedthread:1']);

    const first = await requireFunction(t.db, 'packedthread');
    const packed = await packCodePackage(path.join(here, 'packedthread.ts'));
    expect(first.codeHash).toBe(packed.sha256);
    expect(first.codeSha256).toBeNull(); // not package code: a host with the file runs the file
    const { rows: stored } = await sql<{ n: number }>`select count(*)::int as n from ledger.code_packages where sha256 = ${packed.sha256}`.execute(t.db);
    expect(stored[0]!.n).toBe(1);

    for (const name of ['packedinline', 'packedthread']) {
      const out = await otherHost.run(await requireFunction(t.db, name), attemptRequest({ n: 1 }));
      expect([name, out]).toMatchObject([name, { ok: true, result: { tag: 'one', e: { n: 1 } } }]);
    }

    // unchanged files: nothing written
    await registerFunctionsDir(t.db, here, {}, silent);
    expect(await changes('packedthread')).toEqual(['created by startup']);

    // a changed file: a new package, a new version; the old version still runs the old code
    await writeFile(path.join(here, 'packedthread.ts'), source('two', 'thread'));
    await registerFunctionsDir(t.db, here, {}, silent);
    expect(await changes('packedthread')).toEqual(['created by startup', 'deployed_from_disk by startup']);
    const second = await requireFunction(t.db, 'packedthread');
    expect(second.version).toBeGreaterThan(first.version);
    expect(second.codeHash).not.toBe(first.codeHash);
    expect(await otherHost.run(second, attemptRequest({ n: 2 }))).toMatchObject({ ok: true, result: { tag: 'two', e: { n: 2 } } });
    expect(await otherHost.run(first, attemptRequest({ n: 3 }))).toMatchObject({ ok: true, result: { tag: 'one', e: { n: 3 } } });
  });

  it('without the file and without its package, the attempt fails with Runtime.HandlerNotFound', async () => {
    await writeFile(path.join(here, 'gone.ts'), source('g', 'thread'));
    await registerFunctionsDir(t.db, here, {}, silent);
    const fn = await requireFunction(t.db, 'gone');
    const noPackage = { ...fn, codeHash: '0'.repeat(64) };
    expect(await otherHost.run(noPackage, attemptRequest({}))).toMatchObject({ ok: false, error: { errorType: 'Runtime.HandlerNotFound' } });
  });
});
