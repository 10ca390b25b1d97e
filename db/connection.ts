// One place that opens the database: a pg Pool and the Kysely instance over it.
import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect, sql, type PostgresCursor, type PostgresPool, type PostgresPoolClient, type PostgresQueryResult } from 'kysely';
import pg from 'pg';
import type { Database, Db } from './schema.ts';
import { useFastTimestamptz } from './timestamptz.ts';

useFastTimestamptz();

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
  /**
   * 'transaction': the URL is a pooler in transaction mode (PgBouncer `pool_mode =
   * transaction`), where consecutive transactions of one client run on different server
   * connections, so nothing may be set per session. No startup options are sent (PgBouncer
   * refuses them) and no statement is named; the role must come from the login itself
   * (`ALTER ROLE … IN DATABASE … SET role = ledger_app`, docs/scale.md), and each new
   * client checks that it does. Default 'session' (a direct connection).
   */
  poolMode?: PoolMode;
}

export type PoolMode = 'session' | 'transaction';

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
  constructor(
    private readonly client: pg.PoolClient,
    private readonly prepared: boolean,
  ) {}

  query<R>(sql: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(sqlOrCursor: string | PostgresCursor<R>, parameters: readonly unknown[] = []): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof sqlOrCursor !== 'string') return this.client.query(sqlOrCursor as unknown as pg.Submittable) as unknown as PostgresCursor<R>;
    const values = [...parameters];
    const query = this.prepared && sqlOrCursor.startsWith(PREPARED) ? { name: preparedName(sqlOrCursor), text: sqlOrCursor, values } : { text: sqlOrCursor, values };
    return this.client.query(query) as unknown as Promise<PostgresQueryResult<R>>;
  }

  release(): void {
    this.client.release();
  }
}

/**
 * The pool Kysely is handed. Behind a transaction pooler, every new client first checks
 * that its login acts as `expectRole`: the role cannot be set per session there, and a
 * login that silently stayed itself (say the database's owner) would bypass the grants
 * that keep the ledger append-only. Every server connection of one login and database
 * gets the same role default, so one check per client stands for all of them.
 */
function kyselyPool(pool: pg.Pool, prepared: boolean, expectRole: string | null): PostgresPool {
  const checked = new WeakSet<pg.PoolClient>();
  return {
    connect: async () => {
      const client = await pool.connect();
      if (expectRole && !checked.has(client)) {
        try {
          const { rows } = await client.query<{ current_user: string; session_user: string }>('select current_user, session_user');
          const acting = rows[0]?.current_user;
          if (acting !== expectRole) {
            throw new Error(
              `DATABASE_POOL_MODE=transaction: the login ${rows[0]?.session_user ?? '?'} acts as ${acting ?? 'nobody'}, not ${expectRole}; ` +
                `a transaction pooler cannot set the role per connection, so give the login that role in the database: ` +
                `ALTER ROLE <login> IN DATABASE <database> SET role = ${expectRole} (docs/scale.md)`,
            );
          }
          checked.add(client);
        } catch (e) {
          client.release(true);
          throw e;
        }
      }
      return new PreparingClient(client, prepared);
    },
    end: () => pool.end(),
  };
}

export const DEFAULT_APP_ROLE = 'ledger_app';

export function openDatabase(url: string, options: OpenOptions = {}): DatabaseHandle {
  const role = options.role ?? DEFAULT_APP_ROLE;
  // DATABASE_POOL_MODE from the environment too, so every CLI command behind a pooler works as `start` does
  const pooled = (options.poolMode ?? process.env.DATABASE_POOL_MODE) === 'transaction';
  // a transaction pooler keeps no named statement and takes no startup options
  const prepared = options.preparedStatements !== false && !pooled;
  const startupOptions = pooled ? [] : [...(role ? [`-c role=${role}`] : []), ...(prepared ? ['-c plan_cache_mode=force_generic_plan'] : [])];
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
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: prepared || pooled ? kyselyPool(pool, prepared, pooled && role ? role : null) : pool }) });
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

/** The health check's question: does the database answer a trivial statement? */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}

/** Whether a server answers at `url` within a second (a login, one trivial statement). */
export async function databaseAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}
