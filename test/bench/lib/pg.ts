// Scratch databases for the benchmark: every scenario gets a fresh one on the same server
// and drops it afterwards, so scenarios do not see each other's tables or bloat.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { databaseUrl } from '../../helpers/pg-admin.ts';

export const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export function adminUrl(): string {
  return process.env.DATABASE_URL || DEFAULT_ADMIN_URL;
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface ScratchDatabase {
  name: string;
  /** as the login role (owner); the app processes SET ROLE ledger_app themselves */
  url: string;
  drop(): Promise<void>;
}

export async function createScratchDatabase(label: string): Promise<ScratchDatabase> {
  const admin = adminUrl();
  const name = `bench_${label.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  await withClient(admin, (c) => c.query(`create database "${name}"`));
  return {
    name,
    url: databaseUrl(admin, name),
    drop: () => withClient(admin, (c) => c.query(`drop database if exists "${name}" with (force)`)).then(() => undefined),
  };
}

export async function serverInfo(): Promise<{ version: string; settings: Record<string, string> }> {
  return withClient(adminUrl(), async (c) => {
    const version = (await c.query<{ v: string }>('select version() as v')).rows[0]?.v ?? '';
    const { rows } = await c.query<{ name: string; setting: string; unit: string | null }>(
      `select name, setting, unit from pg_settings where name = any($1)`,
      [['max_connections', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size']],
    );
    return { version, settings: Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting])) };
  });
}
