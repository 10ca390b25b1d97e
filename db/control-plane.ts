// The control plane's one implementation (docs/control-plane.md): create a function from a
// code package, change its code or configuration, publish versions, move aliases, set
// concurrency and event invoke configuration, delete. The Lambda routes, GraphQL and the
// CLI all call these. Each write runs in one transaction with its row in ledger.changes
// (db/changes.ts), so the history says exactly what happened, by whom and when, and a
// refused write leaves nothing behind: not the change, not the uploaded package.
//
// A function's revision (Lambda's RevisionId) is the seq of its stream in ledger.changes;
// an alias has its own stream, `alias` / `<function>:<alias>`.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { appendChange, latestChangeSeq, toChange, type Change, type ChangeRow } from './changes.ts';
import { storeCodePackage } from './code/index.ts';
import { LedgerError } from './errors.ts';
import {
  assertFunctionName,
  createFunction,
  functionConfigSchema,
  inTransaction,
  lockLatest,
  updateFunction,
  type FunctionConfig,
  type FunctionConfigInput,
  type FunctionVersion,
  type RegistryChecks,
} from './functions.ts';
import type { Executor } from './schema.ts';

/** Who makes a change: recorded with it. */
export interface ChangeContext {
  /** an API key id, `cli:<user>`, `startup`; `anonymous` when auth is off */
  actor: string;
  requestId?: string | undefined;
}

/** Code as uploaded (a zip) or as already stored (its hex SHA-256). */
export type CodeSource = { zip: Uint8Array } | { sha256: string };

export interface ManagedFunction {
  fn: FunctionVersion;
  /** the function's revision after the operation (Lambda's RevisionId) */
  revision: number;
}

const FUNCTION = 'function';
const ALIAS = 'alias';

/**
 * What ledger.changes keeps of an environment variable's value (docs/changes.md): not the
 * value, which may be a secret, but `sha256:` of `function NUL name NUL value`, so an
 * auditor sees which variables changed and can check a value they know, without the
 * history handing anyone the values.
 */
export function environmentValueDigest(functionName: string, variable: string, value: string): string {
  return `sha256:${createHash('sha256').update(`${functionName}\0${variable}\0${value}`, 'utf8').digest('hex')}`;
}

/** Never copied into the ledger: the HTTP signing secret, environment variable values (only their digests). */
function recordable(functionName: string, config: Partial<FunctionConfig>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  if (out['secret'] != null) out['secret'] = '(set)';
  if (config.environment) {
    out['environment'] = Object.fromEntries(Object.entries(config.environment).map(([k, v]) => [k, environmentValueDigest(functionName, k, v)]));
  }
  return out;
}

function configOf(fn: FunctionVersion): FunctionConfig {
  const { name: _n, version: _v, createdAt: _c, ...config } = fn;
  return functionConfigSchema.parse(config);
}

/** The keys whose values differ, before and after. */
function diff(functionName: string, before: FunctionConfig, after: FunctionConfig): { before: Record<string, unknown>; after: Record<string, unknown> } {
  const b: Record<string, unknown> = {};
  const a: Record<string, unknown> = {};
  for (const key of Object.keys(after) as (keyof FunctionConfig)[]) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) {
      b[key] = before[key];
      a[key] = after[key];
    }
  }
  return { before: recordable(functionName, b), after: recordable(functionName, a) };
}

async function storeCode(tx: Executor, code: CodeSource): Promise<string> {
  if ('sha256' in code) {
    const { rows } = await sql<{ found: boolean }>`select exists (select 1 from ledger.code_packages where sha256 = ${code.sha256}) as found`.execute(tx);
    if (!rows[0]?.found) throw new LedgerError('CodePackageNotFound', `No code package with SHA-256 ${code.sha256}`);
    return code.sha256;
  }
  return (await storeCodePackage(tx, code.zip)).sha256;
}

/**
 * A FUNCTIONS_DIR file packed as a code package (docs/control-plane.md#functions_dir-at-start):
 * stored content-addressed in the change's transaction, and named by the version's
 * `codeHash`, so a host without the file loads it from the database. Unlike `codeSha256`
 * it does not make the function package code: a host with the file runs it as before.
 */
export interface FilePackage {
  zip: Uint8Array;
}

async function storeFilePackage(tx: Executor, p: FilePackage): Promise<string> {
  return (await storeCodePackage(tx, p.zip)).sha256;
}

async function checkRevision(tx: Executor, type: string, name: string, expected: number | undefined): Promise<number> {
  const seq = await latestChangeSeq(tx, type, name);
  if (expected !== undefined && expected !== seq) {
    throw new LedgerError('RevisionConflict', `The Revision Id provided does not match the latest Revision Id. Call the Get operation to get the latest Revision Id`, {
      resourceType: type,
      resourceName: name,
      expectedSeq: expected,
    });
  }
  return seq;
}

/** Creates a function whose code is a package; `publish` also publishes version 1 of it. */
export async function createManagedFunction(
  db: Executor,
  ctx: ChangeContext,
  name: string,
  config: FunctionConfigInput,
  code: CodeSource | null,
  options: { publish?: boolean; checks?: RegistryChecks; filePackage?: FilePackage } = {},
): Promise<ManagedFunction & { published: number | null }> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    if (options.filePackage) config = { ...config, codeHash: await storeFilePackage(tx, options.filePackage) };
    const codeSha256 = code ? await storeCode(tx, code) : (config.codeSha256 ?? null);
    const fn = await createFunction(tx, name, { ...config, codeSha256 }, options.checks);
    const change = await appendChange(tx, {
      resourceType: FUNCTION,
      resourceName: name,
      action: 'created',
      actor: ctx.actor,
      requestId: ctx.requestId,
      data: { version: fn.version, codeSha256, after: recordable(name, configOf(fn)) },
    });
    let published: number | null = null;
    let revision = change.seq;
    if (options.publish) {
      const p = await publishInTx(tx, ctx, name, {});
      published = p.version;
      revision = p.revision;
    }
    return { fn, revision, published };
  });
}

/**
 * Changes a function's configuration (and code) as one new version; nothing is written
 * when nothing changed. `action` names the change in the ledger.
 */
export async function changeFunction(
  db: Executor,
  ctx: ChangeContext,
  name: string,
  action: string,
  patch: Partial<FunctionConfigInput>,
  options: {
    code?: CodeSource | null;
    expectedRevision?: number | undefined;
    checks?: RegistryChecks;
    data?: Record<string, unknown>;
    filePackage?: FilePackage;
  } = {},
): Promise<ManagedFunction & { changed: boolean }> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    const current = await lockLatest(tx, name); // serialises writers of this function
    const seq = await checkRevision(tx, FUNCTION, name, options.expectedRevision);
    const full: Record<string, unknown> = { ...patch };
    if (options.filePackage) full['codeHash'] = await storeFilePackage(tx, options.filePackage);
    if (options.code) full['codeSha256'] = await storeCode(tx, options.code);
    const fn = await updateFunction(tx, name, full, options.checks);
    if (fn.version === current.version) return { fn, revision: seq, changed: false };
    const change = await appendChange(tx, {
      resourceType: FUNCTION,
      resourceName: name,
      action,
      actor: ctx.actor,
      requestId: ctx.requestId,
      expectedSeq: seq,
      data: { version: fn.version, codeSha256: fn.codeSha256, ...diff(name, configOf(current), configOf(fn)), ...options.data },
    });
    return { fn, revision: change.seq, changed: true };
  });
}

/** Deletes a function with its aliases; its versions and history stay in the ledger. */
export async function deleteManagedFunction(db: Executor, ctx: ChangeContext, name: string): Promise<Change> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    const current = await lockLatest(tx, name);
    const { rows: aliases } = await sql<{ alias: string }>`select alias from ledger.function_aliases where name = ${name} order by alias`.execute(tx);
    await sql`update ledger.functions set deleted_at = now(), updated_at = now() where name = ${name}`.execute(tx);
    await sql`delete from ledger.function_concurrency where name = ${name}`.execute(tx);
    await sql`delete from ledger.function_aliases where name = ${name}`.execute(tx);
    for (const { alias } of aliases) {
      await appendChange(tx, { resourceType: ALIAS, resourceName: `${name}:${alias}`, action: 'deleted', actor: ctx.actor, requestId: ctx.requestId, data: { reason: 'function deleted' } });
    }
    return appendChange(tx, {
      resourceType: FUNCTION,
      resourceName: name,
      action: 'deleted',
      actor: ctx.actor,
      requestId: ctx.requestId,
      data: { version: current.version, before: recordable(name, configOf(current)) },
    });
  });
}

// ---- versions ----

export interface PublishedVersion {
  fn: FunctionVersion;
  version: number;
  description: string;
  publishedAt: Date;
}

async function publishInTx(
  tx: Executor,
  ctx: ChangeContext,
  name: string,
  o: { codeSha256?: string | undefined; description?: string | undefined; expectedRevision?: number | undefined },
): Promise<{ version: number; revision: number; created: boolean }> {
  const current = await lockLatest(tx, name);
  const seq = await checkRevision(tx, FUNCTION, name, o.expectedRevision);
  if (o.codeSha256 !== undefined && o.codeSha256 !== current.codeSha256) {
    throw new LedgerError('RevisionConflict', `CodeSha256 (${o.codeSha256}) is different from the current code (${current.codeSha256 ?? 'none'}): the code changed since it was read`);
  }
  // nothing changed since the last published version: Lambda answers with that one
  const { rows: last } = await sql<{ version: number; config: Record<string, unknown> }>`
    select p.version, v.config from ledger.published_versions p
    join ledger.function_versions v on v.name = p.name and v.version = p.version
    join ledger.functions f on f.name = p.name
    where p.name = ${name} and p.version >= f.first_version
    order by p.version desc limit 1`.execute(tx);
  const lastPublished = last[0];
  if (lastPublished && (lastPublished.version === current.version || sameRunnable(functionConfigSchema.parse(lastPublished.config), configOf(current)))) {
    return { version: lastPublished.version, revision: seq, created: false };
  }
  const description = o.description ?? '';
  if (description.length > 256) throw new LedgerError('InvalidParameter', 'Description must be at most 256 characters');
  await sql`insert into ledger.published_versions (name, version, description) values (${name}, ${current.version}, ${description})`.execute(tx);
  const change = await appendChange(tx, {
    resourceType: FUNCTION,
    resourceName: name,
    action: 'published',
    actor: ctx.actor,
    requestId: ctx.requestId,
    expectedSeq: seq,
    data: { version: current.version, codeSha256: current.codeSha256, description },
  });
  return { version: current.version, revision: change.seq, created: true };
}

/** What a published version freezes: code and configuration, not the function-wide settings. */
function sameRunnable(a: FunctionConfig, b: FunctionConfig): boolean {
  const strip = (c: FunctionConfig) => ({ ...c, reservedConcurrency: null, eventInvokeConfigAt: null });
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}

/** Lambda's PublishVersion: freezes the current version under its number. */
export async function publishVersion(
  db: Executor,
  ctx: ChangeContext,
  name: string,
  o: { codeSha256?: string | undefined; description?: string | undefined; expectedRevision?: number | undefined } = {},
): Promise<{ version: number; revision: number; created: boolean }> {
  assertFunctionName(name);
  return inTransaction(db, (tx) => publishInTx(tx, ctx, name, o));
}

/** Published versions of the function's current life, oldest first. */
export async function listPublishedVersions(db: Executor, name: string): Promise<PublishedVersion[]> {
  const { rows } = await sql<{ version: number; description: string; published_at: Date; config: Record<string, unknown>; created_at: Date }>`
    select p.version, p.description, p.published_at, v.config, v.created_at
    from ledger.published_versions p
    join ledger.functions f on f.name = p.name and f.deleted_at is null
    join ledger.function_versions v on v.name = p.name and v.version = p.version
    where p.name = ${name} and p.version >= f.first_version
    order by p.version`.execute(db);
  return rows.map((r) => ({
    fn: { ...functionConfigSchema.parse(r.config), name, version: r.version, createdAt: r.created_at },
    version: r.version,
    description: r.description,
    publishedAt: r.published_at,
  }));
}

export async function isPublished(db: Executor, name: string, version: number): Promise<boolean> {
  const { rows } = await sql<{ found: boolean }>`
    select exists (select 1 from ledger.published_versions p join ledger.functions f on f.name = p.name
                   where p.name = ${name} and p.version = ${version} and p.version >= f.first_version and f.deleted_at is null) as found`.execute(db);
  return rows[0]?.found ?? false;
}

// ---- aliases ----

export const ALIAS_NAME = /^[a-zA-Z0-9_-]{1,128}$/;

export interface Alias {
  functionName: string;
  name: string;
  functionVersion: number;
  /** version → share of invocations (0..1); the rest go to functionVersion */
  additionalWeights: Record<string, number>;
  description: string;
  revision: number;
}

export interface AliasInput {
  functionVersion?: number | undefined;
  additionalWeights?: Record<string, number> | undefined;
  description?: string | undefined;
}

/** Lambda's alias name pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+), at most 128 characters. */
export function isAliasName(alias: string): boolean {
  return ALIAS_NAME.test(alias) && !/^\d+$/.test(alias);
}

function assertAliasName(alias: string): void {
  if (!isAliasName(alias)) {
    throw new LedgerError('InvalidParameter', `1 validation error detected: Value '${alias}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)`);
  }
}

async function checkAliasTargets(tx: Executor, name: string, version: number, weights: Record<string, number>): Promise<void> {
  if (!(await isPublished(tx, name, version))) throw new LedgerError('FunctionNotFound', `Function not found: ${name}:${version} (an alias points at a published version)`);
  const entries = Object.entries(weights);
  if (entries.length > 1) throw new LedgerError('InvalidParameter', 'RoutingConfig.AdditionalVersionWeights may name at most one version');
  for (const [v, w] of entries) {
    if (!/^[1-9]\d{0,8}$/.test(v)) throw new LedgerError('InvalidParameter', `AdditionalVersionWeights: '${v}' is not a version number`);
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 1) throw new LedgerError('InvalidParameter', `AdditionalVersionWeights: the weight of version ${v} must be between 0.0 and 1.0`);
    if (Number(v) === version) throw new LedgerError('InvalidParameter', `AdditionalVersionWeights: version ${v} is the alias's own version`);
    if (!(await isPublished(tx, name, Number(v)))) throw new LedgerError('FunctionNotFound', `Function not found: ${name}:${v}`);
  }
}

interface AliasRow {
  name: string;
  alias: string;
  function_version: number;
  additional_weights: Record<string, number>;
  description: string;
}

async function readAlias(db: Executor, name: string, alias: string, lock = false): Promise<AliasRow | null> {
  const { rows } = lock
    ? await sql<AliasRow>`select name, alias, function_version, additional_weights, description from ledger.function_aliases where name = ${name} and alias = ${alias} for update`.execute(db)
    : await sql<AliasRow>`select name, alias, function_version, additional_weights, description from ledger.function_aliases where name = ${name} and alias = ${alias}`.execute(db);
  return rows[0] ?? null;
}

const toAlias = (r: AliasRow, revision: number): Alias => ({
  functionName: r.name,
  name: r.alias,
  functionVersion: r.function_version,
  additionalWeights: r.additional_weights,
  description: r.description,
  revision,
});

export async function createAlias(db: Executor, ctx: ChangeContext, name: string, alias: string, input: AliasInput): Promise<Alias> {
  assertFunctionName(name);
  assertAliasName(alias);
  if (input.functionVersion === undefined) throw new LedgerError('InvalidParameter', 'FunctionVersion is required');
  return inTransaction(db, async (tx) => {
    await lockLatest(tx, name);
    const weights = input.additionalWeights ?? {};
    await checkAliasTargets(tx, name, input.functionVersion as number, weights);
    const description = input.description ?? '';
    if (description.length > 256) throw new LedgerError('InvalidParameter', 'Description must be at most 256 characters');
    const { rows } = await sql<AliasRow>`
      insert into ledger.function_aliases (name, alias, function_version, additional_weights, description)
      values (${name}, ${alias}, ${input.functionVersion}, ${JSON.stringify(weights)}::jsonb, ${description})
      on conflict (name, alias) do nothing
      returning name, alias, function_version, additional_weights, description`.execute(tx);
    if (!rows[0]) throw new LedgerError('FunctionExists', `Alias already exists: ${name}:${alias}`);
    const change = await appendChange(tx, {
      resourceType: ALIAS,
      resourceName: `${name}:${alias}`,
      action: 'created',
      actor: ctx.actor,
      requestId: ctx.requestId,
      data: { after: { functionVersion: input.functionVersion, additionalWeights: weights, description } },
    });
    return toAlias(rows[0], change.seq);
  });
}

export async function getAlias(db: Executor, name: string, alias: string): Promise<Alias> {
  assertFunctionName(name);
  const row = await readAlias(db, name, alias);
  if (!row) throw new LedgerError('FunctionNotFound', `Alias not found: ${name}:${alias}`);
  return toAlias(row, await latestChangeSeq(db, ALIAS, `${name}:${alias}`));
}

export async function listAliases(db: Executor, name: string, functionVersion?: number): Promise<Alias[]> {
  assertFunctionName(name);
  const { rows } = await sql<AliasRow & { revision: number }>`
    select a.name, a.alias, a.function_version, a.additional_weights, a.description,
      (select coalesce(max(seq), 0)::int from ledger.changes c where c.resource_type = 'alias' and c.resource_name = a.name || ':' || a.alias) as revision
    from ledger.function_aliases a
    where a.name = ${name} and (${functionVersion ?? null}::int is null or a.function_version = ${functionVersion ?? null})
    order by a.alias`.execute(db);
  return rows.map((r) => toAlias(r, r.revision));
}

export async function updateAlias(
  db: Executor,
  ctx: ChangeContext,
  name: string,
  alias: string,
  input: AliasInput & { expectedRevision?: number | undefined },
): Promise<Alias> {
  assertFunctionName(name);
  return inTransaction(db, async (tx) => {
    await lockLatest(tx, name);
    const current = await readAlias(tx, name, alias, true);
    if (!current) throw new LedgerError('FunctionNotFound', `Alias not found: ${name}:${alias}`);
    const seq = await checkRevision(tx, ALIAS, `${name}:${alias}`, input.expectedRevision);
    const next = {
      functionVersion: input.functionVersion ?? current.function_version,
      additionalWeights: input.additionalWeights ?? current.additional_weights,
      description: input.description ?? current.description,
    };
    if (next.description.length > 256) throw new LedgerError('InvalidParameter', 'Description must be at most 256 characters');
    await checkAliasTargets(tx, name, next.functionVersion, next.additionalWeights);
    const before = { functionVersion: current.function_version, additionalWeights: current.additional_weights, description: current.description };
    if (JSON.stringify(before) === JSON.stringify(next)) return toAlias(current, seq);
    const { rows } = await sql<AliasRow>`
      update ledger.function_aliases set function_version = ${next.functionVersion}, additional_weights = ${JSON.stringify(next.additionalWeights)}::jsonb,
        description = ${next.description}, updated_at = statement_timestamp()
      where name = ${name} and alias = ${alias}
      returning name, alias, function_version, additional_weights, description`.execute(tx);
    const change = await appendChange(tx, {
      resourceType: ALIAS,
      resourceName: `${name}:${alias}`,
      action: 'updated',
      actor: ctx.actor,
      requestId: ctx.requestId,
      expectedSeq: seq,
      data: { before, after: next },
    });
    return toAlias(rows[0] as AliasRow, change.seq);
  });
}

export async function deleteAlias(db: Executor, ctx: ChangeContext, name: string, alias: string): Promise<void> {
  assertFunctionName(name);
  await inTransaction(db, async (tx) => {
    const current = await readAlias(tx, name, alias, true);
    // Lambda's DeleteAlias of a missing alias succeeds; nothing happened, so nothing is recorded
    if (!current) return;
    await sql`delete from ledger.function_aliases where name = ${name} and alias = ${alias}`.execute(tx);
    await appendChange(tx, {
      resourceType: ALIAS,
      resourceName: `${name}:${alias}`,
      action: 'deleted',
      actor: ctx.actor,
      requestId: ctx.requestId,
      data: { before: { functionVersion: current.function_version, additionalWeights: current.additional_weights, description: current.description } },
    });
  });
}

/**
 * The version an invocation through `alias` runs: the additional version with its
 * weight's probability, else the alias's own. `random` is in [0, 1).
 */
export function pickAliasVersion(alias: Pick<Alias, 'functionVersion' | 'additionalWeights'>, random: number): number {
  let acc = 0;
  for (const [version, weight] of Object.entries(alias.additionalWeights)) {
    acc += weight;
    if (random < acc) return Number(version);
  }
  return alias.functionVersion;
}

// ---- history ----

/** A function's changes and its aliases' changes, newest first; `until` answers "what was it then". */
export async function functionHistory(db: Executor, name: string, o: { until?: Date | undefined; limit?: number | undefined } = {}): Promise<Change[]> {
  const limit = Math.min(Math.max(o.limit ?? 100, 1), 1000);
  const { rows } = await sql<ChangeRow>`
    select position, resource_type, resource_name, seq, action, actor, request_id, data, occurred_at
    from ledger.changes
    where ((resource_type = 'function' and resource_name = ${name})
        or (resource_type = 'alias' and starts_with(resource_name, ${`${name}:`})))
      -- to the millisecond: a time copied from an answer (JSON dates carry milliseconds) includes its own change
      and (${o.until ?? null}::timestamptz is null or date_trunc('milliseconds', occurred_at) <= ${o.until ?? null})
    order by position desc limit ${limit}`.execute(db);
  return rows.map(toChange);
}

export { latestChangeSeq };
/** A function's revision: the seq of its latest change (0 before the first). */
export const functionRevision = (db: Executor, name: string): Promise<number> => latestChangeSeq(db, FUNCTION, name);
