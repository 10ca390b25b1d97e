// ledger.code_packages against a real PostgreSQL: store (idempotent, concurrent, under a
// storage limit), load, exists, info, stats; a refused package writes nothing; the table
// refuses changes and rows whose name is not their content.
import { createHash, randomBytes } from 'node:crypto';
import { strToU8, zipSync } from 'fflate';
import { sql } from 'kysely';
import pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { craftZip, deflatedZeros, zerosCrc } from '../../test/helpers/craft-zip.ts';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/database.ts';
import { LedgerError } from '../errors.ts';
import { CODE_LIMITS } from './limits.ts';
import { codePackageExists, codePackageInfo, codePackageStats, loadCodePackage, storeCodePackage } from './packages.ts';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});

// the table refuses DELETE, so tests count rows against a baseline taken before each
let baseline: number;
beforeEach(async () => {
  baseline = await rows();
});

async function rows(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger.code_packages`.execute(t.db);
  return rows[0]!.n;
}

const handlerSource = (body: string) => `export const handler = async () => ${JSON.stringify(body)};\n`;
const handlerZip = (body: string) => Buffer.from(zipSync({ 'index.mjs': strToU8(handlerSource(body)) }, { mtime: new Date(1980, 0, 1) }));

async function refusedWith(p: Promise<unknown>): Promise<LedgerError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(LedgerError);
    return e as LedgerError;
  }
  throw new Error('accepted');
}

describe('store and load', () => {
  it('stores a package under its SHA-256 and gives back exactly its bytes', async () => {
    const zip = handlerZip('v1');
    const stored = await storeCodePackage(t.db, zip);
    const sha = createHash('sha256').update(zip).digest();
    expect(stored).toMatchObject({
      sha256: sha.toString('hex'),
      codeSha256: sha.toString('base64'),
      zippedSize: zip.length,
      unzippedSize: Buffer.byteLength(handlerSource('v1')),
      fileCount: 1,
      created: true,
    });
    expect(stored.createdAt).toBeInstanceOf(Date);
    expect((await loadCodePackage(t.db, stored.sha256)).equals(zip)).toBe(true);
    expect(await codePackageExists(t.db, stored.sha256)).toBe(true);
    expect(await codePackageExists(t.db, stored.sha256.toUpperCase())).toBe(true);
    const { created: _created, ...info } = stored;
    expect(await codePackageInfo(t.db, stored.sha256)).toEqual(info);
  });

  it('is idempotent: the same bytes again store nothing and return the first row', async () => {
    const zip = handlerZip('idempotent');
    const first = await storeCodePackage(t.db, zip);
    const again = await storeCodePackage(t.db, Buffer.from(zip));
    expect(again).toEqual({ ...first, created: false });
    expect(await rows()).toBe(baseline + 1);
  });

  it('ten concurrent stores of one package: one creates it, nine find it', async () => {
    const zip = handlerZip('race');
    const results = await Promise.all(Array.from({ length: 10 }, () => storeCodePackage(t.db, zip)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.sha256)).size).toBe(1);
    expect(await rows()).toBe(baseline + 1);
  });

  it('runs in the caller transaction: rolled back, nothing stays', async () => {
    const zip = handlerZip('rolled back');
    await expect(
      t.db.transaction().execute(async (tx) => {
        await storeCodePackage(tx, zip);
        expect(await codePackageExists(tx, createHash('sha256').update(zip).digest('hex'))).toBe(true);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await rows()).toBe(baseline);
  });

  it('a 50 MB package (incompressible) round-trips', async () => {
    const zip = craftZip([{ name: 'index.js', data: Buffer.from('exports.handler = async () => 1;\n'), method: 0 }, { name: 'blob.bin', data: randomBytes(CODE_LIMITS.maxZippedBytes - 300), method: 0 }]);
    expect(zip.length).toBeLessThanOrEqual(CODE_LIMITS.maxZippedBytes);
    const stored = await storeCodePackage(t.db, zip);
    expect(stored.zippedSize).toBe(zip.length);
    expect((await loadCodePackage(t.db, stored.sha256)).equals(zip)).toBe(true);
  });

  it('unknown and malformed names', async () => {
    const e = await refusedWith(loadCodePackage(t.db, 'ab'.repeat(32)));
    expect(e.code).toBe('CodePackageNotFound');
    expect(await codePackageInfo(t.db, 'ab'.repeat(32))).toBeNull();
    expect(await codePackageExists(t.db, 'ab'.repeat(32))).toBe(false);
    for (const bad of ['', 'xyz', 'ab'.repeat(31), `${'ab'.repeat(32)}00`, "'; drop table ledger.code_packages; --"]) {
      expect((await refusedWith(loadCodePackage(t.db, bad))).code).toBe('InvalidParameter');
    }
  });
});

describe('a refused package writes nothing', () => {
  it.each([
    ['not a zip', () => Promise.resolve(Buffer.from('just text')), 'InvalidCodePackage'],
    ['empty', () => Promise.resolve(Buffer.alloc(0)), 'InvalidCodePackage'],
    ['zip slip', () => Promise.resolve(craftZip([{ name: '../../evil.js', data: Buffer.from('x') }])), 'InvalidCodePackage'],
    ['a symlink', () => Promise.resolve(craftZip([{ name: 'link', data: Buffer.from('/etc/passwd'), unixMode: 0o120777 }])), 'InvalidCodePackage'],
    ['a duplicate', () => Promise.resolve(craftZip([{ name: 'a.js', data: Buffer.from('1') }, { name: 'A.js', data: Buffer.from('2') }])), 'InvalidCodePackage'],
    [
      'a zip bomb with a lying header (the bad entry last, after a good one)',
      async () => {
        const n = CODE_LIMITS.maxUnzippedBytes + 1;
        return craftZip([{ name: 'index.js', data: Buffer.from('ok') }, { name: 'bomb', stored: await deflatedZeros(n), declaredSize: 10, crc: zerosCrc(10) }]);
      },
      'InvalidCodePackage',
    ],
    ['over 50 MB zipped', () => Promise.resolve(craftZip([{ name: 'big.bin', data: randomBytes(CODE_LIMITS.maxZippedBytes), method: 0 }])), 'CodePackageTooLarge'],
  ] as const)('%s', async (_name, make, code) => {
    const e = await refusedWith(storeCodePackage(t.db, await make()));
    expect(e.code).toBe(code);
    expect(await rows()).toBe(baseline);
  });
});

describe('the storage limit (CodeStorageExceededException)', () => {
  it('refuses a package that would pass it, writes nothing, and still finds packages already stored', async () => {
    const used = (await codePackageStats(t.db)).zippedBytes;
    const a = handlerZip('quota a');
    const b = handlerZip('quota b!');
    const limit = used + a.length + 10;
    expect((await storeCodePackage(t.db, a, { storageLimitBytes: limit })).created).toBe(true);
    const e = await refusedWith(storeCodePackage(t.db, b, { storageLimitBytes: limit }));
    expect(e.code).toBe('CodeStorageExceeded');
    expect(e.details).toMatchObject({ usedBytes: used + a.length, packageBytes: b.length, limitBytes: limit });
    expect(await rows()).toBe(baseline + 1);
    expect((await storeCodePackage(t.db, a, { storageLimitBytes: limit })).created).toBe(false);
  });

  it('holds under concurrent stores: never more than the limit', async () => {
    const used = (await codePackageStats(t.db)).zippedBytes;
    const zips = Array.from({ length: 6 }, (_, i) => handlerZip(`concurrent ${i}`));
    const size = zips[0]!.length;
    expect(zips.every((z) => z.length === size)).toBe(true);
    const limit = used + 2 * size;
    const results = await Promise.allSettled(zips.map((z) => storeCodePackage(t.db, z, { storageLimitBytes: limit })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as LedgerError).code).toBe('CodeStorageExceeded');
    expect((await codePackageStats(t.db)).zippedBytes).toBe(limit);
  });
});

describe('stats', () => {
  it('counts packages, zipped and unzipped bytes, files', async () => {
    const before = await codePackageStats(t.db);
    const zip = Buffer.from(zipSync({ 'a.js': strToU8('aaaa'), 'b/c.js': strToU8('cc') }));
    await storeCodePackage(t.db, zip);
    expect(await codePackageStats(t.db)).toEqual({
      packages: before.packages + 1,
      zippedBytes: before.zippedBytes + zip.length,
      unzippedBytes: before.unzippedBytes + 6,
      files: before.files + 2,
    });
  });
});

describe('the table', () => {
  let sha: string;
  beforeAll(async () => {
    sha = (await storeCodePackage(t.db, handlerZip('immutable'))).sha256;
  });

  it('refuses UPDATE, DELETE and TRUNCATE even to its owner', async () => {
    const owner = new pg.Client({ connectionString: t.ownerUrl });
    await owner.connect();
    try {
      for (const stmt of [
        `update ledger.code_packages set file_count = 2 where sha256 = '${sha}'`,
        `delete from ledger.code_packages where sha256 = '${sha}'`,
        'truncate ledger.code_packages',
      ]) {
        await expect(owner.query(stmt)).rejects.toThrow(/ledger.code_packages is append-only/);
      }
    } finally {
      await owner.end();
    }
    expect(await codePackageExists(t.db, sha)).toBe(true);
  });

  it('grants the application role SELECT and INSERT only', async () => {
    await expect(sql`update ledger.code_packages set file_count = 2 where sha256 = ${sha}`.execute(t.db)).rejects.toThrow(/permission denied/);
    await expect(sql`delete from ledger.code_packages where sha256 = ${sha}`.execute(t.db)).rejects.toThrow(/permission denied/);
  });

  it('refuses a row whose name is not the SHA-256 of its bytes, or whose size is not its length', async () => {
    const zip = handlerZip('forged');
    const real = createHash('sha256').update(zip).digest('hex');
    const forged = createHash('sha256').update('something else').digest('hex');
    await expect(
      sql`insert into ledger.code_packages (sha256, zip, zipped_size, unzipped_size, file_count) values (${forged}, ${zip}, ${zip.length}, 1, 1)`.execute(t.db),
    ).rejects.toThrow(/code_packages_content_addressed/);
    await expect(
      sql`insert into ledger.code_packages (sha256, zip, zipped_size, unzipped_size, file_count) values (${real}, ${zip}, ${zip.length + 1}, 1, 1)`.execute(t.db),
    ).rejects.toThrow(/code_packages_zipped_size/);
  });
});

// last in the file: it removes the table's content check from this file's database
describe('if the bytes ever do not match their name', () => {
  it('loading says CodePackageCorrupt rather than returning them', async () => {
    const owner = new pg.Client({ connectionString: t.ownerUrl });
    await owner.connect();
    const zip = handlerZip('tampered');
    const claimed = createHash('sha256').update('other bytes').digest('hex');
    try {
      await owner.query('alter table ledger.code_packages drop constraint code_packages_content_addressed');
      await owner.query('insert into ledger.code_packages (sha256, zip, zipped_size, unzipped_size, file_count) values ($1, $2, $3, 1, 1)', [claimed, zip, zip.length]);
    } finally {
      await owner.end();
    }
    const e = await refusedWith(loadCodePackage(t.db, claimed));
    expect(e.code).toBe('CodePackageCorrupt');
    expect(e.details).toMatchObject({ sha256: claimed, actual: createHash('sha256').update(zip).digest('hex') });
  });
});
