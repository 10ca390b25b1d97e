// Where the database comes from: DATABASE_URL, or the embedded default of README.md#configuration.
import type { Logger } from 'pino';
import { databaseAnswers } from '../../db/connection.ts';
import { embeddedUrl, startEmbeddedPostgres } from '../../db/embedded.ts';
import type { Config } from './config.ts';

export interface ResolvedDatabase {
  url: string;
  stop(): Promise<void>;
}

export async function resolveDatabase(config: Config, logger: Logger): Promise<ResolvedDatabase> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, stop: async () => {} };
  // Another invoke-ledger process (say `npm start`) already runs the embedded server on
  // this data: share it rather than fight over its lock file, and leave it running.
  const running = embeddedUrl(config.EMBEDDED_PG_PORT);
  if (await databaseAnswers(running)) {
    logger.info(`using the embedded PostgreSQL already running: ${running}`);
    return { url: running, stop: async () => {} };
  }
  logger.info({ dataDir: config.EMBEDDED_PG_DIR, port: config.EMBEDDED_PG_PORT }, 'DATABASE_URL is unset: starting the embedded PostgreSQL');
  const server = await startEmbeddedPostgres({
    dataDir: config.EMBEDDED_PG_DIR,
    port: config.EMBEDDED_PG_PORT,
    persistent: true,
    onLog: (line) => logger.debug({ postgres: line.trim() }),
  });
  logger.info(`embedded PostgreSQL is up: ${server.url}`);
  return { url: server.url, stop: () => server.stop() };
}
