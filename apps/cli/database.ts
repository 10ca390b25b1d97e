// Where the database comes from: DATABASE_URL, or the embedded default of ledger.md §1.
import type { Logger } from 'pino';
import pg from 'pg';
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
  if (await answers(running)) {
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

async function answers(url: string): Promise<boolean> {
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
