// One place that opens the database: a pg Pool and the Kysely instance over it.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database, Db } from './schema.ts';

// int8 stays a string (positions exceed 2^53 in principle); numeric too.
// count(*) results are cast to int in SQL where a number is wanted.

export interface DatabaseHandle {
  db: Db;
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** pool size */
  max?: number;
  /** role the application acts as (SET ROLE at connect); '' to stay the login role */
  role?: string;
  applicationName?: string;
}

export const DEFAULT_APP_ROLE = 'ledger_app';

export function openDatabase(url: string, options: OpenOptions = {}): DatabaseHandle {
  const role = options.role ?? process.env.LEDGER_DB_ROLE ?? DEFAULT_APP_ROLE;
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'invoke-ledger',
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // the role is part of the startup packet, so every connection acts as it from the start
    ...(role ? { options: `-c role=${role}` } : {}),
  });
  // A connection lost to a database restart must not crash the process: idle clients
  // report through the pool; a checked-out client (between two queries of a transaction)
  // emits on itself. pg-pool drops clients that are no longer queryable on release.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    pool,
    url,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

/** A single client outside any pool (LISTEN, migrations, admin work). */
export async function connectClient(url: string, role = ''): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 5_000,
    ...(role ? { options: `-c role=${role}` } : {}),
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}
