// FUNCTIONS_DIR registration at start: each file exporting `handler` becomes a MODULE
// function named after the file; a changed file (config or code) becomes a new version.
import path from 'node:path';
import type { Logger } from 'pino';
import { LedgerError } from '../../db/errors.ts';
import { upsertFunction, type RegistryChecks } from '../../db/functions.ts';
import type { Db } from '../../db/schema.ts';
import { discoverFunctions } from '../runtimes/index.ts';

export async function registerFunctionsDir(db: Db, functionsDir: string, checks: RegistryChecks, logger: Logger): Promise<string[]> {
  const found = await discoverFunctions(functionsDir);
  const registered: string[] = [];
  for (const f of found) {
    try {
      const fn = await upsertFunction(
        db,
        f.name,
        { runtime: 'MODULE', ...f.config, handler: path.basename(f.file), codeHash: f.contentHash },
        checks,
      );
      registered.push(`${fn.name}:${fn.version}`);
    } catch (e) {
      if (!(e instanceof LedgerError)) throw e;
      logger.warn({ file: f.file, err: e.message }, 'function file not registered');
    }
  }
  logger.info({ functions: registered }, `registered ${registered.length} function(s) from ${functionsDir}`);
  return registered;
}
