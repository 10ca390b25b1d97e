// Login roles for the SQL audit surface (docs/graphql.md, docs/audit.md). Migration 0002 creates the
// NOLOGIN role `ledger_auditor` (SELECT on schema `audit` only); a person or a BI tool
// gets a LOGIN role that inherits it, so revoking one login never touches the others.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';
import { LedgerError } from './errors.ts';
import type { Db, Executor } from './schema.ts';

export const AUDITOR_ROLE = 'ledger_auditor';

/** Lower-case names need no quoting in psql or in connection strings. */
export const AUDITOR_LOGIN_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Session defaults of every auditor login (ALTER ROLE … SET); change them per login as needed. */
export const AUDITOR_SESSION_SETTINGS: readonly [string, string][] = [
  ['default_transaction_read_only', 'on'],
  ['statement_timeout', '5min'],
  ['idle_in_transaction_session_timeout', '10min'],
];

export interface AuditorLogin {
  name: string;
  /** false when the role existed already (as an auditor) and only its password was set */
  created: boolean;
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677), as
 * psql's \password computes it: the clear-text password never reaches the server or
 * its statement log.
 */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Creates LOGIN role `name` that inherits ledger_auditor, or sets the password of an
 * existing one. Refuses a name that belongs to a role that is not an auditor login, so
 * the command can never re-password an application or admin role. Run as a role with
 * CREATEROLE (the migration owner).
 */
export async function createAuditorLogin(db: Executor, name: string, password: string): Promise<AuditorLogin> {
  if (!AUDITOR_LOGIN_NAME.test(name)) {
    throw new LedgerError('InvalidParameter', `login name must match ${AUDITOR_LOGIN_NAME.source}`);
  }
  if (name === AUDITOR_ROLE) throw new LedgerError('InvalidParameter', `${AUDITOR_ROLE} itself cannot log in; pick another name`);
  if (password.length < 8) throw new LedgerError('InvalidParameter', 'password must have at least 8 characters');
  const verifier = scramVerifier(password);
  const run = async (tx: Executor): Promise<AuditorLogin> => {
    const { rows } = await sql<{ auditor: boolean; privileged: boolean }>`
      select pg_has_role(r.oid, ${AUDITOR_ROLE}, 'member') as auditor,
             r.rolsuper or r.rolcreaterole or r.rolcreatedb or r.rolreplication or r.rolbypassrls as privileged
      from pg_roles r where r.rolname = ${name}`.execute(tx);
    const existing = rows[0];
    if (existing && (!existing.auditor || existing.privileged)) {
      throw new LedgerError('InvalidParameter', `role ${name} exists and is not an auditor login; pick another name`);
    }
    // DDL takes no parameters: format() quotes the identifier and the literal server-side.
    const ddl = existing
      ? sql<{ ddl: string }>`select format('alter role %I with login password %L', ${name}::text, ${verifier}::text) as ddl`
      : sql<{ ddl: string }>`select format('create role %I with login nosuperuser nocreatedb nocreaterole inherit password %L in role ledger_auditor', ${name}::text, ${verifier}::text) as ddl`;
    const statement = (await ddl.execute(tx)).rows[0]?.ddl as string;
    try {
      await sql.raw(statement).execute(tx);
      // an audit session reads, and a runaway query must not hold the ledger's server hostage
      for (const [setting, value] of AUDITOR_SESSION_SETTINGS) {
        const set = await sql<{ ddl: string }>`select format('alter role %I set %I = %L', ${name}::text, ${setting}::text, ${value}::text) as ddl`.execute(tx);
        await sql.raw(set.rows[0]?.ddl as string).execute(tx);
      }
    } catch (e) {
      // another process created the same login between our check and our CREATE
      if ((e as { code?: string }).code === '42710') throw new LedgerError('InvalidParameter', `role ${name} was just created by someone else; run the command again`);
      throw e;
    }
    return { name, created: !existing };
  };
  return db.isTransaction ? run(db) : (db as Db).transaction().execute(run);
}

/** The connection string of `url`'s server and database, as `user` with `password`. */
export function auditorConnectionString(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  // the application role is set per connection by the app; an auditor logs in as itself
  u.searchParams.delete('options');
  return u.toString();
}

/** A password for a login created without --password: 24 URL-safe characters. */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

export interface AuditQueryResult {
  /** column names in order (duplicates kept) */
  columns: string[];
  /** PostgreSQL type OIDs of the columns, for alignment */
  columnTypes: number[];
  rows: unknown[][];
}

/**
 * Runs one statement of anyone's SQL the way an auditor would: in a READ ONLY transaction
 * on a connection whose role is ledger_auditor (open it with `role: AUDITOR_ROLE`), with a
 * statement timeout, rolled back afterwards. Parameters are bound ($1, $2, …), never
 * spliced, and the extended protocol refuses a second statement in the text. A convenience
 * for whoever holds DATABASE_URL, not a boundary against them: the boundary is a login made
 * by `audit-role` (docs/audit.md).
 */
export async function runAuditQuery(pool: pg.Pool, text: string, params: readonly unknown[], timeoutMs = 300_000): Promise<AuditQueryResult> {
  const client = await pool.connect();
  try {
    const { rows: who } = await client.query<{ role: string }>('select current_user as role');
    if (who[0]?.role !== AUDITOR_ROLE) {
      throw new LedgerError('InvalidParameter', `the connection acts as ${who[0]?.role ?? 'nobody'}, not ${AUDITOR_ROLE}`);
    }
    await client.query('begin read only');
    try {
      await client.query(`select set_config('statement_timeout', $1, true)`, [`${Math.max(1, Math.floor(timeoutMs))}ms`]);
      // extended protocol even without parameters: one statement, no `…; set role …` after it
      const query = { text, values: [...params], rowMode: 'array' as const, queryMode: 'extended' } as pg.QueryArrayConfig;
      const result = await client.query(query);
      const fields = result.fields ?? [];
      return { columns: fields.map((f) => f.name), columnTypes: fields.map((f) => f.dataTypeID), rows: (result.rows ?? []) as unknown[][] };
    } finally {
      await client.query('rollback').catch(() => {});
    }
  } finally {
    client.release();
  }
}
