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

/** Every option of a function version, with the defaults of ledger.md §2. */
export const functionConfigSchema = z
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
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.runtime === 'MODULE' && !c.handler) ctx.addIssue({ code: 'custom', path: ['handler'], message: 'a MODULE function needs a handler' });
    if (c.runtime === 'HTTP' && !c.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'an HTTP function needs a url' });
    if (c.runtime === 'MODULE' && c.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'url is for HTTP functions' });
    if (c.runtime === 'HTTP' && c.handler) ctx.addIssue({ code: 'custom', path: ['handler'], message: 'handler is for MODULE functions' });
  });

export type FunctionConfig = z.output<typeof functionConfigSchema>;
export type FunctionConfigInput = z.input<typeof functionConfigSchema>;

export interface FunctionVersion extends FunctionConfig {
  name: string;
  version: number;
  createdAt: Date;
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

async function writeVersion(tx: Executor, name: string, version: number, config: FunctionConfig): Promise<FunctionVersion> {
  const { rows } = await sql<VersionRow>`
    insert into ledger.function_versions (name, version, config) values (${name}, ${version}, ${JSON.stringify(config)}::jsonb)
    returning name, version, config, created_at`.execute(tx);
  await syncConcurrency(tx, name, config.reservedConcurrency);
  return toVersion(rows[0] as VersionRow);
}

async function syncConcurrency(tx: Executor, name: string, reserved: number | null): Promise<void> {
  if (reserved === null) {
    await sql`delete from ledger.function_concurrency where name = ${name}`.execute(tx);
  } else {
    await sql`
      insert into ledger.function_concurrency (name, reserved) values (${name}, ${reserved})
      on conflict (name) do update set reserved = excluded.reserved`.execute(tx);
  }
}

/** Creates a function (version 1), or revives a deleted name with its next version. */
export async function createFunction(
  db: Db,
  name: string,
  input: unknown,
  checks: RegistryChecks = {},
): Promise<FunctionVersion> {
  assertFunctionName(name);
  const config = parseConfig(input, checks);
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<{ latest_version: number; deleted_at: Date | null }>`
      select latest_version, deleted_at from ledger.functions where name = ${name} for update`.execute(tx);
    const existing = rows[0];
    if (existing && !existing.deleted_at) throw new LedgerError('FunctionExists', `function ${name} already exists`);
    const version = (existing?.latest_version ?? 0) + 1;
    await sql`
      insert into ledger.functions (name, latest_version) values (${name}, ${version})
      on conflict (name) do update set latest_version = excluded.latest_version, deleted_at = null, updated_at = now()`.execute(tx);
    return writeVersion(tx, name, version, config);
  });
}

/** Applies a partial change as a new version; returns the current one when nothing changed. */
export async function updateFunction(
  db: Db,
  name: string,
  patch: Record<string, unknown>,
  checks: RegistryChecks = {},
): Promise<FunctionVersion> {
  assertFunctionName(name);
  return db.transaction().execute(async (tx) => {
    const current = await lockLatest(tx, name);
    const { name: _n, version: _v, createdAt: _c, ...currentConfig } = current;
    const merged = { ...currentConfig, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) };
    const config = parseConfig(merged, checks);
    if (JSON.stringify(config) === JSON.stringify(functionConfigSchema.parse(currentConfig))) return current;
    const version = current.version + 1;
    await sql`update ledger.functions set latest_version = ${version}, updated_at = now() where name = ${name}`.execute(tx);
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
export async function deleteFunction(db: Db, name: string): Promise<boolean> {
  assertFunctionName(name);
  const { numUpdatedRows } = await db
    .updateTable('ledger.functions')
    .set({ deleted_at: new Date(), updated_at: new Date() })
    .where('name', '=', name)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  if (numUpdatedRows === 0n) throw new LedgerError('FunctionNotFound', `function ${name} does not exist`);
  await sql`delete from ledger.function_concurrency where name = ${name}`.execute(db);
  return true;
}

async function lockLatest(tx: Executor, name: string): Promise<FunctionVersion> {
  const { rows } = await sql<VersionRow>`
    select v.name, v.version, v.config, v.created_at
    from ledger.functions f join ledger.function_versions v on v.name = f.name and v.version = f.latest_version
    where f.name = ${name} and f.deleted_at is null
    for update of f`.execute(tx);
  if (!rows[0]) throw new LedgerError('FunctionNotFound', `function ${name} does not exist`);
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
