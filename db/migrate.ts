// Ordered, immutable plain-SQL migrations, each applied in its own transaction under a
// transaction-level advisory lock, so that any number of processes starting at once is
// safe (the first applies, the rest wait and find nothing left to do), directly or
// through a transaction pooler.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectClient } from './connection.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));
const LOCK_KEY = 7_311_042_901; // arbitrary, stable: "invoke-ledger migrations"

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(path.join(dir, file), 'utf8'),
    })),
  );
}

/** A digest of every migration: names a template database that matches this schema. */
export async function migrationsDigest(dir = MIGRATIONS_DIR): Promise<string> {
  const hash = createHash('sha256');
  for (const m of await loadMigrations(dir)) hash.update(m.name).update(m.sql);
  return hash.digest('hex').slice(0, 12);
}

/** `before`: apply only migrations numbered below it (tests of a migration on a populated ledger). */
export async function migrate(url: string, log: (msg: string) => void = () => {}, options: { before?: number } = {}): Promise<string[]> {
  const client = await connectClient(url);
  const applied: string[] = [];
  /**
   * One transaction under the migrations' transaction-level advisory lock, as the login
   * itself (`set local role none`: behind a transaction pooler the login's default role
   * may be ledger_app). Nothing outlives the transaction, so this is safe through
   * PgBouncer in transaction mode, where a session lock could stay behind on a server
   * connection that the next client gets.
   */
  const locked = async <T>(work: () => Promise<T>): Promise<T> => {
    await client.query('begin');
    try {
      await client.query('set local role none');
      await client.query('select pg_advisory_xact_lock($1)', [LOCK_KEY]);
      const result = await work();
      await client.query('commit');
      return result;
    } catch (e) {
      await client.query('rollback').catch(() => {});
      throw e;
    }
  };
  try {
    const seen = await locked(async () => {
      await client.query(`create schema if not exists ledger;
        create table if not exists ledger.schema_migrations (
          version int primary key, name text not null, applied_at timestamptz not null default now())`);
      return new Set((await client.query<{ version: number }>('select version from ledger.schema_migrations')).rows.map((r) => r.version));
    });
    for (const m of await loadMigrations()) {
      if (seen.has(m.version) || m.version >= (options.before ?? Infinity)) continue;
      const done = await locked(async () => {
        // under the lock: another process may have applied it since we last looked
        const { rowCount } = await client.query('select 1 from ledger.schema_migrations where version = $1', [m.version]);
        if (rowCount) return true;
        try {
          await client.query(m.sql);
        } catch (e) {
          throw new Error(`migration ${m.name} failed: ${(e as Error).message}`, { cause: e });
        }
        await client.query('insert into ledger.schema_migrations (version, name) values ($1, $2)', [m.version, m.name]);
        return false;
      });
      if (done) continue;
      applied.push(m.name);
      log(`applied migration ${m.name}`);
    }
  } finally {
    await client.end();
  }
  return applied;
}
