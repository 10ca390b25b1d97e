// A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test's
// PostgreSQL, on a free port, with its ini and userlist in a temporary directory. The
// test that starts one stops it by its pid. On CI a missing binary is a failure, not a
// skip (.ci/run installs it).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './pg-admin.ts';

export const PGBOUNCER = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';

/** Whether tests that need PgBouncer run: always on CI (where a missing binary fails them). */
export const pgbouncerWanted = existsSync(PGBOUNCER) || Boolean(process.env.CI);

export interface PgBouncer {
  port: number;
  pid: number;
  /** `serverUrl`'s login and password, through the pooler, to `database` */
  url(database: string): string;
  output(): string;
  stop(): Promise<void>;
}

export async function startPgBouncer(serverUrl: string, o: { poolSize?: number } = {}): Promise<PgBouncer> {
  if (!existsSync(PGBOUNCER)) throw new Error(`${PGBOUNCER} is missing: apt-get install -y pgbouncer (or set PGBOUNCER_BIN)`);
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const password = decodeURIComponent(server.password);
  const dir = await mkdtemp(path.join(tmpdir(), 'ledger-pgbouncer-'));
  const port = await freePort();
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  // client auth trust (loopback only); the userlist's password logs in to the server
  await writeFile(path.join(dir, 'userlist.txt'), `${quote(user)} ${quote(password)}\n`);
  await writeFile(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || '5432'}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${o.poolSize ?? 8}`,
      'max_client_conn = 1000',
      'server_check_delay = 0',
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root: as root it drops to the postgres OS user (-u)
  const root = process.getuid?.() === 0;
  if (root) await chmod(dir, 0o755);
  const child: ChildProcess = spawn(PGBOUNCER, [...(root ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    if (out.length < 100_000) out += d.toString();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const until = Date.now() + 20_000;
  while (!out.includes('process up')) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited while starting:\n${out}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`pgbouncer did not start in 20 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    pid: child.pid as number,
    url(database) {
      const u = new URL(serverUrl);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      u.pathname = `/${database}`;
      return u.toString();
    },
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGINT: PgBouncer's immediate shutdown
        process.kill(child.pid as number, 'SIGINT');
        const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid as number, 'SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
