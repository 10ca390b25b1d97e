// What the database commands (`brokers`, `streams`) share: one short-lived connection as the
// application role, a refusal turned into a one-line error, and whole-number options.
import { openDatabase } from '../../db/connection.ts';
import { isLedgerError } from '../../db/errors.ts';
import type { Db } from '../../db/schema.ts';
import { CliError } from './cli.ts';
import { databaseRole } from './config.ts';

/** Runs fn on one connection named for the command; a LedgerError is the user's to fix: one line, exit 1. */
export async function withCommandDb(url: string, command: string, fn: (db: Db) => Promise<number>): Promise<number> {
  const handle = openDatabase(url, { role: databaseRole(), max: 1, applicationName: `invoke-ledger ${command}` });
  try {
    return await fn(handle.db);
  } catch (e) {
    if (isLedgerError(e)) throw new CliError(`${e.code}: ${e.message}`);
    throw e;
  } finally {
    await handle.close();
  }
}

/** An optional whole-number option (negative allowed: -1 means "no limit" where Lambda says so). */
export function integer(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new CliError(`${what} must be a whole number, not ${v}`);
  return Number(v);
}
