// Ordered, immutable plain-SQL migrations, applied under an advisory lock so that any
// number of processes starting at once is safe: the first applies, the rest wait and find
// nothing left to do.
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

export async function migrate(url: string, log: (msg: string) => void = () => {}): Promise<string[]> {
  const client = await connectClient(url);
  const applied: string[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`create schema if not exists ledger;
      create table if not exists ledger.schema_migrations (
        version int primary key, name text not null, applied_at timestamptz not null default now())`);
    const done = new Set(
      (await client.query<{ version: number }>('select version from ledger.schema_migrations')).rows.map((r) => r.version),
    );
    for (const m of await loadMigrations()) {
      if (done.has(m.version)) continue;
      await client.query('begin');
      try {
        await client.query(m.sql);
        await client.query('insert into ledger.schema_migrations (version, name) values ($1, $2)', [m.version, m.name]);
        await client.query('commit');
      } catch (e) {
        await client.query('rollback');
        throw new Error(`migration ${m.name} failed: ${(e as Error).message}`, { cause: e });
      }
      applied.push(m.name);
      log(`applied migration ${m.name}`);
    }
  } finally {
    await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    await client.end();
  }
  return applied;
}
