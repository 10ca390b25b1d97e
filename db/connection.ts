// One place that opens the database: a pg Pool and the Kysely instance over it.
import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect, type PostgresCursor, type PostgresPool, type PostgresPoolClient, type PostgresQueryResult } from 'kysely';
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
  /**
   * Send statements marked with PREPARED as named prepared statements (default true).
   * Off for poolers that cannot keep them (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

/**
 * A statement whose text starts with this comment is prepared once per connection and
 * then only bound and executed: no parse, and once PostgreSQL settles on a generic plan,
 * no planning. For the few hot statements with a fixed text (the ledger writer), where
 * parse and plan were half of the statement's server time. Kysely has no way to name a
 * statement, so the pool handed to it does the naming.
 */
export const PREPARED = '/* prepared */';

const preparedNames = new Map<string, string>();
function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (name === undefined) {
    // the text decides the name: two texts never share one, which pg refuses
    name = `ledger_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    preparedNames.set(text, name);
  }
  return name;
}

/** What Kysely is handed: the pool's clients, naming the statements marked PREPARED. */
class PreparingClient implements PostgresPoolClient {
  constructor(private readonly client: pg.PoolClient) {}

  query<R>(sql: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(sqlOrCursor: string | PostgresCursor<R>, parameters: readonly unknown[] = []): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof sqlOrCursor !== 'string') return this.client.query(sqlOrCursor as unknown as pg.Submittable) as unknown as PostgresCursor<R>;
    const values = [...parameters];
    const query = sqlOrCursor.startsWith(PREPARED) ? { name: preparedName(sqlOrCursor), text: sqlOrCursor, values } : { text: sqlOrCursor, values };
    return this.client.query(query) as unknown as Promise<PostgresQueryResult<R>>;
  }

  release(): void {
    this.client.release();
  }
}

function preparingPool(pool: pg.Pool): PostgresPool {
  return { connect: async () => new PreparingClient(await pool.connect()), end: () => pool.end() };
}

export const DEFAULT_APP_ROLE = 'ledger_app';

export function openDatabase(url: string, options: OpenOptions = {}): DatabaseHandle {
  const role = options.role ?? process.env.LEDGER_DB_ROLE ?? DEFAULT_APP_ROLE;
  const prepared = options.preparedStatements !== false;
  const startupOptions = [...(role ? [`-c role=${role}`] : []), ...(prepared ? ['-c plan_cache_mode=force_generic_plan'] : [])];
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'invoke-ledger',
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // startup options, so every connection has them from the start: the role, and for the
    // named (PREPARED) statements a generic plan from the first execution: PostgreSQL's
    // default kept planning the writer for each batch's array sizes. Unnamed statements,
    // everything else, are planned per execution whatever this says.
    ...(startupOptions.length ? { options: startupOptions.join(' ') } : {}),
  });
  // A connection lost to a database restart must not crash the process: idle clients
  // report through the pool; a checked-out client (between two queries of a transaction)
  // emits on itself. pg-pool drops clients that are no longer queryable on release.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: prepared ? preparingPool(pool) : pool }) });
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
