// One fresh database per test file, cloned from the migrated template. At teardown the
// file's ledger is verified (seq, lifecycle, projection = replay), every stream is judged by
// the reference model of docs/event-model.md, and the database dropped.
//
// The teardown hook is registered when this module is imported (at collection time, so
// it belongs to the file's root suite): vitest ignores an afterAll registered from inside
// a beforeAll, which is where test files create their database.
import { randomBytes } from 'node:crypto';
import { afterAll, inject } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../db/connection.ts';
import { verifyLedger } from '../../db/replay.ts';
import { judgeLedger } from './event-model.ts';
import { adminQuery, databaseUrl } from './pg-admin.ts';

export interface TestDatabase extends DatabaseHandle {
  name: string;
  /** connection string as the login (owner) role, without SET ROLE */
  ownerUrl: string;
  adminUrl: string;
  /** open another handle on this database (the caller closes it) */
  open(options?: Parameters<typeof openDatabase>[1]): DatabaseHandle;
}

async function createFromTemplate(adminUrl: string, name: string, template: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await adminQuery(adminUrl, `create database "${name}" template "${template}"`);
      return;
    } catch (e) {
      // "source database is being accessed by other users": another file is cloning it right now
      if ((e as { code?: string }).code !== '55006' || attempt > 50) throw e;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
}

const teardowns: (() => Promise<void>)[] = [];

afterAll(async () => {
  const errors: Error[] = [];
  for (const teardown of teardowns.splice(0)) {
    try {
      await teardown();
    } catch (e) {
      errors.push(e as Error);
    }
  }
  if (errors.length > 0) throw errors[0];
});

export async function createTestDatabase(options: { verify?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  const name = `t_${randomBytes(6).toString('hex')}`;
  await createFromTemplate(adminUrl, name, inject('templateDb'));
  const url = databaseUrl(adminUrl, name);
  const handle = openDatabase(url, { max: 10 });
  const extra: DatabaseHandle[] = [];
  const testDb: TestDatabase = {
    ...handle,
    name,
    ownerUrl: url,
    adminUrl,
    open(opts) {
      const h = openDatabase(url, opts);
      extra.push(h);
      return h;
    },
    async close() {
      await Promise.all(extra.map((h) => h.close()));
      await handle.close();
    },
  };
  teardowns.push(async () => {
    try {
      if (options.verify !== false) {
        const problems = await verifyLedger(handle.db);
        if (problems.length > 0) {
          throw new Error(`invoke-ledger verify found ${problems.length} problem(s) in ${name}:\n${problems.slice(0, 20).map((p) => `  ${p.invocationId}: ${p.problem}`).join('\n')}`);
        }
        // verify folds with the rules it checks; docs/event-model.md's own model judges too
        const broken = await judgeLedger(handle.db);
        if (broken.length > 0) {
          throw new Error(`docs/event-model.md refuses ${broken.length} stream(s) in ${name}:\n${broken.slice(0, 20).map((b) => `  ${b}`).join('\n')}`);
        }
      }
    } finally {
      await testDb.close();
      await adminQuery(adminUrl, `drop database if exists "${name}" with (force)`);
    }
  });
  return testDb;
}
