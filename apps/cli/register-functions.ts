// FUNCTIONS_DIR registration at start: each file exporting `handler` becomes a MODULE
// function named after the file; a changed file (config or code) becomes a new version,
// recorded in ledger.changes as a deploy by `startup` (docs/control-plane.md). An
// unchanged file writes nothing. A host without the directory registers nothing: its
// functions come from the database.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { packCodePackage } from '../../db/code/index.ts';
import { changeFunction, createManagedFunction, type ChangeContext, type FilePackage } from '../../db/control-plane.ts';
import { LedgerError } from '../../db/errors.ts';
import { functionConfigSchema, getFunction, type FunctionVersion, type RegistryChecks } from '../../db/functions.ts';
import { deleteSchedule, FUNCTIONS_DIR_GROUP, listSchedules, upsertSchedule, type ScheduleInput } from '../../db/schedule-store.ts';
import type { Db } from '../../db/schema.ts';
import { discoverFunctions } from '../runtimes/index.ts';

const STARTUP: ChangeContext = { actor: 'startup' };

export async function registerFunctionsDir(db: Db, functionsDir: string, checks: RegistryChecks, logger: Logger): Promise<string[]> {
  if (!(await isDirectory(functionsDir))) {
    logger.info(`no functions directory at ${functionsDir}: functions come from the database only`);
    return [];
  }
  const found = await discoverFunctions(functionsDir);
  const registered: string[] = [];
  for (const f of found) {
    try {
      // the file, packed on its own: its package's SHA-256 is the version's codeHash
      const packed = await packCodePackage(f.file);
      const fn = await deployFromDisk(db, f.name, { runtime: 'MODULE', ...f.config, handler: path.basename(f.file), codeHash: packed.sha256 }, { zip: packed.zip }, checks);
      registered.push(`${fn.name}:${fn.version}`);
    } catch (e) {
      if (!(e instanceof LedgerError)) throw e;
      logger.warn({ file: f.file, err: e.message }, 'function file not registered');
    }
  }
  await syncFileSchedules(db, found.filter((f) => registered.some((r) => r.startsWith(`${f.name}:`))), logger);
  logger.info({ functions: registered }, `registered ${registered.length} function(s) from ${functionsDir}`);
  return registered;
}

/** The file is the whole configuration: a new version (and a change) only when it differs. */
async function deployFromDisk(db: Db, name: string, input: Record<string, unknown>, filePackage: FilePackage, checks: RegistryChecks): Promise<FunctionVersion> {
  const parsed = functionConfigSchema.safeParse(input);
  if (!parsed.success) throw new LedgerError('InvalidFunctionConfig', parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; '));
  if (!(await getFunction(db, name))) {
    try {
      return (await createManagedFunction(db, STARTUP, name, parsed.data, null, { checks, filePackage })).fn;
    } catch (e) {
      // another process registered it first: fall through to an update
      if (!(e instanceof LedgerError && e.code === 'FunctionExists')) throw e;
    }
  }
  // an unchanged file is an unchanged codeHash: nothing written (the package is already stored)
  return (await changeFunction(db, STARTUP, name, 'deployed_from_disk', parsed.data, { checks, filePackage })).fn;
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * `export const schedule = 'rate(5 minutes)'` (or `{ expression, timezone, input, … }`) in a
 * function file: a schedule named after the function in the group `functions-dir`, kept in
 * step with the file at every start; one whose file no longer declares it is deleted.
 */
async function syncFileSchedules(db: Db, found: { name: string; file: string; schedule?: unknown }[], logger: Logger): Promise<void> {
  const by = { actor: 'startup' };
  const declared = new Set<string>();
  for (const f of found) {
    if (f.schedule === undefined) continue;
    declared.add(f.name);
    try {
      const outcome = await upsertSchedule(db, scheduleInputOf(f.name, f.schedule), by);
      if (outcome !== 'unchanged') logger.info({ function: f.name, schedule: `${FUNCTIONS_DIR_GROUP}/${f.name}` }, `schedule ${outcome}`);
    } catch (e) {
      if (!(e instanceof LedgerError)) throw e;
      logger.warn({ file: f.file, err: e.message }, 'schedule of a function file not registered');
    }
  }
  for (const s of await listSchedules(db, { groupName: FUNCTIONS_DIR_GROUP, limit: 1000 })) {
    if (declared.has(s.name)) continue;
    try {
      await deleteSchedule(db, FUNCTIONS_DIR_GROUP, s.name, by);
      logger.info({ schedule: `${FUNCTIONS_DIR_GROUP}/${s.name}` }, 'schedule deleted: its function file no longer declares it');
    } catch (e) {
      if (!(e instanceof LedgerError) || e.code !== 'ScheduleNotFound') throw e;
    }
  }
}

function scheduleInputOf(name: string, decl: unknown): ScheduleInput {
  const d = (typeof decl === 'string' ? { expression: decl } : decl) as Record<string, unknown>;
  const input = d.input === undefined || d.input === null ? null : typeof d.input === 'string' ? d.input : JSON.stringify(d.input);
  const misfire = d.misfirePolicy;
  const date = (v: unknown) => (typeof v === 'string' ? new Date(v) : null);
  return {
    name,
    groupName: FUNCTIONS_DIR_GROUP,
    expression: d.expression as string,
    timezone: (d.timezone as string | undefined) ?? null,
    startDate: date(d.startDate),
    endDate: date(d.endDate),
    state: d.enabled === false ? 'DISABLED' : 'ENABLED',
    flexibleTimeWindow: typeof d.flexibleWindowMinutes === 'number' ? { mode: 'FLEXIBLE', maximumWindowInMinutes: d.flexibleWindowMinutes } : { mode: 'OFF' },
    target: { functionName: name, input },
    misfirePolicy: typeof misfire === 'string' ? { mode: misfire } : (misfire as ScheduleInput['misfirePolicy']) ?? null,
  };
}
