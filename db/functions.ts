// The function registry: a name points at its latest immutable version; every change
// writes a new version row, and an invocation records the version it ran with.
import { sql } from 'kysely';
import { z } from 'zod';
import { LedgerError } from './errors.ts';
import type { Db, Executor } from './schema.ts';

export const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const destination = z
  .string()
  .regex(/^(function:[A-Za-z0-9_-]{1,64}|https?:\/\/\S+)$/, 'a destination is function:<name> or an http(s):// URL')
  .nullable();

/** Every option of a function version, with the defaults of docs/worker.md. */
const functionConfigFields = z
  .object({
    runtime: z.enum(['MODULE', 'HTTP']),
    handler: z.string().min(1).max(1024).nullable().default(null),
    url: z.url({ protocol: /^https?$/, error: 'url must be an http(s) URL' }).nullable().default(null),
    timeoutMs: z.number().int().min(1).max(900_000).default(3_000),
    memoryMb: z.number().int().min(16).max(10_240).default(256),
    maxRetries: z.number().int().min(0).max(10).default(2),
    retryBaseDelayMs: z.number().int().min(0).max(3_600_000).default(60_000),
    retryMaxDelayMs: z.number().int().min(0).max(86_400_000).default(900_000),
    maxEventAgeSeconds: z.number().int().min(60).max(21_600).default(21_600),
    reservedConcurrency: z.number().int().min(0).max(100_000).nullable().default(null),
    onSuccess: destination.default(null),
    onFailure: destination.default(null),
    isolation: z.enum(['thread', 'inline']).default('thread'),
    secret: z.string().min(1).max(512).nullable().default(null),
    /** content hash of a FUNCTIONS_DIR file, so that changed code becomes a new version */
    codeHash: z.string().max(128).nullable().default(null),
    /**
     * the code package (ledger.code_packages, hex SHA-256) the handler is loaded from; the
     * handler is then Lambda's `file.export` inside it (docs/control-plane.md)
     */
    codeSha256: z.string().regex(/^[0-9a-f]{64}$/).nullable().default(null),
    /** Lambda's Environment.Variables: what process.env shows the handler (thread isolation) */
    environment: z.record(z.string(), z.string()).default({}),
    description: z.string().max(256).default(''),
    /** Lambda's Runtime and Role as given (nodejs20.x…); recorded and shown, not interpreted */
    lambdaRuntime: z.string().max(64).nullable().default(null),
    role: z.string().max(2048).nullable().default(null),
    /** epoch seconds of the last Put/UpdateFunctionEventInvokeConfig; null: none is set */
    eventInvokeConfigAt: z.number().int().nullable().default(null),
  })
  .strict();

export const functionConfigSchema = functionConfigFields.superRefine((c, ctx) => {
    if (c.runtime === 'MODULE' && !c.handler) ctx.addIssue({ code: 'custom', path: ['handler'], message: 'a MODULE function needs a handler' });
    if (c.runtime === 'HTTP' && !c.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'an HTTP function needs a url' });
    if (c.runtime === 'MODULE' && c.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'url is for HTTP functions' });
    if (c.runtime === 'HTTP' && c.handler) ctx.addIssue({ code: 'custom', path: ['handler'], message: 'handler is for MODULE functions' });
  });

// Credentials in a URL would be copied into every error about it, and events are never
// deleted (docs/security.md, "Secrets in URLs").
const CREDENTIALS_REFUSED = {
  url: 'must not carry credentials (user:password@): set the function\'s secret and verify X-Ledger-Signature at the endpoint instead',
  onSuccess: 'must not carry credentials (user:password@): use a function: destination that calls the endpoint with its own credentials',
  onFailure: 'must not carry credentials (user:password@): use a function: destination that calls the endpoint with its own credentials',
} as const;

function hasCredentials(url: string | null): boolean {
  if (!url || !/^https?:/i.test(url)) return false;
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return /^[^/]*\/\/[^/?#]*@/.test(url);
  }
}

export type FunctionConfig = z.output<typeof functionConfigSchema>;
export type FunctionConfigInput = z.input<typeof functionConfigSchema>;

export interface FunctionVersion extends FunctionConfig {
  name: string;
  version: number;
  createdAt: Date;
}

/**
 * Versions are never deleted; if one is missing anyway, its attempt fails (no handler)
 * under the defaults of docs/worker.md, taken from the schema above.
 */
export function missingVersion(row: { function_name: string; function_version: number }): FunctionVersion {
  return { ...functionConfigFields.parse({ runtime: 'MODULE' }), name: row.function_name, version: row.function_version, createdAt: new Date(0) };
}

/** Checks that cannot live here because they depend on the process (FUNCTIONS_DIR, SSRF allowlist). */
export interface RegistryChecks {
  handler?: (handler: string) => void;
  url?: (url: string) => void;
}

function parseConfig(input: unknown, checks: RegistryChecks): FunctionConfig {
  const parsed = functionConfigSchema.safeParse(input);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
    throw new LedgerError('InvalidFunctionConfig', msg, { issues: parsed.error.issues });
  }
  const config = parsed.data;
  // checked on write only: a version stored before this rule still reads (and fails redacted)
  const credentials = (['url', 'onSuccess', 'onFailure'] as const).filter((k) => hasCredentials(config[k]));
  if (credentials.length > 0) {
    throw new LedgerError('InvalidFunctionConfig', credentials.map((k) => `${k}: ${CREDENTIALS_REFUSED[k]}`).join('; '));
  }
  try {
    if (config.handler) checks.handler?.(config.handler);
    if (config.url) checks.url?.(config.url);
    for (const d of [config.onSuccess, config.onFailure]) if (d?.startsWith('http')) checks.url?.(d);
  } catch (e) {
    throw new LedgerError('InvalidFunctionConfig', (e as Error).message);
  }
  return config;
}

export function assertFunctionName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !FUNCTION_NAME.test(name)) {
    throw new LedgerError('InvalidParameter', `function name must match ${FUNCTION_NAME.source}`);
  }
}

interface VersionRow {
  name: string;
  version: number;
  config: Record<string, unknown>;
  created_at: Date;
}

const toVersion = (r: VersionRow): FunctionVersion => ({
  ...functionConfigSchema.parse(r.config),
  name: r.name,
  version: r.version,
  createdAt: r.created_at,
});

/** Runs `run` in `db`'s transaction when it is one, else in a new one. */
export function inTransaction<T>(db: Executor, run: (tx: Executor) => Promise<T>): Promise<T> {
  return db.isTransaction ? run(db) : (db as Db).transaction().execute(run);
}

async function writeVersion(tx: Executor, name: string, version: number, config: FunctionConfig): Promise<FunctionVersion> {
  const { rows } = await sql<VersionRow>`
    insert into ledger.function_versions (name, version, config) values (${name}, ${version}, ${JSON.stringify(config)}::jsonb)
    returning name, version, config, created_at`.execute(tx);
  await syncConcurrency(tx, name, config.reservedConcurrency);
  return toVersion(rows[0] as VersionRow);
}

async function syncConcurrency(tx: Executor, name: string, reserved: number | null): Promise<void> {
  if (reserved === null) {
    await tx.deleteFrom('ledger.function_concurrency').where('name', '=', name).execute();
  } else {
    await tx
      .insertInto('ledger.function_concurrency')
      .values({ name, reserved })
      .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ reserved: eb.ref('excluded.reserved') })))
      .execute();
  }
}

/** Creates a function (version 1), or revives a deleted name with its next version. */
export async function createFunction(
  db: Executor,
  name: string,
  input: unknown,
  checks: RegistryChecks = {},
): Promise<FunctionVersion> {
  assertFunctionName(name);
  const config = parseConfig(input, checks);
  return inTransaction(db, async (tx) => {
    // One statement decides: a concurrent create of the same name waits for ours to commit,
    // then finds the name live (the WHERE is checked against the committed row) and
    // returns nothing. A SELECT … FOR UPDATE first would lock nothing for a new name.
    const { rows } = await sql<{ latest_version: number }>`
      insert into ledger.functions as f (name, latest_version) values (${name}, 1)
      on conflict (name) do update set latest_version = f.latest_version + 1, first_version = f.latest_version + 1,
        deleted_at = null, updated_at = now()
        where f.deleted_at is not null
      returning latest_version`.execute(tx);
    if (!rows[0]) throw new LedgerError('FunctionExists', `function ${name} already exists`);
    return writeVersion(tx, name, rows[0].latest_version, config);
  });
}

/** Applies a partial change as a new version; returns the current one when nothing changed. */
export async function updateFunction(
  db: Executor,
  name: string,
  patch: Record<string, unknown>,
  checks: RegistryChecks = {},
): Promise<FunctionVersion> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    const current = await lockLatest(tx, name);
    const { name: _n, version: _v, createdAt: _c, ...currentConfig } = current;
    const merged = { ...currentConfig, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) };
    const config = parseConfig(merged, checks);
    if (JSON.stringify(config) === JSON.stringify(functionConfigSchema.parse(currentConfig))) return current;
    const version = current.version + 1;
    await tx.updateTable('ledger.functions').set({ latest_version: version, updated_at: sql<Date>`now()` }).where('name', '=', name).execute();
    return writeVersion(tx, name, version, config);
  });
}

/** Registers a function from a file: creates it, or adds a version when its config changed. */
export async function upsertFunction(db: Db, name: string, input: unknown, checks: RegistryChecks = {}): Promise<FunctionVersion> {
  const existing = await getFunction(db, name);
  if (!existing) {
    try {
      return await createFunction(db, name, input, checks);
    } catch (e) {
      // another process registered it first; fall through to an update
      if (!(e instanceof LedgerError && e.code === 'FunctionExists')) throw e;
    }
  }
  const config = parseConfig(input, checks);
  return updateFunction(db, name, config, checks);
}

/** Hides the function from the API; its versions and invocations stay in the ledger. */
export async function deleteFunction(db: Executor, name: string): Promise<boolean> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    const { numUpdatedRows } = await tx
      .updateTable('ledger.functions')
      .set({ deleted_at: new Date(), updated_at: new Date() })
      .where('name', '=', name)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    if (numUpdatedRows === 0n) throw new LedgerError('FunctionNotFound', `function ${name} does not exist`);
    await tx.deleteFrom('ledger.function_concurrency').where('name', '=', name).execute();
    // an alias names versions of this life of the function; its history stays in ledger.changes
    await tx.deleteFrom('ledger.function_aliases').where('name', '=', name).execute();
    return true;
  });
}

/**
 * Locks the function's row and reads its latest version. Two statements on purpose: a row
 * locked after a concurrent update is re-read, but a joined version row is not, so one
 * statement would join the new latest_version with the old version row and find nothing.
 */
export async function lockLatest(tx: Executor, name: string): Promise<FunctionVersion> {
  const { rows: locked } = await sql<{ latest_version: number }>`
    select latest_version from ledger.functions where name = ${name} and deleted_at is null for update`.execute(tx);
  if (!locked[0]) throw new LedgerError('FunctionNotFound', `function ${name} does not exist`);
  const { rows } = await sql<VersionRow>`
    select name, version, config, created_at from ledger.function_versions
    where name = ${name} and version = ${locked[0].latest_version}`.execute(tx);
  if (!rows[0]) throw new LedgerError('FunctionNotFound', `function ${name} has no version ${locked[0].latest_version}`);
  return toVersion(rows[0]);
}

/** The latest version, or a given one; null when the function (or version) does not exist. */
export async function getFunction(db: Executor, name: string, version?: number): Promise<FunctionVersion | null> {
  if (!FUNCTION_NAME.test(name)) return null;
  const { rows } =
    version === undefined
      ? await sql<VersionRow>`
          select v.name, v.version, v.config, v.created_at
          from ledger.functions f join ledger.function_versions v on v.name = f.name and v.version = f.latest_version
          where f.name = ${name} and f.deleted_at is null`.execute(db)
      : await sql<VersionRow>`
          select v.name, v.version, v.config, v.created_at
          from ledger.functions f join ledger.function_versions v on v.name = f.name
          where f.name = ${name} and f.deleted_at is null and v.version = ${version}`.execute(db);
  return rows[0] ? toVersion(rows[0]) : null;
}

export async function requireFunction(db: Executor, name: string, version?: number): Promise<FunctionVersion> {
  assertFunctionName(name); // a name that can never exist is a bad request, not a missing function
  const fn = await getFunction(db, name, version);
  if (!fn) {
    throw new LedgerError(
      'FunctionNotFound',
      version === undefined ? `Function not found: ${name}` : `Function not found: ${name}:${version}`,
    );
  }
  return fn;
}

export async function listFunctions(db: Executor): Promise<FunctionVersion[]> {
  const { rows } = await sql<VersionRow>`
    select v.name, v.version, v.config, v.created_at
    from ledger.functions f join ledger.function_versions v on v.name = f.name and v.version = f.latest_version
    where f.deleted_at is null order by f.name`.execute(db);
  return rows.map(toVersion);
}

/** Every version of a function, newest first (at most `limit`); empty when it does not exist. */
export async function listFunctionVersions(db: Executor, name: string, limit = 100): Promise<FunctionVersion[]> {
  if (!FUNCTION_NAME.test(name)) return [];
  const { rows } = await sql<VersionRow>`
    select v.name, v.version, v.config, v.created_at
    from ledger.functions f join ledger.function_versions v on v.name = f.name
    where f.name = ${name} and f.deleted_at is null
    order by v.version desc limit ${limit}`.execute(db);
  return rows.map(toVersion);
}

/**
 * Versions are immutable, so a process may cache them forever by (name, version).
 * Used on hot paths (claims, completions) where the config of a known version is needed.
 */
export class FunctionVersionCache {
  private readonly versions = new Map<string, Promise<FunctionVersion | null>>();
  constructor(private readonly db: Executor) {}
  get(name: string, version: number): Promise<FunctionVersion | null> {
    const key = `${name}\u0000${version}`;
    let hit = this.versions.get(key);
    if (!hit) {
      hit = this.loadAnyVersion(name, version);
      this.versions.set(key, hit);
      // a miss is not cached: the version may be written a moment later
      hit.then((v) => v ?? this.versions.delete(key), () => this.versions.delete(key));
    }
    return hit;
  }
  /** a deleted function's versions still run their queued invocations */
  private async loadAnyVersion(name: string, version: number): Promise<FunctionVersion | null> {
    const { rows } = await sql<VersionRow>`
      select name, version, config, created_at from ledger.function_versions
      where name = ${name} and version = ${version}`.execute(this.db);
    return rows[0] ? toVersion(rows[0]) : null;
  }
}
