// A primary and a real streaming replica of its own, made on this machine for a test:
// initdb + postgres on a free port, `pg_basebackup -R` of it, the copy started as a hot
// standby on another port. PostgreSQL's own binaries from the Debian packages (the embedded
// package ships no pg_basebackup); the machine's server on 5432 is not touched. Both
// postmasters are stopped by their pids, and the directory removed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './pg-admin.ts';

const run = promisify(execFile);

/** The newest /usr/lib/postgresql/<major>/bin with initdb, postgres and pg_basebackup, or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const majors = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
  for (const m of majors) {
    const bin = path.join(root, m, 'bin');
    if (['initdb', 'postgres', 'pg_basebackup'].every((b) => existsSync(path.join(bin, b)))) return bin;
  }
  return null;
}

export interface Server {
  port: number;
  pid: number;
  url(database: string): string;
}

export interface ReplicaPair {
  primary: Server;
  replica: Server;
  stop(): Promise<void>;
}

async function asPostgres(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
  return { uid: await id('-u'), gid: await id('-g') };
}

async function startPostmaster(bin: string, dataDir: string, port: number, socketDir: string, ready: RegExp): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const flags = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${socketDir}`,
    '-c', 'max_connections=60', '-c', 'shared_buffers=32MB', '-c', 'wal_level=replica', '-c', 'max_wal_senders=4', '-c', 'hot_standby=on'];
  const child = spawn(path.join(bin, 'postgres'), flags, { ...(await asPostgres()), env: { LC_MESSAGES: 'C' }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`postgres on ${port} did not get ready in 60 s:\n${log}`)), 60_000);
    child.stderr?.on('data', (d: Buffer) => {
      if (log.length < 20_000) log += d.toString();
      if (ready.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`postgres on ${port} exited while starting:\n${log}`));
    });
  });
  return { child, exited };
}

async function stopPostmaster(p: { child: ChildProcess; exited: Promise<void> }): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  process.kill(p.child.pid as number, 'SIGINT'); // fast shutdown
  const timer = setTimeout(() => p.child.exitCode === null && process.kill(p.child.pid as number, 'SIGKILL'), 20_000);
  await p.exited;
  clearTimeout(timer);
}

export async function startReplicaPair(): Promise<ReplicaPair> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL binaries with pg_basebackup under /usr/lib/postgresql (apt-get install postgresql)');
  const dir = await mkdtemp(path.join(tmpdir(), 'ledger-replica-'));
  const owner = await asPostgres();
  if (owner.uid !== undefined) await chown(dir, owner.uid, owner.gid as number);
  const primaryDir = path.join(dir, 'primary');
  const replicaDir = path.join(dir, 'replica');
  const started: { child: ChildProcess; exited: Promise<void> }[] = [];
  const stop = async () => {
    for (const p of started.reverse()) await stopPostmaster(p);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // trust on loopback, replication included (initdb's default pg_hba.conf with --auth=trust)
    await run(path.join(bin, 'initdb'), ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '--locale=C.UTF-8', '--encoding=UTF8', '--no-sync'], { ...owner, env: { LC_MESSAGES: 'C' } });
    const primaryPort = await freePort();
    started.push(await startPostmaster(bin, primaryDir, primaryPort, dir, /ready to accept connections/));
    await run(path.join(bin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'], { ...owner });
    const replicaPort = await freePort();
    started.push(await startPostmaster(bin, replicaDir, replicaPort, dir, /ready to accept read-only connections/));
    const server = (port: number, pid: number): Server => ({ port, pid, url: (db) => `postgres://postgres@127.0.0.1:${port}/${db}` });
    return { primary: server(primaryPort, started[0]?.child.pid as number), replica: server(replicaPort, started[1]?.child.pid as number), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
