// What most commands need once they run: the configuration, a logger, and the database
// (DATABASE_URL, or the embedded default).
import { destination, pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { CliError, type Io } from './cli.ts';
import { loadConfig, type Config } from './config.ts';
import { resolveDatabase } from './database.ts';

export interface Context {
  config: Config;
  logger: Logger;
}

/** logsTo: a server logs to stdout; other commands to stderr, since their stdout is their answer (a table, JSON, a token). */
export function commandContext(io: Io, overrides: Parameters<typeof loadConfig>[1] = {}, logsTo: 1 | 2 = 2): Context {
  let config: Config;
  try {
    config = loadConfig(io.env, overrides);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const logger =
    config.LOG_FORMAT === 'pretty'
      ? pino({ level: config.LOG_LEVEL }, pretty({ destination: logsTo, sync: true, colorize: logsTo === 1 ? process.stdout.isTTY : process.stderr.isTTY, ignore: 'pid,hostname' }))
      : pino({ level: config.LOG_LEVEL, base: { pid: process.pid } }, destination({ dest: logsTo, sync: true }));
  return { config, logger };
}

/** Runs fn against the configured database; an embedded server started for it is stopped after. */
export async function withDatabase<T>(ctx: Context, fn: (url: string) => Promise<T>): Promise<T> {
  const database = await resolveDatabase(ctx.config, ctx.logger);
  try {
    return await fn(database.url);
  } finally {
    await database.stop();
  }
}

/**
 * Runs fn against the configured database after migrating it, as `start` would: the
 * commands that work on the ledger's tables (keys, schedules, brokers, streams, replay).
 */
export async function withMigratedDatabase<T>(io: Io, fn: (url: string, config: Config) => Promise<T>): Promise<T> {
  const { migrate } = await import('../../db/migrate.ts');
  const ctx = commandContext(io);
  return withDatabase(ctx, async (url) => {
    await migrate(url, (m) => ctx.logger.info(m));
    return fn(url, ctx.config);
  });
}
